#!/usr/bin/env bash
# Builds one relay's Unified Kernel Image from the shared base and its overlay.
#   build-uki.sh BASE SSH(yes|no) OVERLAY_CPIO CMDLINE OUT [SB_KEY SB_CERT]
# BASE is a directory made by images/<flavour>/build-base.sh; SSH=yes adds its
# SSH server layer (image mode only). Writes OUT/relay.efi.
set -euo pipefail
base=$1 ssh=$2 overlay=$3 cmdline=$4 out=$5 sb_key=${6:-} sb_cert=${7:-}
umask 077
mkdir -p "$out"
[[ -f $base/.complete ]] || { echo "build-uki: $base is not a finished base build" >&2; exit 1; }
stub=${UKIFY_STUB:-$(dirname "$(command -v ukify)")/linuxx64.efi.stub}
layers=(--initrd "$base/base.cpio.zst")
case $ssh in
  yes) layers+=(--initrd "$base/ssh.cpio.zst") ;;
  no) ;;
  *) echo "build-uki: SSH must be yes or no, not $ssh" >&2; exit 1 ;;
esac
signing=()
if [[ -n $sb_key ]]; then signing=(--secureboot-private-key "$sb_key" --secureboot-certificate "$sb_cert"); fi
# Explicit --uname and --os-release: otherwise ukify guesses and embeds the build host's.
ukify build --stub "$stub" \
  --linux "$base/vmlinuz" "${layers[@]}" --initrd "$overlay" \
  --cmdline "rdinit=/init $cmdline" --uname "$(cat "$base/uname")" --os-release "@$base/os-release" \
  "${signing[@]}" --output "$out/relay.efi" >/dev/null
