/**
 * The kernel modules a relay loads are listed once (lib/image/image-layout.ts
 * KERNEL_MODULES): the build-base step hands them to pack-initrd.sh, which
 * keeps them in the RAM root and writes the lists where the boot scripts
 * read them. Here: the scripts read those lists, from that place, and name
 * no module of their own. (That the modules load is the VM tests' part.)
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { KERNEL_MODULES, KERNEL_MODULES_DIR } from "../../lib/image/image-layout";
import { repoRoot } from "../support/pulumi";

const script = (name: string) => readFileSync(join(repoRoot, "images/rootfs/files/usr/local/sbin", name), "utf8");

describe("the kernel modules a relay loads", () => {
  it("are read by relay-boot and relay-hardening from the lists the base carries", () => {
    expect(script("relay-boot")).toContain(`done <${KERNEL_MODULES_DIR}/boot`);
    expect(script("relay-hardening")).toContain(`done <${KERNEL_MODULES_DIR}/hardening`);
  });

  it("are named in no script: pack-initrd.sh gets them from the build-base step", () => {
    const scripts = ["relay-boot", "relay-hardening"].map(script).join("\n") + readFileSync(join(repoRoot, "images/rootfs/pack-initrd.sh"), "utf8");
    for (const module of [...KERNEL_MODULES.boot, ...KERNEL_MODULES.hardening]) expect(scripts, module).not.toMatch(new RegExp(`\\b${module}\\b`));
  });
});
