#!/usr/bin/env bash
# Builds the key broker's five programs into OUTDIR:
#
#   tools/broker/build.sh OUTDIR
#
#   OUTDIR/key-broker     the off-site key broker (runs on the broker host)
#   OUTDIR/relay-agent    the in-guest agent, static (CGO_ENABLED=0), stripped,
#                         for the relay image
#   OUTDIR/snp-simulator  TEST-ONLY simulated AMD secure processor for hosts
#                         without SEV-SNP (runs on the QEMU host)
#   OUTDIR/measurement-log  appends to and verifies the public log of launch
#                         measurements (the operator's machine, volunteers)
#   OUTDIR/verify-relay   a volunteer's check of a relay: its fresh SEV-SNP
#                         report, Tor identity and image against the log
#
# Modules come from GOPROXY (default https://proxy.golang.org) as pinned by
# go.sum.
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$1"
outdir=$(cd "$1" && pwd)

export GOPROXY=${GOPROXY:-https://proxy.golang.org}
# Never resolve anything not already pinned in go.mod/go.sum; no VCS stamping,
# so the output does not depend on the state of the git checkout.
export GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false"

cd "$here"

# Fetch the modules up front: go build would report each download on stderr.
go mod download

CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$outdir/relay-agent" ./cmd/relay-agent
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$outdir/key-broker" ./cmd/key-broker
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$outdir/snp-simulator" ./cmd/snp-simulator
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$outdir/measurement-log" ./cmd/measurement-log
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$outdir/verify-relay" ./cmd/verify-relay
