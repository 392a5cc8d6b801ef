#!/usr/bin/env bash
# Packs one relay's own files into the small second initrd of its image.
#   build-overlay.sh STAGING OUT
# STAGING is a private directory laid out as the overlay's root:
#   etc/tor/torrc, etc/relay/keys/*, etc/relay/state, etc/relay/network.env,
#   etc/relay/authorized_keys, etc/ssh/ssh_host_ed25519_key{,.pub}
# OUT receives overlay.cpio and files.json (each path with its SHA-256; the
# list goes into the SBOM, the bytes never do).
set -euo pipefail
staging=$(realpath -m "$1") out=$(realpath -m "$2")
umask 077
mkdir -p "$out"
for required in etc/tor/torrc etc/relay/network.env etc/relay/keys/secret_id_key etc/ssh/ssh_host_ed25519_key; do
  [[ -f $staging/$required ]] || { echo "build-overlay: $staging/$required is missing" >&2; exit 1; }
done
cd "$staging"
find . -newermt "@${SOURCE_DATE_EPOCH:-0}" -print0 | xargs -0r touch -h -d "@${SOURCE_DATE_EPOCH:-0}"
find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible >"$out/overlay.cpio"
find . -type f | LC_ALL=C sort | while read -r file; do
  printf '{"path":"%s","sha256":"%s","mode":"%s"}\n' "${file#.}" "$(sha256sum "$file" | cut -d' ' -f1)" "$(stat -c %a "$file")"
done | awk 'BEGIN { print "[" } NR > 1 { print "," } { printf "%s", $0 } END { print "\n]" }' >"$out/files.json"
