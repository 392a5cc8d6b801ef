#!/usr/bin/env bash
# Runs ShellCheck on every shell script of the project: the build scripts (bash)
# and the relay's own scripts, which busybox sh runs (checked as POSIX sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mapfile -t bash_scripts < <(git ls-files '*.sh' .ci/run)
mapfile -t relay_scripts < <(git ls-files images/rootfs/files/init 'images/rootfs/files/usr/local/sbin/*')
shellcheck --external-sources "${bash_scripts[@]}"
shellcheck --shell=sh "${relay_scripts[@]}"
echo "shellcheck: ${#bash_scripts[@]} bash scripts and ${#relay_scripts[@]} relay scripts are clean"
