#!/usr/bin/env bash
# npm run verify-log -- --log DIR --allowed-signers FILE OLD [NEW]
#   (measurement-log verify: a copy of the public measurement log, one
#   verdict line per check; OLD must be an ancestor of NEW, default HEAD)
# npm run verify-relay -- FP --tor-data-dir DIR --log DIR --allowed-signers FILE \
#   --min-tcb amd-sb-3019 [--address HOST:PORT]
#   (a relay's fresh SEV-SNP report bound to its Tor identity and image,
#   checked against AMD's pinned roots, the consensus and the log)
#
# Runs one of the key broker module's programs (tools/broker/cmd/NAME) with
# the arguments given; npm run setup builds them, tools/broker/build.sh
# builds them without Node. Each prints its own --help.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/env.sh
. "$here/scripts/env.sh"
program=$1
shift
if ! command -v -- "$program" >/dev/null; then
	echo "$program is not built: run npm run setup (or tools/broker/build.sh DIR and put DIR on PATH)" >&2
	exit 2
fi
exec "$program" "$@"
