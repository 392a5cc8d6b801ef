#!/usr/bin/env bash
# Stops the local stack's relays, then the private Tor network they joined.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh
export PULUMI_CONFIG_PASSPHRASE=${PULUMI_CONFIG_PASSPHRASE-}
if pulumi stack select local --non-interactive >/dev/null 2>&1; then pulumi destroy --yes --stack local; fi
npm run --silent testnet -- down
