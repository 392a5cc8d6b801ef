#!/usr/bin/env bash
# npm run verify-relay -- --fingerprint FP --address HOST:PORT --tor-data-dir DIR \
#   --log DIR --allowed-signers FILE --min-tcb amd-sb-3019
#
# Asks a relay for a fresh SEV-SNP report bound to its Tor identity and its
# image, and checks it against AMD's pinned roots, the identity a tor
# client's consensus lists for the fingerprint, and the published
# measurement log. One verdict line per check; exit 0 only when all hold.
# tools/broker/cmd/verify-relay is the program (its --help lists every
# flag); npm run setup builds it (tools/broker/build.sh builds it without
# Node).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/env.sh
. "$here/scripts/env.sh"
if ! command -v verify-relay >/dev/null; then
	echo "verify-relay: verify-relay is not built: run npm run setup (or tools/broker/build.sh DIR and put DIR on PATH)" >&2
	exit 2
fi
exec verify-relay "$@"
