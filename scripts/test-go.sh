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
# Beside npm test (.ci/run), the Go tests take the CPU the test lanes leave
# idle: compiling and vetting every test package (most of their CPU, none of
# it timed) and the brief fuzzing run at the lowest priority, the tests
# themselves (some wait on clocks) at normal priority, from the build cache
# the first pass filled. After a set-up with an empty build cache they took
# 596 CPU-seconds (process accounting), and in a cold .ci/run the lanes left
# a fifth of both cores idle once the Go tests were done.
for tool in command proxmoxve broker vulndb; do
  echo "go test tools/$tool"
  (
    cd "$here/tools/$tool"
    export GOFLAGS="$GOFLAGS -mod=readonly -buildvcs=false"
    mapfile -t packages < <(go list -e -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./...)
    # -count=1: tools/broker/e2e builds the programs as it runs, which the test cache cannot see.
    # The first pass runs no test (-run '^$'); its output matters only when it fails.
    if ! built=$(nice -n 19 go test -count=1 -trimpath -run '^$' "${packages[@]}" 2>&1); then
      printf '%s\n' "$built"
      exit 1
    fi
    go test -count=1 -trimpath "${packages[@]}"
  )
done
# The key broker's fuzz targets, briefly: a crash any input found before is
# in their seed corpus and fails the go test above; this looks a little further.
nice -n 19 bash "$here/scripts/fuzz.sh" 5
