#!/usr/bin/env bash
# Builds the shared Debian base of every relay image.
#   APT_SOURCES=FILE build-base.sh OUT RELEASE GEOIP(yes|no) TOR_USER [EXTRA_PACKAGE...]
# Writes OUT/rootfs (the tree Syft inventories), OUT/vmlinuz, OUT/base.cpio.zst
# (the RAM root, without /boot and with only the modules a VM needs),
# OUT/ssh.cpio.zst (the SSH server, which only image-mode relays carry),
# OUT/uname, OUT/os-release and OUT/packages.tsv (name, version, architecture
# and the SHA-256 of each installed .deb). Needs root (mmdebstrap builds a real
# tree). Reproducible: with the same SOURCE_DATE_EPOCH and the same packages
# from the mirror, every output is the same, byte for byte, on any host.
set -euo pipefail
out=$(realpath -m -- "$1") release=$2 geoip=$3 tor_user=$4
shift 4
here=$(cd "$(dirname "$0")/.." && pwd)
# The base holds no secrets and tor must read its files after dropping root;
# only the output directory itself is private.
umask 022

# The package list is data shared with the preview (base-packages); the
# geoip and extra packages come after it, in the order lib/image/package-index.ts
# basePackageRequest gives them.
packages=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/debian/base-packages" | paste -sd, -)
if [[ $geoip == yes ]]; then packages+=",tor-geoipdb"; fi
for extra in "$@"; do packages+=",$extra"; done
# The apt sources, one-line entries (lib/image/package-index.ts aptSourceLines):
# each is one MIRROR argument of mmdebstrap, data after its SUITE and TARGET.
[[ -n ${APT_SOURCES:-} && -s $APT_SOURCES ]] || { echo "build-base: APT_SOURCES must name a file of apt source lines (image.mirrors)" >&2; exit 1; }
mapfile -t mirrors <"$APT_SOURCES"

[[ -n ${SOURCE_DATE_EPOCH:-} ]] || { echo "build-base: SOURCE_DATE_EPOCH must be set: it is part of the base's recorded inputs" >&2; exit 1; }
export SOURCE_DATE_EPOCH
rm -rf "$out" && mkdir -p "$out" && chmod 0700 "$out"
# The full log stays beside the build; only a failure prints its tail.
# The apt cache is kept until the .debs are hashed; the host's resolv.conf and
# hostname (which mmdebstrap copies in) are replaced: the relay writes its own
# at boot, and the base must not depend on the build host. ($1 is the hook's
# argument, expanded by mmdebstrap's shell, not this one.)
# The release and the target follow "--": a release such as "--setup-hook"
# would otherwise be an option, whose value (the target path) mmdebstrap runs
# with sh -c.
# shellcheck disable=SC2016
mmdebstrap --quiet --variant=essential \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --skip=cleanup/apt/cache --skip=essential/unlink \
  --customize-hook='printf "" >"$1/etc/resolv.conf"' \
  --customize-hook='echo relay >"$1/etc/hostname"' \
  --include="$packages" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  -- "$release" "$out/rootfs" "${mirrors[@]}" >"$out/mmdebstrap.log" 2>&1 || { tail -n 40 "$out/mmdebstrap.log" >&2; exit 1; }

# What the mirror served: every installed package with its .deb's digest.
for deb in "$out"/rootfs/var/cache/apt/archives/*.deb; do
  printf '%s\t%s\t%s\t%s\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" "$(dpkg-deb -f "$deb" Architecture)" "$(sha256sum <"$deb" | cut -d' ' -f1)"
done | LC_ALL=C sort >"$out/packages.tsv"
# Every installed package must have its .deb's digest: none may go unrecorded.
missing=$(LC_ALL=C comm -13 <(cut -f1 "$out/packages.tsv" | LC_ALL=C sort -u) \
  <(dpkg-query --admindir="$out/rootfs/var/lib/dpkg" -W -f '${Package}\n' | LC_ALL=C sort -u))
[[ -z $missing ]] || { echo "build-base: no .deb was kept for: ${missing//$'\n'/ }" >&2; exit 1; }
rm -rf "$out/rootfs/var/cache/apt" && mkdir -p "$out/rootfs/var/cache/apt"

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
