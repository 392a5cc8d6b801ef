#!/usr/bin/env bash
# Runs ShellCheck on every shell script of the project: the build scripts (bash)
# and the relay's own scripts, which busybox sh runs (checked as POSIX sh);
# then actionlint on the GitHub workflows (it runs ShellCheck on their run: steps).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
mapfile -t bash_scripts < <(git ls-files '*.sh' .ci/run)
mapfile -t relay_scripts < <(git ls-files images/rootfs/files/init 'images/rootfs/files/usr/local/sbin/*' 'images/rootfs/files/etc/acpi/*')
shellcheck --external-sources "${bash_scripts[@]}"
shellcheck --shell=sh "${relay_scripts[@]}"
echo "shellcheck: ${#bash_scripts[@]} bash scripts and ${#relay_scripts[@]} relay scripts are clean"
mapfile -t workflows < <(git ls-files '.github/workflows/*.yml')
actionlint "${workflows[@]}"
echo "actionlint: ${#workflows[@]} workflows are clean"
