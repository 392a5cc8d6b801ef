#!/usr/bin/env bash
# Packs a base root filesystem into the RAM root of every relay: no /boot, no
# package caches or docs, and of the kernel's modules only those a VM needs.
# The SSH server's files (SSH_LIST: one ./path per line) go to a layer of
# their own, SSH_OUT, which only image-mode relays carry.
#   pack-initrd.sh ROOTFS KERNEL GEOIP(yes|no) OUT.cpio.zst SSH_LIST SSH_OUT.cpio.zst
set -euo pipefail
rootfs=$(realpath -m -- "$1") kernel=$2 geoip=$3 out=$(realpath -m -- "$4") ssh_list=$(realpath -m -- "$5") ssh_out=$(realpath -m -- "$6")
# The kernel modules a relay loads, at boot and for the connection limits:
# KERNEL_MODULES in lib/image/image-layout.ts, handed over by the build-base
# step as space-separated names. They are kept with their dependencies and
# listed in the RAM root (KERNEL_MODULES_DIR) for relay-boot and relay-hardening.
modules_dir=${KERNEL_MODULES_DIR:?the build-base step says where the lists go}
[[ $modules_dir =~ ^/[a-z0-9/_-]+$ ]] || { echo "pack-initrd: $modules_dir is not an absolute path" >&2; exit 1; }
for list in "${KERNEL_MODULES_BOOT:?the build-base step hands over the boot modules}" "${KERNEL_MODULES_HARDENING:?the build-base step hands over the hardening modules}"; do
  for module in $list; do
    [[ $module =~ ^[a-z0-9_]+$ ]] || { echo "pack-initrd: '$module' is not a kernel module name" >&2; exit 1; }
  done
done
wanted_modules="$KERNEL_MODULES_BOOT $KERNEL_MODULES_HARDENING"
mkdir -p "$rootfs$modules_dir"
# shellcheck disable=SC2086 # one name per word, each checked above
printf '%s\n' $KERNEL_MODULES_BOOT >"$rootfs$modules_dir/boot"
# shellcheck disable=SC2086
printf '%s\n' $KERNEL_MODULES_HARDENING >"$rootfs$modules_dir/hardening"
epoch=${SOURCE_DATE_EPOCH:-0}
# zstd's level (image.compressLevel, checked by the step's schema): a level
# without --ultra, as a number, never an option.
level=${INITRD_ZSTD_LEVEL:?the build-base step hands over the zstd level}
[[ $level =~ ^([1-9]|1[0-9])$ ]] || { echo "pack-initrd: INITRD_ZSTD_LEVEL '$level' is not a zstd level from 1 to 19" >&2; exit 1; }

moddir=usr/lib/modules/$kernel
[[ -d $rootfs/$moddir ]] || moddir=lib/modules/$kernel
keep=$(mktemp)
trap 'rm -f "$keep"' EXIT

# The wanted modules and their dependencies, read from modules.dep.
awk -v wanted="$wanted_modules" '
  BEGIN { n = split(wanted, w, " "); for (i = 1; i <= n; i++) { gsub("-", "_", w[i]); want[w[i]] = 1 } }
  {
    key = $1; sub(":$", "", key)
    name = key; sub(".*/", "", name); sub("\\.ko.*$", "", name); gsub("-", "_", name)
    deps[name] = key; for (i = 2; i <= NF; i++) deps[name] = deps[name] " " $i
  }
  END { for (m in want) if (m in deps) print deps[m] }
' "$rootfs/$moddir/modules.dep" | tr ' ' '\n' | sed '/^$/d' | sed "s|^|./$moddir/|" | sort -u >"$keep"
[[ -s $keep ]] || { echo "pack-initrd: none of [$wanted_modules] found in $moddir" >&2; exit 1; }

excludes=(-path ./boot -o -path './var/cache/*' -o -path './var/lib/apt/lists/*' -o -path './var/log/*'
  -o -path './usr/share/man' -o -path './usr/share/info' -o -path './usr/share/locale'
  -o -path './usr/share/initramfs-tools' -o -path './etc/initramfs-tools' -o -path './usr/share/doc/*' -o -path "./$moddir/kernel")
if [[ $geoip != yes ]]; then excludes+=(-o -path './usr/share/tor/geoip' -o -path './usr/share/tor/geoip6'); fi

cd "$rootfs"
# Reproducible: fixed mtimes, sorted names, no inode numbers.
find . -newermt "@$epoch" -print0 | xargs -0r touch -h -d "@$epoch"
{
  find . \( "${excludes[@]}" \) -prune -o -print
  # The kept modules' directories, then the modules themselves.
  sed 's|/[^/]*$||' "$keep" | while read -r dir; do
    while [[ $dir != "./$moddir" && $dir != . ]]; do echo "$dir"; dir=${dir%/*}; done
  done
  echo "./$moddir/kernel"
  cat "$keep"
} | LC_ALL=C sort -u | LC_ALL=C comm -23 - <(LC_ALL=C sort -u "$ssh_list") | cpio --quiet -o -H newc --reproducible | zstd -q "-$level" -T0 -f -o "$out"
LC_ALL=C sort -u "$ssh_list" | cpio --quiet -o -H newc --reproducible | zstd -q "-$level" -T0 -f -o "$ssh_out"
