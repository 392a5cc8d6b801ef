#!/usr/bin/env bash
# Builds the Pulumi resource plugin for the proxmoxve package (bpg's Terraform
# provider for Proxmox VE, bridged) as OUTDIR/pulumi-resource-proxmoxve.
#
#   tools/proxmoxve/build.sh OUTDIR
#
# Two steps: build pulumi-tfgen-proxmoxve and let it write the package schema
# and bridge metadata, then build the plugin with both embedded. Modules come
# from GOPROXY (default https://proxy.golang.org) as pinned by go.sum.
# PROXMOXVE_VERSION (default 8.6.0) is the version the plugin reports; keep it
# equal to the @muhlba91/pulumi-proxmoxve version in package.json.
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$1"
outdir=$(cd "$1" && pwd)
version=${PROXMOXVE_VERSION:-8.6.0}

export GOPROXY=${GOPROXY:-https://proxy.golang.org}
# Never resolve anything not already pinned in go.mod/go.sum; no VCS stamping,
# so the output does not depend on the state of the git checkout.
export GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false"
ldflags="-s -w -X diskless-relays/tools/proxmoxve/internal/version.Version=$version"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$here"

# Fetch the modules up front: go build would report each download on stderr.
go mod download

go build -trimpath -ldflags "$ldflags" -o "$work/pulumi-tfgen-proxmoxve" ./cmd/pulumi-tfgen-proxmoxve

# tfgen is chatty on stdout; show its output only when it fails.
if ! "$work/pulumi-tfgen-proxmoxve" schema --out "$work/gen" --skip-docs --skip-examples \
	>"$work/tfgen.log" 2>&1; then
	cat "$work/tfgen.log" >&2
	exit 1
fi

# The plugin embeds these two files (see cmd/pulumi-resource-proxmoxve/main.go);
# they are generated, and ignored by git.
cp "$work/gen/schema.json" "$work/gen/bridge-metadata.json" cmd/pulumi-resource-proxmoxve/

go build -trimpath -ldflags "$ldflags" -o "$outdir/pulumi-resource-proxmoxve" ./cmd/pulumi-resource-proxmoxve
echo "built $outdir/pulumi-resource-proxmoxve"
