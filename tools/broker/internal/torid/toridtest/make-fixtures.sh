#!/usr/bin/env bash
# Makes the test-only tor relay keys the torid and relayproof tests read, with
# tor itself (0.4.9), the way lib/tor/key-store.ts makes a relay's keys on the
# key-generation host: --list-fingerprint creates the identity, --keygen
# issues the signing key and certificate from the master key. Then it records
# what tor says about them (fingerprints, expiry): the tests' oracle.
#
#   make-fixtures.sh OUTDIR
#
# Writes relay-a/, relay-b/ and relay-a-expired/ into OUTDIR (which must not
# exist: the tests give a path in their own private temporary directory).
# The keys are made afresh for every test run and never committed: the
# repository keeps no file named like a secret key (.gitignore). The master
# secret keys stay in a temporary directory that is deleted. Needs tor and
# faketime (libfaketime), both installed by scripts/setup.sh.
set -euo pipefail
if (($# != 1)); then
  echo "usage: make-fixtures.sh OUTDIR" >&2
  exit 2
fi
umask 077
mkdir -- "$1"
here=$(cd -- "$1" && pwd)
work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT

tor_in() { # DIR ARGS...: tor with no torrc and DIR as its data and key directory
  local dir=$1
  shift
  tor --DataDirectory "$dir" --KeyDirectory "$dir" --ignore-missing-torrc -f /dev/null \
    --defaults-torrc /dev/null --Log "err stderr" "$@"
}

# Public files, the test-only secrets the tests sign with, and tor's own
# account of them.
publish() { # KEYDIR OUTDIR NICKNAME
  local keys=$1 out=$2 nick=$3
  rm -rf -- "$out"
  mkdir -p -- "$out"
  cp -- "$keys/ed25519_master_id_public_key" "$keys/ed25519_signing_cert" \
    "$keys/ed25519_signing_secret_key" "$keys/secret_id_key" "$out/"
  # A copy without the master secret key, so that tor only reads (with
  # OfflineMasterKey it never issues a new certificate).
  local ro="$work/ro-$nick"
  rm -rf -- "$ro"
  mkdir -p -- "$ro"
  cp -- "$out"/* "$ro/"
  tor_in "$ro" --OfflineMasterKey 1 --DisableNetwork 1 --ORPort auto --Nickname "$nick" \
    --list-fingerprint rsa | grep -E "^$nick " >"$out/tor-list-fingerprint-rsa.txt"
  tor_in "$ro" --OfflineMasterKey 1 --DisableNetwork 1 --ORPort auto --Nickname "$nick" \
    --list-fingerprint ed25519 | grep -E "^$nick " >"$out/tor-list-fingerprint-ed25519.txt"
  tor_in "$ro" --OfflineMasterKey 1 --key-expiration sign --format iso8601 2>&1 |
    grep -E '^signing-cert-expiry: ' >"$out/tor-key-expiration.txt"
}

for nick in FixtureA FixtureB; do
  dir="$work/$nick"
  mkdir -p -- "$dir"
  tor_in "$dir" --list-fingerprint --DisableNetwork 1 --ORPort auto --Nickname "$nick" >/dev/null
  tor_in "$dir" --keygen --SigningKeyLifetime "30 days" >/dev/null
done
publish "$work/FixtureA" "$here/relay-a" FixtureA
publish "$work/FixtureB" "$here/relay-b" FixtureB

# Relay A's master key issues a signing key and certificate on a fake clock
# (2024-01-01, lifetime two days): long expired by now. tor's expiry and its
# own verdict are taken on the same fake clock, before the expiry.
dir="$work/FixtureA"
rm -f -- "$dir/ed25519_signing_cert" "$dir/ed25519_signing_secret_key"
faketime '2024-01-01 00:00:00' tor --DataDirectory "$dir" --KeyDirectory "$dir" --ignore-missing-torrc \
  -f /dev/null --defaults-torrc /dev/null --Log "err stderr" --keygen --SigningKeyLifetime "2 days" >/dev/null
out="$here/relay-a-expired"
rm -rf -- "$out"
mkdir -p -- "$out"
cp -- "$dir/ed25519_master_id_public_key" "$dir/ed25519_signing_cert" "$dir/ed25519_signing_secret_key" "$out/"
ro="$work/ro-expired"
mkdir -p -- "$ro"
cp -- "$out"/* "$dir/secret_id_key" "$ro/"
faketime '2024-01-01 00:00:00' tor --DataDirectory "$ro" --KeyDirectory "$ro" --ignore-missing-torrc \
  -f /dev/null --defaults-torrc /dev/null --Log "err stderr" --OfflineMasterKey 1 \
  --key-expiration sign --format iso8601 2>&1 | grep -E '^signing-cert-expiry: ' >"$out/tor-key-expiration.txt"
# On today's clock tor itself calls this certificate expired.
if tor_in "$ro" --OfflineMasterKey 1 --Log "notice stderr" --key-expiration sign >"$work/today.txt" 2>&1; then
  echo "tor accepted the expired certificate today" >&2
  exit 1
fi
grep -o 'the one I have is expired' "$work/today.txt" | head -n 1 >"$out/tor-verdict-today.txt"
