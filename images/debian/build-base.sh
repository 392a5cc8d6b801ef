#!/usr/bin/env bash
# Builds the shared Debian base of every relay image.
#   build-base.sh OUT RELEASE GEOIP(yes|no) TOR_USER [EXTRA_PACKAGE...]
# Writes OUT/rootfs (the tree Syft inventories), OUT/vmlinuz, OUT/base.cpio.zst
# (the RAM root, without /boot and with only the modules a VM needs),
# OUT/ssh.cpio.zst (the SSH server, which only image-mode relays carry),
# OUT/uname and OUT/os-release. Needs root (mmdebstrap builds a real tree).
set -euo pipefail
out=$(realpath -m "$1") release=$2 geoip=$3 tor_user=$4
shift 4
here=$(cd "$(dirname "$0")/.." && pwd)
# The base holds no secrets and tor must read its files after dropping root;
# only the output directory itself is private.
umask 022

# tiny-initramfs satisfies the kernel's initramfs-tool dependency without
# udev; usr-is-merged keeps usrmerge (and with it perl) out of the image.
# unbound and the root trust anchor (dns-root-data) are the exits' resolver.
packages="usr-is-merged,tiny-initramfs,busybox,tor,openssh-server,unbound,dns-root-data,linux-image-cloud-amd64"
if [[ $geoip == yes ]]; then packages+=",tor-geoipdb"; fi
for extra in "$@"; do packages+=",$extra"; done

rm -rf "$out" && mkdir -p "$out" && chmod 0700 "$out"
# The full log stays beside the build; only a failure prints its tail.
mmdebstrap --quiet --variant=essential \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --include="$packages" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  "$release" "$out/rootfs" >"$out/mmdebstrap.log" 2>&1 || { tail -n 40 "$out/mmdebstrap.log" >&2; exit 1; }

# Host keys are per relay and come with the overlay.
rm -f "$out/rootfs/etc/ssh/ssh_host_"*
"$here/rootfs/install.sh" "$out/rootfs" "$tor_user"

kernel=$(basename "$(ls -d "$out"/rootfs/lib/modules/*)")
cp "$out/rootfs/boot/vmlinuz-$kernel" "$out/vmlinuz"
echo "$kernel" >"$out/uname"
cp "$out/rootfs/usr/lib/os-release" "$out/os-release"
# The SSH server's files (not its directories, which other packages share,
# nor /lib or /bin, which merged /usr makes links to directories): a layer of
# their own.
dpkg-query --admindir="$out/rootfs/var/lib/dpkg" -L openssh-server | while read -r path; do
  if [[ -e $out/rootfs$path || -L $out/rootfs$path ]] && [[ ! -d $out/rootfs$path ]]; then echo ".$path"; fi
done >"$out/ssh-layer.list"
grep -qx './usr/sbin/sshd' "$out/ssh-layer.list" || { echo "build-base: openssh-server lists no /usr/sbin/sshd" >&2; exit 1; }
"$here/rootfs/pack-initrd.sh" "$out/rootfs" "$kernel" "$geoip" "$out/base.cpio.zst" "$out/ssh-layer.list" "$out/ssh.cpio.zst"
touch "$out/.complete"
