#!/usr/bin/env bash
# Fuzzes every decoder an unauthenticated client of the key broker reaches
# (Go's native fuzzing): the relay protocol's handlers with a live session,
# the SNP report and certificate checks (also through the KDS cache), the
# serial protocol's line reader, the file-set check, and the decoder of a
# relay's public attestation evidence that verify-relay reads.
#   scripts/fuzz.sh [SECONDS]   each target for SECONDS (default 60)
# CI (scripts/test-go.sh) runs each for a few seconds; `npm run fuzz` for a minute.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/env.sh
source "$here/scripts/env.sh"
seconds=${1:-60}
[[ $seconds =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2; }
cd "$here/tools/broker"
export GOTOOLCHAIN=local GOFLAGS="$GOFLAGS -mod=readonly -buildvcs=false"
for target in internal/broker:FuzzRelayProtocol internal/snpcheck:FuzzCheck internal/snpcheck:FuzzPrepareCheck internal/protocol:FuzzReadSerialLine internal/protocol:FuzzCheckFiles internal/relayproof:FuzzDecodeEvidence; do
  package=${target%%:*} name=${target##*:}
  echo "fuzz $name ($package) for ${seconds}s"
  go test -trimpath -run '^$' -fuzz "^$name\$" -fuzztime "${seconds}s" "./$package"
done
