#!/usr/bin/env bash
# The newcomer's path: install everything, make test keys on first use, and
# `pulumi up` the local stack, whose two relays boot under QEMU on this machine.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
# The local stack holds no secrets; its passphrase may be empty.
export PULUMI_CONFIG_PASSPHRASE=${PULUMI_CONFIG_PASSPHRASE-}

store=keys/local
for relay in local-exit:LocalExit local-guard:LocalGuard; do
  name=${relay%%:*} nickname=${relay##*:}
  if [[ ! -f $store/$name/secret_id_key ]]; then
    npm run --silent keys -- --store "$store" init "$name" --nickname "$nickname" --family local
  fi
done
[[ -f $store/families/local.secret_family_key ]] || npm run --silent keys -- --store "$store" family init local
[[ -f $store/collector ]] || ssh-keygen -q -t ed25519 -N "" -C "diskless-relays local collector" -f "$store/collector"

pulumi stack select local --create --non-interactive >/dev/null
pulumi up --yes --stack local

echo
echo "Waiting for tor to start in each relay (software emulation: up to a few minutes)..."
for name in local-exit local-guard; do
  log=.runtime/local/$name/console.log
  for _ in $(seq 1 240); do
    grep -aq "ed25519 fingerprint is" "$log" 2>/dev/null && break
    sleep 1
  done
  grep -a "fingerprint is" "$log" | sed "s/^/  $name: /" || echo "  $name: tor has not printed its fingerprints yet; see $log"
done
cat <<MSG

The relays are running under QEMU. What you can do now:
  tail -f .runtime/local/local-exit/console.log    a relay's serial console
  pulumi stack output relayOutputs --stack local   fingerprints, image digests, SBOMs
  npm run keys -- --store keys/local status        the local key store
  edit Pulumi.local.yaml, then npm start           redeploy: only changed relays are rebuilt,
                                                   with the onion keys collected from them
  npm run local:down                               stop the relays and remove their files
MSG
