#!/usr/bin/env bash
# Wraps a UKI in an El Torito EFI ISO, the form Proxmox VE boots from a CD-ROM.
#   build-iso.sh UKI LABEL OUT.iso
# LABEL (public: relay, nickname, image digest) goes to the ISO's root under
# its own file name, so an ISO on a datastore says what it holds unbooted.
# Reproducible: every date in the ISO and its EFI system partition is
# SOURCE_DATE_EPOCH (default 0), so the same UKI and label give the same bytes.
set -euo pipefail
# Absolute paths: none of them can be read as an option by cp, stat or xorriso.
uki=$(realpath -m -- "$1") label=$(realpath -m -- "$2") iso=$(realpath -m -- "$3")
umask 077
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The EFI system partition image: the UKI as the removable-media boot path.
size_kib=$(( ($(stat -c %s "$uki") / 1024) + 2048 ))
mkfs.vfat -C -n RELAYESP --invariant "$work/esp.img" "$size_kib" >/dev/null
# The tree is copied whole with -m, so its directories keep the fixed date too.
mkdir -p "$work/esp/EFI/BOOT"
cp "$uki" "$work/esp/EFI/BOOT/BOOTX64.EFI"
find "$work/esp" -exec touch -d "@$SOURCE_DATE_EPOCH" {} +
mcopy -s -m -i "$work/esp.img" "$work/esp/EFI" ::/
mkdir -p "$work/iso"
cp "$work/esp.img" "$work/iso/esp.img"
cp "$label" "$work/iso/$(basename "$label")"
touch -d "@$SOURCE_DATE_EPOCH" "$work/iso" "$work/iso/"*
# --set_all_file_dates leaves Rock Ridge ctimes at the disk files' (now): -alter_date_r c fixes them.
xorriso -as mkisofs -quiet -volid RELAY -e esp.img -no-emul-boot \
  --set_all_file_dates "=$SOURCE_DATE_EPOCH" -o "$iso" "$work/iso" \
  -- -alter_date_r c "=$SOURCE_DATE_EPOCH" / -- 2>/dev/null
