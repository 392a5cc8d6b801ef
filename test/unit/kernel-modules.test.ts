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
import { GUEST_PATHS } from "../../lib/image/guest-paths";
import { repoRoot } from "../support/pulumi";

const script = (name: string) => readFileSync(join(repoRoot, "images/rootfs/files/usr/local/sbin", name), "utf8");

describe("the kernel modules a relay loads", () => {
  it("are read by relay-boot and relay-hardening from the lists the base carries", () => {
    // By name, from the guest paths file: RELAY_KERNEL_MODULES is KERNEL_MODULES_DIR (lib/image/guest-paths.ts).
    expect(GUEST_PATHS.RELAY_KERNEL_MODULES).toBe(KERNEL_MODULES_DIR);
    expect(script("relay-boot")).toContain('done <"$RELAY_KERNEL_MODULES/boot"');
    expect(script("relay-hardening")).toContain('done <"$RELAY_KERNEL_MODULES/hardening"');
  });

  it("are named in no script: pack-initrd.sh gets them from the build-base step", () => {
    const scripts = ["relay-boot", "relay-hardening"].map(script).join("\n") + readFileSync(join(repoRoot, "images/rootfs/pack-initrd.sh"), "utf8");
    for (const module of [...KERNEL_MODULES.boot, ...KERNEL_MODULES.hardening]) expect(scripts, module).not.toMatch(new RegExp(`\\b${module}\\b`));
  });
});
