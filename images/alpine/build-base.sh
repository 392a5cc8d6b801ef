#!/usr/bin/env bash
# Builds the shared Alpine base of every relay image (the production flavour).
#   build-base.sh OUT BRANCH GEOIP(yes|no) TOR_USER [EXTRA_PACKAGE...]
# Same outputs as images/debian/build-base.sh (packages.tsv carries apk's
# checksums where Debian's has .deb digests). The kernel is installed into a
# separate staging root so that linux-virt's mkinitfs and apk-tools stay out
# of the relay. Needs root, alpine-make-rootfs v0.8.1 (ALPINE_MAKE_ROOTFS) and
# a reachable Alpine mirror (ALPINE_MIRROR). Unreleased alpine-make-rootfs
# can exit 0 on failure, so every output is checked after it runs.
set -euo pipefail
out=$(realpath -m -- "$1") branch=$2 geoip=$3 tor_user=$4
shift 4
here=$(cd "$(dirname "$0")/.." && pwd)
umask 022
make_rootfs=${ALPINE_MAKE_ROOTFS:-alpine-make-rootfs}
mirror=${ALPINE_MIRROR:-https://dl-cdn.alpinelinux.org/alpine}

rm -rf "$out" && mkdir -p "$out" && chmod 0700 "$out"
packages="busybox musl tor openssh-server libcap2 unbound dnssec-root"
for extra in "$@"; do packages+=" $extra"; done

# Keep the package database where Syft finds it: the tool deletes /lib/apk
# when apk-tools is not in the root. Values as --option=value and the
# destination after "--" (alpine-make-rootfs parses with getopt): none can
# be read as an option.
"$make_rootfs" --branch="$branch" --mirror-uri="$mirror" --packages="$packages" \
  --script-chroot -- "$out/rootfs" - <<'CHROOT'
cp /lib/apk/db/installed /etc/apk-installed
CHROOT
mkdir -p "$out/rootfs/lib/apk/db" && mv "$out/rootfs/etc/apk-installed" "$out/rootfs/lib/apk/db/installed"
test -x "$out/rootfs/usr/bin/tor" || { echo "alpine-make-rootfs produced no tor" >&2; exit 1; }

mkdir -p "$out/kernel-root/etc/mkinitfs"
echo 'disable_trigger=yes' >"$out/kernel-root/etc/mkinitfs/mkinitfs.conf"
"$make_rootfs" --branch="$branch" --mirror-uri="$mirror" --packages=linux-virt -- "$out/kernel-root"
test -f "$out/kernel-root/boot/vmlinuz-virt" || { echo "linux-virt produced no kernel" >&2; exit 1; }
kernel=$(basename "$(ls -d "$out"/kernel-root/lib/modules/*)")
mkdir -p "$out/rootfs/lib/modules"
cp -a "$out/kernel-root/lib/modules/$kernel" "$out/rootfs/lib/modules/"

"$here/rootfs/install.sh" "$out/rootfs" "$tor_user"
cp "$out/kernel-root/boot/vmlinuz-virt" "$out/vmlinuz"
echo "$kernel" >"$out/uname"
cp "$out/rootfs/etc/os-release" "$out/os-release"
# The SSH server's files, from apk's database (F: a directory, R: a file in it): a layer of their own.
awk '/^P:/ { pkg = substr($0, 3) } /^F:/ { dir = substr($0, 3) } /^R:/ && pkg == "openssh-server" { print "./" dir "/" substr($0, 3) } /^$/ { pkg = "" }' \
  "$out/rootfs/lib/apk/db/installed" >"$out/ssh-layer.list"
grep -qx './usr/sbin/sshd' "$out/ssh-layer.list" || { echo "build-base: openssh-server lists no /usr/sbin/sshd" >&2; exit 1; }
"$here/rootfs/pack-initrd.sh" "$out/rootfs" "$kernel" "$geoip" "$out/base.cpio.zst" "$out/ssh-layer.list" "$out/ssh.cpio.zst"
# What the mirror served: name, version, architecture and apk's checksum of each package (C:, a Q1 SHA-1), the kernel's too.
for db in "$out/rootfs/lib/apk/db/installed" "$out/kernel-root/lib/apk/db/installed"; do
  [[ -f $db ]] || continue
  awk '/^P:/ { p = substr($0, 3) } /^V:/ { v = substr($0, 3) } /^A:/ { a = substr($0, 3) } /^C:/ { c = substr($0, 3) }
    /^$/ { if (p != "") print p "\t" v "\t" a "\tapk-" c; p = v = a = c = "" }
    END { if (p != "") print p "\t" v "\t" a "\tapk-" c }' "$db"
done | LC_ALL=C sort -u >"$out/packages.tsv"
rm -rf "$out/kernel-root"
touch "$out/.complete"
