#!/usr/bin/env bash
# Builds one relay's Unified Kernel Image from the shared base and its overlay.
#   build-uki.sh BASE SSH(yes|no) OVERLAY_CPIO CMDLINE OUT [SB_KEY SB_CERT]
# BASE is a directory made by images/<flavour>/build-base.sh; SSH=yes adds its
# SSH server layer (image mode only). Writes OUT/relay.efi.
# Paths are made absolute and every value goes to ukify as --option=value:
# nothing the stack config names can be read as an option.
set -euo pipefail
base=$(realpath -m -- "$1") ssh=$2 overlay=$(realpath -m -- "$3") cmdline=$4 out=$(realpath -m -- "$5")
sb_key=${6:+$(realpath -m -- "$6")} sb_cert=${7:+$(realpath -m -- "$7")}
umask 077
mkdir -p -- "$out"
[[ -f $base/.complete ]] || { echo "build-uki: $base is not a finished base build" >&2; exit 1; }
stub=${UKIFY_STUB:-$(dirname "$(command -v ukify)")/linuxx64.efi.stub}
layers=(--initrd="$base/base.cpio.zst")
case $ssh in
  yes) layers+=(--initrd="$base/ssh.cpio.zst") ;;
  no) ;;
  *) echo "build-uki: SSH must be yes or no, not $ssh" >&2; exit 1 ;;
esac
signing=()
if [[ -n $sb_key ]]; then signing=(--secureboot-private-key="$sb_key" --secureboot-certificate="$sb_cert"); fi
# Explicit --uname and --os-release: otherwise ukify guesses and embeds the build host's.
# The command line begins with rdinit=, never with the @ that would make ukify read a file.
ukify build --stub="$stub" \
  --linux="$base/vmlinuz" "${layers[@]}" --initrd="$overlay" \
  --cmdline="rdinit=/init $cmdline" --uname="$(cat "$base/uname")" --os-release="@$base/os-release" \
  "${signing[@]}" --output="$out/relay.efi" >/dev/null
