#!/usr/bin/env bash
# Writes one relay image's SBOM artifact: the base SBOMs it stands on (by
# digest) and the overlay's file list (paths, modes and digests; never bytes).
#   write-relay-sbom.sh RELAY NICKNAME IMAGE_DIGEST BASE_SYFT_JSON BASE_CYCLONEDX_JSON FILES_JSON UKI ISO OUT.json
set -euo pipefail
relay=$1 nickname=$2 image_digest=$3 base_syft=$4 base_cdx=$5 files=$6 uki=$7 iso=$8 out=$9
mkdir -p "$(dirname "$out")"
digest() { sha256sum "$1" | cut -d' ' -f1; }
cat >"$out.tmp" <<JSON
{
  "schema": "diskless-relays/relay-sbom/v1",
  "relay": "$relay",
  "nickname": "$nickname",
  "imageDigest": "$image_digest",
  "iso": { "name": "$(basename "$iso")", "sha256": "$(digest "$iso")", "bytes": $(stat -c %s "$iso") },
  "uki": { "sha256": "$(digest "$uki")", "bytes": $(stat -c %s "$uki") },
  "base": {
    "syftJson": { "file": "$(basename "$base_syft")", "sha256": "$(digest "$base_syft")" },
    "cyclonedxJson": { "file": "$(basename "$base_cdx")", "sha256": "$(digest "$base_cdx")" }
  },
  "overlay": $(cat "$files")
}
JSON
mv "$out.tmp" "$out"
