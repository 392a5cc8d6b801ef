# shellcheck shell=bash
# Sourced by the project's scripts and by the test helpers' shell: the tool
# directory on PATH and a Pulumi that never reaches for the network.
export DISKLESS_RELAYS_CACHE=${DISKLESS_RELAYS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/diskless-relays}
export TOOLS_BIN="$DISKLESS_RELAYS_CACHE/bin"
case ":$PATH:" in *":$TOOLS_BIN:"*) ;; *) export PATH="$TOOLS_BIN:$PATH" ;; esac
# Every Go build links with -s -w, which drops the DWARF the compiler writes;
# not writing it saves a tenth of the compile time. setup.sh, the tools'
# build.sh and test-go.sh add to these flags (never replace them), so go test
# finds setup's compiled packages in Go's build cache.
case " ${GOFLAGS:-} " in *" -gcflags=all=-dwarf=false "*) ;; *) export GOFLAGS="${GOFLAGS:+$GOFLAGS }-gcflags=all=-dwarf=false" ;; esac
# Go from its usual place when it is not on PATH (a login shell without /usr/local/go/bin).
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then export PATH="$PATH:/usr/local/go/bin"; fi
export PULUMI_HOME=${PULUMI_HOME:-$HOME/.pulumi}
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_SKIP_CONFIRMATIONS=true
export SYFT_CHECK_FOR_APP_UPDATE=false
# Grype's database lives in the project's cache and changes only by `npm run vulns -- db import`.
export GRYPE_DB_CACHE_DIR=${GRYPE_DB_CACHE_DIR:-$DISKLESS_RELAYS_CACHE/grype-db}
export GRYPE_DB_AUTO_UPDATE=false
export GRYPE_CHECK_FOR_APP_UPDATE=false
