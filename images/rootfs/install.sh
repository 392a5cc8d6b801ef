#!/usr/bin/env bash
# Installs the relay's init and service scripts into a base root filesystem,
# with the paths file they all source.
#   GUEST_PATHS_FILE=… GUEST_PATHS_ENV=… install.sh ROOTFS TOR_USER
# The paths file's name and text come from lib/image/guest-paths.ts, through
# the build-base step: NAME=/path lines of plain characters, checked there.
set -euo pipefail
rootfs=$(realpath -m -- "$1") tor_user=$2
files=$(cd "$(dirname "$0")" && pwd)/files
paths_file=${GUEST_PATHS_FILE:?the build-base step says where the guest paths file goes}
paths_env=${GUEST_PATHS_ENV:?the build-base step hands over the guest paths}

cp -a "$files/." "$rootfs/"
chmod 0755 "$rootfs/init" "$rootfs"/usr/local/sbin/relay-* "$rootfs/etc/acpi/PWRF/00000080"
mkdir -p "$rootfs$(dirname "$paths_file")"
printf '%s' "$paths_env" >"$rootfs$paths_file"
chmod 0644 "$rootfs$paths_file"
# shellcheck source=/dev/null
. "$rootfs$paths_file"
echo "$tor_user" >"$rootfs$RELAY_TOR_USER_FILE"
# Debian's busybox installs no applet links; provide the few the scripts use
# where the distribution has no binary of that name.
mkdir -p "$rootfs/usr/local/bin"
for applet in ip hostname modprobe killall tar; do
  if ! chroot "$rootfs" /bin/busybox sh -c "command -v $applet" >/dev/null 2>&1; then
    ln -sfn /bin/busybox "$rootfs/usr/local/bin/$applet"
  fi
done
# busybox init reads /etc/inittab; make sure nothing else claims PID 1.
mkdir -p "$rootfs/sbin" "$rootfs$RELAY_TOR_DATA" "$rootfs/run" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"
ln -sfn /init "$rootfs/sbin/init"
