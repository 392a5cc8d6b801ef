#!/usr/bin/env bash
# go test for the project's Go tools (tools/command, tools/proxmoxve), with
# the flags setup.sh builds them with, so the compiled packages it cached
# are reused.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export GOTOOLCHAIN=local GOPROXY=${GOPROXY:-https://proxy.golang.org}
for tool in command proxmoxve; do
  echo "go test tools/$tool"
  (cd "$here/tools/$tool" && GOFLAGS="-mod=readonly -buildvcs=false" go test -trimpath ./...)
done
