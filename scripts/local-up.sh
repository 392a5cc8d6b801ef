#!/usr/bin/env bash
# The newcomer's path: install everything, make test keys on first use, start
# the private Tor network on this machine (with its key broker), and
# `pulumi up` the local stack, whose two relays boot under QEMU from key-free
# images, fetch their keys from the broker and join the network.
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
# The key each image's published record and measurement are signed with (npm run verify-build checks them).
[[ -f $store/image-signing ]] || ssh-keygen -q -t ed25519 -N "" -C "diskless-relays local image signing" -f "$store/image-signing"

npm run --silent testnet
pulumi stack select local --create --non-interactive >/dev/null
# Returns once every relay is healthy on its image.
pulumi up --yes --stack local

# What runs now, as the operator's board shows it (the up above started again
# any relay whose QEMU had died since the last one).
echo
if ! npm run --silent status -- --stack local; then
  echo "npm start: a relay needs attention (above). Run npm start again; if it stays so," >&2
  echo "  npm run local:down && npm start   (its onion keys and state wait in the key broker)" >&2
  exit 1
fi
echo
for name in local-exit local-guard; do
  grep -a "fingerprint is" ".runtime/local/$name/console.log" | sed "s/^/  $name: /"
done
echo
echo "Waiting until the private network's consensus lists both relays..."
for _ in $(seq 1 120); do
  [[ $(npm run --silent testnet -- status | grep -cE '^Local(Exit|Guard) ') == 2 ]] && break
  sleep 2
done
npm run --silent testnet -- status
echo
npm run --silent testnet -- fetch || echo "(the fetch did not succeed yet; try again in a minute: npm run testnet -- fetch)"
cat <<MSG

The relays are running under QEMU, in a private Tor network on this machine. What you can do now:
  npm run testnet -- fetch                        fetch http://web.testnet/ through LocalGuard, an authority and LocalExit
  npm run testnet -- status                       the relays in the consensus, with their flags
  tail -f .runtime/local/local-exit/console.log   a relay's serial console
  pulumi stack output relayOutputs --stack local  fingerprints, image digests, SBOMs
  npm run verify-build -- local-exit              rebuild the exit's image from its signed record and compare
  npm run broker -- status                        the key broker: attestations, pushes, health
  npm run testnet -- verify LocalExit             check the exit as a volunteer would: a fresh (simulated)
                                                  SNP report bound to its identity, against the measurement log
  edit Pulumi.local.yaml, then npm start          redeploy: only changed relays are rebuilt; each
                                                  gets back the onion keys it pushed to the broker
  npm run local:down                              stop the relays and the private network
MSG
