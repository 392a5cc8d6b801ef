#!/usr/bin/env bash
# Installs the relay's init and service scripts into a base root filesystem.
#   install.sh ROOTFS TOR_USER
set -euo pipefail
rootfs=$(realpath -m -- "$1") tor_user=$2
files=$(cd "$(dirname "$0")" && pwd)/files

cp -a "$files/." "$rootfs/"
chmod 0755 "$rootfs/init" "$rootfs"/usr/local/sbin/relay-* "$rootfs/etc/acpi/PWRF/00000080"
echo "$tor_user" >"$rootfs/etc/relay/tor-user"
# Debian's busybox installs no applet links; provide the few the scripts use
# where the distribution has no binary of that name.
mkdir -p "$rootfs/usr/local/bin"
for applet in ip hostname modprobe killall tar; do
  if ! chroot "$rootfs" /bin/busybox sh -c "command -v $applet" >/dev/null 2>&1; then
    ln -sfn /bin/busybox "$rootfs/usr/local/bin/$applet"
  fi
done
# busybox init reads /etc/inittab; make sure nothing else claims PID 1.
mkdir -p "$rootfs/sbin" "$rootfs/var/lib/tor" "$rootfs/run" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"
ln -sfn /init "$rootfs/sbin/init"
