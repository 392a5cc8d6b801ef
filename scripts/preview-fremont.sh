#!/usr/bin/env bash
# Prints the fremont stack's preview diff, as the pull-request workflow posts it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
pulumi stack select fremont --create --non-interactive >/dev/null
pulumi preview --stack fremont --diff "$@"
