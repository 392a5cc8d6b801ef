/**
 * pack-initrd.sh packs the RAM root at the level the build-base step hands
 * over (image.compressLevel): any level packs the same cpio archive, byte for
 * byte, as zstd itself unpacks it, a higher level into fewer bytes; and the
 * script takes nothing but a level from 1 to 19, whatever reaches it.
 */
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { KERNEL_MODULES, KERNEL_MODULES_DIR } from "../../lib/image/image-layout";
import { repoRoot } from "../support/pulumi";
import { privateTmpDir } from "../support/tmp";

const KERNEL = "6.1.0-test-amd64";

describe("pack-initrd.sh and its zstd level", () => {
  const dir = privateTmpDir("pack-initrd");
  const tree = join(dir, "tree");

  beforeAll(() => {
    // A small root: a compressible file, and a modules.dep naming every module the base keeps.
    const moddir = join(tree, "usr/lib/modules", KERNEL);
    mkdirSync(join(moddir, "kernel"), { recursive: true });
    const modules = [...KERNEL_MODULES.boot, ...KERNEL_MODULES.hardening];
    writeFileSync(join(moddir, "modules.dep"), modules.map((m) => `kernel/${m}.ko:`).join("\n") + "\n");
    for (const m of modules) writeFileSync(join(moddir, "kernel", `${m}.ko`), `module ${m}\n`);
    mkdirSync(join(tree, "usr/share/relay"), { recursive: true });
    writeFileSync(join(tree, "usr/share/relay/words"), Array.from({ length: 60_000 }, (_, i) => `relay ${i} ${(i * 7919) % 104_729}`).join("\n"));
    mkdirSync(join(tree, "usr/sbin"), { recursive: true });
    writeFileSync(join(tree, "usr/sbin/sshd"), "sshd\n");
    writeFileSync(join(dir, "ssh.list"), "./usr/sbin/sshd\n");
  });

  /** Packs a copy of the tree (the script writes into it) with INITRD_ZSTD_LEVEL as given. */
  const pack = (name: string, level: string) => {
    const root = join(dir, name, "root");
    cpSync(tree, root, { recursive: true });
    const out = join(dir, name, "base.cpio.zst");
    const result = spawnSync("bash", [join(repoRoot, "images/rootfs/pack-initrd.sh"), root, KERNEL, "no", out, join(dir, "ssh.list"), join(dir, name, "ssh.cpio.zst")], {
      encoding: "utf8",
      env: {
        ...process.env,
        SOURCE_DATE_EPOCH: "1767225600",
        INITRD_ZSTD_LEVEL: level,
        KERNEL_MODULES_BOOT: KERNEL_MODULES.boot.join(" "),
        KERNEL_MODULES_HARDENING: KERNEL_MODULES.hardening.join(" "),
        KERNEL_MODULES_DIR,
      },
    });
    return { result, out };
  };
  const unpacked = (file: string) => spawnSync("zstd", ["-dc", file], { maxBuffer: 1 << 28 }).stdout as Buffer;

  it("packs the same archive at 19 and at 3, in fewer bytes at 19", () => {
    const high = pack("high", "19");
    const low = pack("low", "3");
    expect(high.result.status, high.result.stderr).toBe(0);
    expect(low.result.status, low.result.stderr).toBe(0);
    const archive = unpacked(high.out);
    expect(archive.length).toBeGreaterThan(1_000_000);
    expect(unpacked(low.out).equals(archive)).toBe(true);
    expect(readFileSync(high.out).length).toBeLessThan(readFileSync(low.out).length);
    // The archive holds the tree: cpio itself lists the file.
    const listing = spawnSync("cpio", ["-t", "--quiet"], { input: archive, encoding: "utf8" }).stdout;
    expect(listing.split("\n")).toContain("usr/share/relay/words");
  });

  it.each(["--ultra", "-19", "20", "0", "3 --long=31", ""])("refuses INITRD_ZSTD_LEVEL %j and writes no archive", (level) => {
    const { result, out } = pack(`bad-${Buffer.from(level).toString("hex")}`, level);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(level === "" ? /the build-base step hands over the zstd level/ : /is not a zstd level from 1 to 19/);
    expect(existsSync(out)).toBe(false);
  });
});
