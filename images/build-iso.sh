#!/usr/bin/env bash
# Wraps a UKI in an El Torito EFI ISO, the form Proxmox VE boots from a CD-ROM.
#   build-iso.sh UKI LABEL OUT.iso
# LABEL (public: relay, nickname, image digest) goes to the ISO's root under
# its own file name, so an ISO on a datastore says what it holds unbooted.
set -euo pipefail
uki=$1 label=$2 iso=$3
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The EFI system partition image: the UKI as the removable-media boot path.
size_kib=$(( ($(stat -c %s "$uki") / 1024) + 2048 ))
mkfs.vfat -C -n RELAYESP --invariant "$work/esp.img" "$size_kib" >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.img" -m "$uki" ::/EFI/BOOT/BOOTX64.EFI
mkdir -p "$work/iso"
cp "$work/esp.img" "$work/iso/esp.img"
cp "$label" "$work/iso/$(basename "$label")"
xorriso -as mkisofs -quiet -volid RELAY -e esp.img -no-emul-boot \
  -o "$iso" "$work/iso" 2>/dev/null
