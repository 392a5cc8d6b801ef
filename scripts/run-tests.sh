#!/usr/bin/env bash
# The whole suite, as `npm test` runs it, in two vitest processes side by
# side, each running its files one at a time (vitest.config.ts says which
# file runs in which): the three longest files that boot VMs under QEMU in
# one, every other file (unit tests, the real engine against the Proxmox VE
# double, image builds, the three short VM files) in the other. Each file
# already isolates itself (its own temp project, stack, network namespace
# and ports); no two VM files run in one process because each alone keeps a
# core busy emulating.
# Arguments go to both vitest processes (e.g. a -t filter).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
# shellcheck source=scripts/env.sh
source scripts/env.sh
# The shared Debian base, once, before either process looks for it.
node --require tsx/cjs test/support/global-setup.ts

run_project() {
  local name=$1
  shift
  # Each line says which process printed it; the exit status survives the prefixing.
  npx vitest run --project "$name" "$@" 2>&1 | sed -u "s/^/[$name] /"
  return "${PIPESTATUS[0]}"
}

run_project vm "$@" &
vm=$!
other_status=0
run_project other "$@" || other_status=$?
vm_status=0
wait "$vm" || vm_status=$?
echo "[tests] vm files: exit $vm_status; other files: exit $other_status"
((vm_status == 0 && other_status == 0))
