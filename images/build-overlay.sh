#!/usr/bin/env bash
# Packs one relay's own files into the small second initrd of its image.
#   build-overlay.sh STAGING OUT.cpio
# STAGING is a private directory laid out as the overlay's root, with the
# modes the image needs (lib/image/image-layout.ts decides both). Reproducible:
# fixed mtimes (SOURCE_DATE_EPOCH, default 0), sorted names, no inode numbers.
set -euo pipefail
staging=$(realpath -m -- "$1") out=$(realpath -m -- "$2")
umask 077
epoch=${SOURCE_DATE_EPOCH:-0}
cd "$staging"
find . -mindepth 1 -print0 | xargs -0r touch -h -d "@$epoch"
find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible >"$out"
