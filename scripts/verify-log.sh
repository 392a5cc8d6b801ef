#!/usr/bin/env bash
# npm run verify-log -- --log DIR --allowed-signers FILE OLD [NEW]
#
# Checks a copy of the public measurement log (a clone of its git
# repository): every commit after OLD signed by a key in FILE (OpenSSH
# allowed signers), a linear history that only adds entries, every entry
# well formed, and OLD an ancestor of NEW (default HEAD), so that a log
# rewritten after OLD was seen shows. One verdict line per check; exit 0 only
# when all hold. tools/broker/cmd/measurement-log is the program; npm run
# setup builds it (tools/broker/build.sh builds it without Node).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/env.sh
. "$here/scripts/env.sh"
if ! command -v measurement-log >/dev/null; then
	echo "verify-log: measurement-log is not built: run npm run setup (or tools/broker/build.sh DIR and put DIR on PATH)" >&2
	exit 2
fi
exec measurement-log verify "$@"
