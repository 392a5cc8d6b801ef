#!/usr/bin/env bash
# Builds OUTDIR/pulumi-resource-command, this repository's own implementation
# of the Pulumi command provider's local:Command (see README.md).
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
outdir=$1
version=${PULUMI_COMMAND_VERSION:-1.2.1}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

cd "$here"
GOFLAGS="${GOFLAGS:-} -mod=readonly" go build -trimpath \
	-ldflags "-s -w -X main.version=$version" \
	-o "$outdir/pulumi-resource-command" .

echo "built $outdir/pulumi-resource-command (version $version)"
