/**
 * The Alpine flavour cannot be built here (no Alpine mirror is reachable), so
 * this runs images/alpine/build-base.sh with a stand-in for alpine-make-rootfs
 * that records its arguments and lays out the tree the real tool would, and
 * asserts the exact commands the script runs and what it makes of the tree.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { TOR_RUNTIME } from "../../lib/plan/fleet";
import { runStep } from "../support/images";
import { privateTmpDir } from "../support/tmp";

const dir = privateTmpDir("alpine");
const calls = join(dir, "calls.log");

// Records "ARGS…" and, like alpine-make-rootfs, builds DEST (running the
// chroot script from stdin with sh, as the real tool does inside the chroot).
const STAND_IN = `#!/usr/bin/env bash
set -euo pipefail
printf '%s\\n' "$*" >>${calls}
# The real tool parses its options with util-linux getopt (so --opt=value and
# a "--" before the positionals both work); the stand-in parses them the same way.
eval set -- "$(getopt -n alpine-make-rootfs -o b:m:p:s -l branch:,mirror-uri:,packages:,script-chroot -- "$@")"
while [[ $1 != -- ]]; do case $1 in -b|--branch|-m|--mirror-uri|-p|--packages) shift 2 ;; *) shift ;; esac; done
shift
dest=$1 script=\${2:-}
mkdir -p "$dest/etc" "$dest/usr/bin" "$dest/bin" "$dest/lib/apk/db" "$dest/usr/share/tor"
echo 'NAME="Alpine Linux"' >"$dest/etc/os-release"
# apk's installed database: C: its checksum, P: a package, V: its version, A: its architecture, F: a directory of it, R: a file in that directory.
printf 'C:Q1tor0000000000000000000000000=\nP:tor\nV:0.4.8.21-r0\nA:x86_64\nF:usr/bin\nR:tor\n\nC:Q1ssh0000000000000000000000000=\nP:openssh-server\nV:10.2_p1-r0\nA:x86_64\nF:usr/sbin\nR:sshd\n' >"$dest/lib/apk/db/installed"
mkdir -p "$dest/usr/sbin" && echo sshd >"$dest/usr/sbin/sshd"
: >"$dest/usr/share/tor/geoip"
if [[ $script == - ]]; then (cd "$dest" && sed 's|^cp /lib|cp lib|; s| /etc/| etc/|' | sh); fi
if grep -q linux-virt <<<"$(tail -n1 ${calls})"; then
  kver=6.18.1-0-virt
  mkdir -p "$dest/boot" "$dest/lib/modules/$kver/kernel/drivers/net" "$dest/lib/modules/$kver/kernel/drivers/virtio" "$dest/lib/modules/$kver/kernel/drivers/char/hw_random" "$dest/lib/modules/$kver/kernel/fs/ext4"
  echo kernel >"$dest/boot/vmlinuz-virt"
  for m in net/virtio_net net/net_failover virtio/virtio_pci char/hw_random/virtio-rng; do : >"$dest/lib/modules/$kver/kernel/drivers/$m.ko.gz"; done
  : >"$dest/lib/modules/$kver/kernel/fs/ext4/ext4.ko.gz"
  cat >"$dest/lib/modules/$kver/modules.dep" <<DEP
kernel/drivers/net/virtio_net.ko.gz: kernel/drivers/net/net_failover.ko.gz
kernel/drivers/net/net_failover.ko.gz:
kernel/drivers/virtio/virtio_pci.ko.gz:
kernel/drivers/char/hw_random/virtio-rng.ko.gz:
kernel/fs/ext4/ext4.ko.gz:
DEP
else
  echo tor >"$dest/usr/bin/tor" && chmod +x "$dest/usr/bin/tor"
fi
`;

describe("images/alpine/build-base.sh", () => {
  const out = join(dir, "base");
  let lines: string[];
  beforeAll(() => {
    writeFileSync(join(dir, "alpine-make-rootfs"), STAND_IN);
    chmodSync(join(dir, "alpine-make-rootfs"), 0o755);
    // Through the program's own build-base step, with the flavour's tor user as the program hands it over.
    const result = runStep(
      "build-base",
      { flavour: "alpine", release: "v3.23", geoip: false, extraPackages: ["htop"], torUser: TOR_RUNTIME.alpine.user, sourceDateEpoch: 1_767_225_600, compressLevel: 19, dir: out },
      { ALPINE_MAKE_ROOTFS: join(dir, "alpine-make-rootfs"), ALPINE_MIRROR: "https://mirror.example/alpine" },
    );
    expect(result.status, result.stderr).toBe(0);
    lines = readFileSync(calls, "utf8").trim().split("\n");
  });

  it("runs alpine-make-rootfs for the relay root with the branch, mirror, packages and chroot script", () => {
    expect(lines[0]).toBe(`--branch=v3.23 --mirror-uri=https://mirror.example/alpine --packages=busybox musl tor openssh-server libcap2 unbound dnssec-root htop --script-chroot -- ${out}/rootfs -`);
  });

  it("installs the kernel into a separate staging root, with mkinitfs's trigger disabled", () => {
    expect(lines[1]).toBe(`--branch=v3.23 --mirror-uri=https://mirror.example/alpine --packages=linux-virt -- ${out}/kernel-root`);
    expect(lines).toHaveLength(2);
    expect(existsSync(join(out, "kernel-root"))).toBe(false);
  });

  it("keeps the apk database for Syft and produces the base outputs", () => {
    expect(readFileSync(join(out, "rootfs/lib/apk/db/installed"), "utf8")).toContain("P:tor");
    expect(readFileSync(join(out, "uname"), "utf8").trim()).toBe("6.18.1-0-virt");
    for (const file of ["vmlinuz", "base.cpio.zst", "os-release", ".complete", "rootfs/init", "rootfs/etc/inittab"]) expect(existsSync(join(out, file)), file).toBe(true);
  });

  it("records the packages apk installed, with apk's checksums, and the date inside the base", () => {
    const record = JSON.parse(readFileSync(join(out, "base.json"), "utf8"));
    expect(record).toMatchObject({ flavour: "alpine", release: "v3.23", sourceDateEpoch: 1_767_225_600, kernel: "6.18.1-0-virt" });
    expect(record.packages).toEqual([
      { name: "openssh-server", version: "10.2_p1-r0", architecture: "x86_64", digest: "apk-Q1ssh0000000000000000000000000=" },
      { name: "tor", version: "0.4.8.21-r0", architecture: "x86_64", digest: "apk-Q1tor0000000000000000000000000=" },
    ]);
  });

  it("packs openssh-server's files, as apk's database lists them, in the SSH layer and not in the base layer", () => {
    const list = (archive: string) => spawnSync("sh", ["-c", `zstd -dc ${join(out, archive)} | cpio -t 2>/dev/null`], { encoding: "utf8" }).stdout.split("\n");
    expect(list("ssh.cpio.zst")).toEqual(["usr/sbin/sshd", ""]);
    expect(list("base.cpio.zst")).toContain("usr/bin/tor");
    expect(list("base.cpio.zst")).not.toContain("usr/sbin/sshd");
  });

  it("packs only the modules a VM needs, and no GeoIP data unless asked", () => {
    const listing = spawnSync("sh", ["-c", `zstd -dc ${out}/base.cpio.zst | cpio -t 2>/dev/null`], { encoding: "utf8" }).stdout;
    expect(listing).toMatch(/virtio_net\.ko\.gz/);
    expect(listing).toMatch(/net_failover\.ko\.gz/);
    expect(listing).toMatch(/virtio_pci\.ko\.gz/);
    expect(listing).not.toMatch(/ext4\.ko\.gz/);
    expect(listing).not.toMatch(/usr\/share\/tor\/geoip/);
    expect(readFileSync(join(out, "rootfs/etc/relay/tor-user"), "utf8").trim()).toBe("tor");
  });
});
