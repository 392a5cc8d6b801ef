#!/usr/bin/env bash
# Installs every tool diskless-relays runs, from Debian, npm and the Go module
# proxy only. Idempotent: binaries are cached under $DISKLESS_RELAYS_CACHE,
# keyed by version, so a second run only checks that they are there.
set -euo pipefail
# A failing build inside $(…) must stop the set-up, not hand on a path to nothing.
shopt -s inherit_errexit

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/env.sh
source "$here/scripts/env.sh"

# Each version is read from the one file that pins it for its build: a Go
# module's go.mod, or package.json for the npm packages whose providers are
# built here (test/unit/tool-versions.test.ts holds the pins that must agree).
go_mod_version() { grep -Eo "$2 v[^ ]+" "$here/$1" | head -n1 | sed 's/.* v//'; }
npm_version() { sed -nE "s|^ *\"$1\": \"([0-9][^\"]*)\",?$|\1|p" "$here/package.json"; }
PULUMI_VERSION=$(go_mod_version tools/pulumi/go.mod github.com/pulumi/pulumi/pkg/v3)
LANGUAGE_HOST_SDK_VERSION=$(go_mod_version tools/pulumi-language-nodejs/go.mod github.com/pulumi/pulumi/sdk/v3)
COMMAND_VERSION=$(npm_version @pulumi/command)
PROXMOXVE_VERSION=$(npm_version @muhlba91/pulumi-proxmoxve)
# The grype the tests' databases are written for, and the syft its go.mod requires.
GRYPE_VERSION=$(go_mod_version tools/vulndb/go.mod github.com/anchore/grype)
SYFT_VERSION=$(go_mod_version tools/vulndb/go.mod github.com/anchore/syft)
ACTIONLINT_VERSION=1.7.12         # lints .github/workflows (scripts/check-shell.sh)
SYSTEMD_BACKPORT=254.26-1~bpo12+1 # ukify and the EFI stub
for pin in PULUMI_VERSION LANGUAGE_HOST_SDK_VERSION COMMAND_VERSION PROXMOXVE_VERSION GRYPE_VERSION SYFT_VERSION; do
  [[ ${!pin} =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "[setup] $pin: no version found where it is pinned (got '${!pin}')" >&2; exit 1; }
done

# The terminal gets one line per step (fd 3); everything the tools print goes
# to a log file, whose path is shown when a step fails.
exec 3>&2
mkdir -p "$DISKLESS_RELAYS_CACHE"
SETUP_LOG="$DISKLESS_RELAYS_CACHE/setup.log"
: >"$SETUP_LOG"
log() { printf '[setup] %s\n' "$*" >&3; }
# A step says what it did (built, installed…) through this file: it runs in a subshell.
STEP_NOTE_FILE=$(mktemp)
trap 'rm -f "$STEP_NOTE_FILE"' EXIT
note() { printf '%s' "$*" >"$STEP_NOTE_FILE"; }
command -v go >/dev/null || { log "Go is needed to build the Pulumi CLI, its plugins and the key broker: install it (https://go.dev/doc/install) or put it on PATH"; exit 1; }
export GOFLAGS="$GOFLAGS -mod=mod" GOTOOLCHAIN=local
export GOPROXY=${GOPROXY:-https://proxy.golang.org}

apt_packages() {
  local wanted=(tor qemu-system-x86 ovmf mmdebstrap xorriso mtools dosfstools openssh-client
    openssh-server python3 python3-pefile zstd cpio iproute2 debian-archive-keyring busybox openssl sbsigntool faketime shellcheck unbound dns-root-data prometheus nftables
    dpkg-dev gnupg)
  local missing=()
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "  installing from Debian: ${missing[*]}"
    note "installed ${#missing[@]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # The packaged tor, unbound and prometheus start system daemons; the project runs its own
  # (promtool, from the prometheus package, checks the generated monitoring files).
  for daemon in tor unbound prometheus; do
    if command -v systemctl >/dev/null && systemctl is-active -q "$daemon" 2>/dev/null; then systemctl stop "$daemon" || true; fi
  done
}

# ukify is not in bookworm's systemd 252. The bookworm-backports systemd carries
# it; it is unpacked into the cache rather than replacing the host's systemd.
# SYSTEMD_BACKPORT is the version tried here; whatever backports serves is
# taken when that one has moved on.
ukify_from_backports() {
  local dir="$DISKLESS_RELAYS_CACHE/systemd-backports"
  if [[ ! -f "$dir/root/lib/systemd/ukify" || ! -f "$dir/root/usr/lib/systemd/boot/efi/linuxx64.efi.stub" ]]; then
    note "unpacked from bookworm-backports"
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
      echo 'deb http://deb.debian.org/debian bookworm-backports main' >/etc/apt/sources.list.d/bookworm-backports.list
    fi
    apt-get update -q >/dev/null
    rm -rf "$dir" && mkdir -p "$dir/debs"
    (cd "$dir/debs" && { apt-get download -q "systemd=$SYSTEMD_BACKPORT" "systemd-boot-efi=$SYSTEMD_BACKPORT" >/dev/null 2>&1 ||
      apt-get download -q systemd/bookworm-backports systemd-boot-efi/bookworm-backports >/dev/null 2>&1; })
    for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
    rm -rf "$dir/debs"
  fi
  cat >"$TOOLS_BIN/ukify" <<EOF
#!/bin/sh
exec /usr/bin/python3 "$dir/root/lib/systemd/ukify" "\$@"
EOF
  chmod 0755 "$TOOLS_BIN/ukify"
  ln -sfn "$dir/root/usr/lib/systemd/boot/efi/linuxx64.efi.stub" "$TOOLS_BIN/linuxx64.efi.stub"
}

# go_build NAME VERSION BUILD-COMMAND...: runs the build into a versioned
# cache directory once; prints the binary's path.
go_build() {
  local name=$1 version=$2
  shift 2
  local dest="$DISKLESS_RELAYS_CACHE/go/$name-$version"
  if [[ ! -x "$dest/$name" ]]; then
    log "  building $name $version from Go modules (first run only; its output goes to $SETUP_LOG)"
    note "built"
    rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
    OUT="$dest.tmp" "$@" >&2
    rm -rf "$dest" && mv "$dest.tmp" "$dest"
  fi
  echo "$dest/$name"
}

# go_tool NAME VERSION BUILD-COMMAND...: go_build, then a link on PATH.
go_tool() {
  local binary
  binary=$(go_build "$@")
  ln -sfn "$binary" "$TOOLS_BIN/$1"
}

# The Node.js language host goes next to the CLI, where the CLI looks first.
build_pulumi() {
  (cd "$here/tools/pulumi" && go build -trimpath -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
    -o "$OUT/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
  (cd "$here/tools/pulumi-language-nodejs" && go build -trimpath -ldflags "-s -w" \
    -o "$OUT/pulumi-language-nodejs" github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs)
}
build_command() { bash "$here/tools/command/build.sh" "$OUT" >/dev/null; }
build_proxmoxve() { bash "$here/tools/proxmoxve/build.sh" "$OUT" >/dev/null; }
build_broker() { bash "$here/tools/broker/build.sh" "$OUT" >/dev/null; }
# Syft and Grype build inside tools/vulndb, whose go.mod requires both: one
# set of dependency versions for the two (and vulndb), so Grype and vulndb
# reuse the packages Syft's build compiled instead of compiling their own.
build_syft() {
  (cd "$here/tools/vulndb" && go build -trimpath -ldflags "-s -w -X main.version=$SYFT_VERSION" -o "$OUT/syft" github.com/anchore/syft/cmd/syft)
}
build_actionlint() {
  GOBIN="$OUT" go install -trimpath -ldflags "-s -w -X main.version=$ACTIONLINT_VERSION" "github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION"
}
build_grype() {
  (cd "$here/tools/vulndb" && go build -trimpath -ldflags "-s -w -X main.version=$GRYPE_VERSION" -o "$OUT/grype" github.com/anchore/grype/cmd/grype)
}
build_vulndb() { (cd "$here/tools/vulndb" && go build -trimpath -ldflags "-s -w" -o "$OUT/vulndb" .); }

# The tests' small grype databases (tools/vulndb), rebuilt when its source changes.
vulndb_tool() {
  local source_digest
  source_digest=$(cd "$here/tools/vulndb" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
  go_tool vulndb "$source_digest" build_vulndb
}

# A Pulumi installed the usual way is used as it is, with its own language host.
pulumi_cli() {
  local existing
  existing=$(PATH=${PATH//"$TOOLS_BIN:"/} command -v pulumi || true)
  if [[ -n "$existing" ]] && "$existing" version 2>/dev/null | grep -Eq '^v3\.(2(4[89]|[5-9][0-9])|[3-9][0-9]{2})\.'; then
    note "using $existing ($("$existing" version))"
    return
  fi
  go_tool pulumi "$PULUMI_VERSION-nodejs-$LANGUAGE_HOST_SDK_VERSION" build_pulumi
}

# resource_plugin NAME VERSION BUILD: makes our build of a plugin the engine's
# plugin. A genuine release already installed at that version is left alone;
# our own earlier build is replaced when its source changed. Plugins stay off
# PATH: the engine would prefer a PATH copy over its plugin cache.
resource_plugin() {
  local name=$1 version=$2 build=$3
  local installed="$PULUMI_HOME/plugins/resource-$name-v$version"
  local source_digest
  source_digest=$(cd "$here/tools/$name" && find . -type f ! -name '*.json' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
  if [[ -x "$installed/pulumi-resource-$name" ]]; then
    [[ -f "$installed/.diskless-relays-build" ]] || return 0
    [[ $(cat "$installed/.diskless-relays-build") == "$source_digest" ]] && return 0
  fi
  local binary
  binary=$(go_build "pulumi-resource-$name" "$version-$source_digest" "$build")
  log "  registering resource plugin $name $version (tools/$name @ $source_digest)"
  pulumi plugin rm resource "$name" "$version" --yes >/dev/null 2>&1 || true
  pulumi plugin install resource "$name" "$version" --file "$binary" >/dev/null
  [[ -s $STEP_NOTE_FILE ]] || note "registered"
  echo "$source_digest" >"$installed/.diskless-relays-build"
}

# The key broker, the relay agent (copied into broker-mode images), the SNP
# simulator of the local stack, the measurement log's program and
# verify-relay, rebuilt when tools/broker changes.
broker_tools() {
  local source_digest binary dir
  source_digest=$(cd "$here/tools/broker" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
  binary=$(go_build key-broker "$source_digest" build_broker)
  dir=$(dirname "$binary")
  for program in key-broker relay-agent snp-simulator measurement-log verify-relay; do ln -sfn "$dir/$program" "$TOOLS_BIN/$program"; done
}

# Go module downloads wait on the network, not the CPU: on a machine that has
# built nothing yet they took minutes of an otherwise idle set-up (proxmoxve's
# alone three). They all start at once, in the background, while Debian's
# packages install and the first tool compiles; each build then finds its
# modules in Go's module cache, which is safe for concurrent use. Each tools/
# module downloads what its go.mod requires (go mod download: Syft and Grype
# build inside tools/vulndb); actionlint, installed at a version, what its own
# go.mod requires (go install -n resolves and downloads without compiling).
# Done once per set of pins: a download that fails here is tried again by its
# build, which reports it.
go_modules_marker() {
  local digest
  digest=$(cd "$here/tools" && { find . -name go.sum -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; echo "$ACTIONLINT_VERSION with go list -m all"; } | sha256sum | cut -c1-12)
  echo "$DISKLESS_RELAYS_CACHE/go/.modules-$digest"
}
prefetch_go_modules() {
  local marker dir
  marker=$(go_modules_marker)
  [[ -f $marker ]] && return 0
  local pids=()
  # go list -m all fetches the go.mod of every module in the graph, which
  # test/unit/tool-versions.test.ts reads and go mod download leaves out.
  for dir in pulumi pulumi-language-nodejs command proxmoxve broker vulndb; do
    (cd "$here/tools/$dir" && go mod download && GOFLAGS="$GOFLAGS -mod=readonly" go list -m all >/dev/null) &
    pids+=($!)
  done
  go install -n "github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION" 2>/dev/null &
  pids+=($!)
  local failed=0 pid
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  ((failed)) || { mkdir -p "$(dirname "$marker")" && touch "$marker"; }
}

npm_packages() {
  cd "$here"
  if [[ ! -d node_modules/@pulumi/pulumi ]] || ! npm ls --silent >/dev/null 2>&1; then
    npm ci --no-audit --no-fund
    note "installed"
  fi
}

seconds_since() { awk -v start="$1" -v now="$(date +%s.%N)" 'BEGIN { printf "%.1fs", now - start }'; }

# step LABEL COMMAND...: runs the command in this shell with its output in the
# log, then prints one line: the label, what happened, how long it took.
step() {
  local label=$1 started status
  shift
  started=$(date +%s.%N)
  : >"$STEP_NOTE_FILE"
  printf '\n== %s\n' "$label" >>"$SETUP_LOG"
  # In a subshell of its own, not under ||, so that set -e still stops the step at its first failure.
  set +e
  (set -e; "$@") >>"$SETUP_LOG" 2>&1
  status=$?
  set -e
  if ((status != 0)); then
    log "$label: FAILED after $(seconds_since "$started"). The last lines of $SETUP_LOG:"
    tail -n 25 "$SETUP_LOG" | sed 's/^/    /' >&3
    exit "$status"
  fi
  [[ -s $STEP_NOTE_FILE ]] || note "up to date"
  log "$(printf '%-40s %7s  %s' "$label" "$(seconds_since "$started")" "$(cat "$STEP_NOTE_FILE")")"
}

pulumi_lane_steps() {
  step "Pulumi CLI $PULUMI_VERSION" pulumi_cli
  step "command provider $COMMAND_VERSION" resource_plugin command "$COMMAND_VERSION" build_command
  step "proxmoxve provider $PROXMOXVE_VERSION" resource_plugin proxmoxve "$PROXMOXVE_VERSION" build_proxmoxve
}
scanners_lane_steps() {
  step "Syft $SYFT_VERSION" go_tool syft "$SYFT_VERSION" build_syft
  step "actionlint $ACTIONLINT_VERSION" go_tool actionlint "$ACTIONLINT_VERSION" build_actionlint
  step "Grype $GRYPE_VERSION" go_tool grype "$GRYPE_VERSION" build_grype
  step "vulndb (test databases for Grype)" vulndb_tool
  step "broker, agent, simulator, log, verifier" broker_tools
}

# go_lane NAME STEPS: runs a lane's steps (in a subshell of its own, started
# with &) with a log and a step note of its own, so that two lanes never
# write into each other's.
go_lane() {
  SETUP_LOG="$DISKLESS_RELAYS_CACHE/setup-$1.log"
  : >"$SETUP_LOG"
  STEP_NOTE_FILE=$(mktemp)
  # shellcheck disable=SC2064 # the lane's own file, known now
  trap "rm -f '$STEP_NOTE_FILE'" EXIT
  "$2"
}

disk_use() { du -shc "$@" 2>/dev/null | tail -n 1 | cut -f1 || true; }

main() {
  local started
  started=$(date +%s.%N)
  mkdir -p "$TOOLS_BIN"
  local prefetch=""
  if [[ ${1:-} != --system-only ]]; then
    prefetch_go_modules >>"$SETUP_LOG" 2>&1 &
    prefetch=$!
  fi
  step "Debian packages" apt_packages
  step "ukify and the EFI stub" ukify_from_backports
  step "npm packages" npm_packages
  # --system-only: enough to build images (CI builds the tests' base while the Go tools build).
  if [[ ${1:-} == --system-only ]]; then
    log "system packages and npm ready in $(seconds_since "$started"); the Go tools are not built yet"
    return
  fi
  # Two lanes of Go builds side by side: a build's link and its last packages
  # keep one core busy, and the other lane's compiles fill the second. The
  # plugins need the CLI that registers them, so they follow it in its lane.
  local pulumi_lane scanners_lane status=0
  go_lane pulumi pulumi_lane_steps &
  pulumi_lane=$!
  go_lane scanners scanners_lane_steps &
  scanners_lane=$!
  wait "$pulumi_lane" || status=$?
  wait "$scanners_lane" || status=$?
  ((status == 0)) || exit "$status"
  # Every build fetched what it needed; the prefetch has long finished (its failures were the builds' to report).
  wait "$prefetch" || true
  log "ready in $(seconds_since "$started"): $(pulumi version), $(syft version 2>/dev/null | awk '/^Version:/ {print "syft " $2}'), $(grype version 2>/dev/null | awk '/^Version:/ {print "grype " $2}'), $(tor --version | head -n1 | cut -d' ' -f1-3)"
  log "disk: tools $(disk_use "$DISKLESS_RELAYS_CACHE"), Go module and build caches $(disk_use "$(go env GOMODCACHE)" "$(go env GOCACHE)"), node_modules $(disk_use "$here/node_modules"); logs $SETUP_LOG and the Go builds' beside it (setup-pulumi.log, setup-scanners.log)"
}

main "$@"
