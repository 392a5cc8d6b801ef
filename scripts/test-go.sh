#!/usr/bin/env bash
# go test for the project's Go tools (tools/command, tools/proxmoxve,
# tools/broker, tools/vulndb), with the flags setup.sh builds them with, so the compiled
# packages it cached are reused. Only packages with tests are tested: the proxmoxve plugin's main
# package embeds files that its build (tools/proxmoxve/build.sh, run by
# setup.sh) generates and git ignores, so a clone whose plugin setup found
# cached has no copy of them.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/env.sh
source "$here/scripts/env.sh"
export GOTOOLCHAIN=local GOPROXY=${GOPROXY:-https://proxy.golang.org}
for tool in command proxmoxve broker vulndb; do
  echo "go test tools/$tool"
  (
    cd "$here/tools/$tool"
    export GOFLAGS="$GOFLAGS -mod=readonly -buildvcs=false"
    mapfile -t packages < <(go list -e -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./...)
    # -count=1: tools/broker/e2e builds the programs as it runs, which the test cache cannot see.
    go test -count=1 -trimpath "${packages[@]}"
  )
done
# The key broker's fuzz targets, briefly: a crash any input found before is
# in their seed corpus and fails the go test above; this looks a little further.
bash "$here/scripts/fuzz.sh" 5
