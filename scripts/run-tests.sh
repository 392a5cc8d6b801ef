#!/usr/bin/env bash
# The whole suite, as `npm test` runs it: three vitest processes side by
# side, each running its lane's files one at a time (the lanes are the
# projects in vitest.config.ts): local-e2e with the unit tests and image
# builds, the other files that boot VMs under QEMU, and the engine files.
# Each file already isolates itself (its own temp project, stack, network
# namespace and ports). Three lanes on 2 cores, because local-e2e mostly
# waits on the private network's clock: beside it the CPU has room.
# Arguments go to every vitest process (e.g. a -t filter).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
# shellcheck source=scripts/env.sh
source scripts/env.sh
# The shared Debian base, once, before any process looks for it.
npx tsx test/support/global-setup.ts

run_project() {
  local name=$1
  shift
  # Each line says which process printed it; the exit status survives the prefixing.
  npx vitest run --project "$name" "$@" 2>&1 | sed -u "s/^/[$name] /"
  return "${PIPESTATUS[0]}"
}

lanes=(e2e vm engine)
declare -A pids
for lane in "${lanes[@]}"; do
  run_project "$lane" "$@" &
  pids[$lane]=$!
done
summary=() failed=0
for lane in "${lanes[@]}"; do
  status=0
  wait "${pids[$lane]}" || status=$?
  summary+=("$lane: exit $status")
  ((status == 0)) || failed=1
done
echo "[tests] ${summary[*]}"
((failed == 0))
