#!/usr/bin/env bash
# Builds one relay's bootable image from the shared base: overlay, UKI, ISO.
#   build-relay.sh BASE KEYS_DIR COLLECTED_DIR OUT NAME
# BASE: a finished base build. KEYS_DIR: the relay's key directory (only the
# identity files and the SSH host key are taken). COLLECTED_DIR: onion keys and
# state collected from the running relay, or an empty directory on a first
# deploy. OUT (made 0700) receives relay.efi and NAME (the ISO).
# The rendered texts come from the environment: RELAY_TORRC, RELAY_NETWORK_ENV,
# RELAY_AUTHORIZED_KEYS, RELAY_CMDLINE; optional RELAY_FAMILY_KEY (a file),
# SB_KEY and SB_CERT (Secure Boot signing).
set -euo pipefail
base=$1 keys=$2 collected=$3 out=$4 name=$5
here=$(cd "$(dirname "$0")" && pwd)
umask 077
mkdir -p "$out" && chmod 0700 "$out"
staging=$(mktemp -d "$out/staging.XXXXXX")
trap 'rm -rf "$staging" "$out/overlay.cpio"' EXIT

mkdir -p "$staging/etc/tor" "$staging/etc/relay/keys" "$staging/etc/ssh"
printf '%s' "$RELAY_TORRC" >"$staging/etc/tor/torrc"
printf '%s' "$RELAY_NETWORK_ENV" >"$staging/etc/relay/network.env"
printf '%s\n' "$RELAY_AUTHORIZED_KEYS" >"$staging/etc/relay/authorized_keys"
for file in ed25519_master_id_public_key ed25519_signing_cert ed25519_signing_secret_key secret_id_key; do
  cp "$keys/$file" "$staging/etc/relay/keys/$file"
done
cp "$keys/ssh_host_ed25519_key" "$keys/ssh_host_ed25519_key.pub" "$staging/etc/ssh/"
if [[ -n ${RELAY_FAMILY_KEY:-} ]]; then cp "$RELAY_FAMILY_KEY" "$staging/etc/relay/keys/"; fi
for file in secret_onion_key secret_onion_key_ntor secret_onion_key.old secret_onion_key_ntor.old; do
  if [[ -f $collected/keys/$file ]]; then cp "$collected/keys/$file" "$staging/etc/relay/keys/$file"; fi
done
if [[ -f $collected/state ]]; then cp "$collected/state" "$staging/etc/relay/state"; fi
chmod 0644 "$staging/etc/tor/torrc" "$staging/etc/relay/network.env" "$staging/etc/ssh/ssh_host_ed25519_key.pub"

"$here/build-overlay.sh" "$staging" "$out"
"$here/build-uki.sh" "$base" "$out/overlay.cpio" "$RELAY_CMDLINE" "$out" "${SB_KEY:-}" "${SB_CERT:-}"
"$here/build-iso.sh" "$out/relay.efi" "$out/$name"
# What the state may record: names, sizes and digests, never key bytes.
printf 'iso=%s iso_sha256=%s uki_sha256=%s uki_bytes=%s iso_bytes=%s\n' "$out/$name" \
  "$(sha256sum "$out/$name" | cut -d' ' -f1)" "$(sha256sum "$out/relay.efi" | cut -d' ' -f1)" \
  "$(stat -c %s "$out/relay.efi")" "$(stat -c %s "$out/$name")"
