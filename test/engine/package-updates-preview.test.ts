/**
 * `pulumi preview` (the real engine and program) of a stack whose Debian
 * base comes from a local mirror of real Debian packages (the base's real
 * closure, signed by a throwaway key, served on loopback): the base's inputs
 * carry the mirror's package set; a newer tor on the mirror changes the
 * base's digest; a held stack (Pulumi.STACK.packages.lock, written by
 * `npm run packages -- lock`) keeps its base and says what waits; a mirror
 * that cannot be reached stops the preview with its name. No VM: the local
 * stack's redeploy is test/vm/package-updates.test.ts.
 */
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reversionDeb, realBaseDebs, makeMirrorKey, serveMirror, writeMirror, type MirrorKey } from "../support/debian-mirror";
import { makeTestKeys, TEST_API_TOKEN, TEST_IMAGE, testStackConfig, type TestRelay } from "../support/fleet";
import { TestProject, type PreviewStep } from "../support/pulumi";
import { privateTmpDir } from "../support/tmp";

const RELAYS: TestRelay[] = [
  { name: "exit-1", nickname: "UpdExitOne", node: "pve1", vmId: 9301, exit: true },
  { name: "guard-1", nickname: "UpdGuardOne", node: "pve1", vmId: 9302, exit: false },
];

describe("pulumi preview of a base from a local Debian mirror", () => {
  const scratch = privateTmpDir("updates-preview");
  let project: TestProject;
  let key: MirrorKey;
  let server: Awaited<ReturnType<typeof serveMirror>>;
  let real: { debs: string[]; packages: string[] };
  let torLine: string;
  let newTor: string;
  const mirror = join(scratch, "mirror");

  const configure = (uri: string) =>
    project.configure({ ...testStackConfig(RELAYS), image: { ...TEST_IMAGE, mirrors: [{ uri, suites: ["bookworm"], signedBy: key.keyring }] } }, { proxmoxApiToken: TEST_API_TOKEN });
  const baseBuild = (steps: PreviewStep[]) => steps.find((step) => step.type === "command:local:Command" && step.urn.includes("diskless-relays:image:BaseImage$"))!;
  const basePackages = (steps: PreviewStep[]) => (baseBuild(steps).inputs.triggers as { packages: string[] }[])[0]!.packages;
  // The engine's diagnostics carry its colour markup (<{%reset%}>).
  // The test fleet's documentation addresses draw their own warning on every preview, and so does its Proxmox VE endpoint,
  // where nothing answers (the preview cannot tell whether a VM stopped); the rest are the base's.
  const warnings = (raw: any): string[] =>
    (raw.diagnostics ?? [])
      .filter((d: any) => d.severity === "warning")
      .map((d: any) => String(d.message).replace(/<\{%[a-z]*%\}>/g, "").trim())
      .filter((message: string) => !/is a documentation address|^(warning: )?cannot read from the Proxmox VE API: VM 9301 on pve1, VM 9302 on pve1 \(connect ECONNREFUSED/.test(message));

  beforeAll(async () => {
    real = realBaseDebs();
    // This file's own cache (the projects inherit it): the unreachable-mirror case must find no earlier resolution.
    process.env.DISKLESS_RELAYS_PACKAGE_CACHE = join(scratch, "package-cache");
    torLine = real.packages.find((line) => line.startsWith("tor "))!;
    key = makeMirrorKey(scratch);
    writeMirror(mirror, "bookworm", real.debs, key);
    server = await serveMirror(mirror);
    project = new TestProject("updates");
    makeTestKeys(project.dir, RELAYS);
    configure(server.url);
  }, 600_000);
  afterAll(() => {
    server?.stop();
    project?.destroy();
  });

  it("plans the base with exactly the mirror's packages: the real closure", async () => {
    const { steps, result } = await project.preview();
    expect(result.status, result.stderr).toBe(0);
    expect(basePackages(steps)).toEqual(real.packages);
    expect((baseBuild(steps).inputs.triggers as { sources: string[] }[])[0]!.sources).toEqual([`deb [signed-by=${key.keyring}] ${server.url} bookworm main`]);
  }, 600_000);

  it("changes the base's digest when the mirror gains a newer tor, and a held stack keeps its base and says what waits", async () => {
    const before = await project.preview();
    const dirBefore = JSON.parse(String((baseBuild(before.steps).inputs.environment as Record<string, string>).DISKLESS_RELAYS_STEP)).dir as string;
    // Hold the stack on today's set, with the program's own command.
    const locked = project.script("cli/packages.ts", "lock", "--stack", project.stack);
    expect(locked.status, locked.stderr).toBe(0);

    const [, version] = torLine.split(" ");
    newTor = "0.4.9.12-0+deb12u1";
    const torDeb = real.debs.find((deb) => deb.includes("/tor_"))!;
    rmSync(join(mirror, "pool/main", torDeb.split("/").at(-1)!));
    writeMirror(mirror, "bookworm", [reversionDeb(torDeb, newTor, scratch)], key);

    const held = await project.preview();
    expect(held.result.status, held.result.stderr).toBe(0);
    expect(basePackages(held.steps)).toEqual(real.packages);
    expect(warnings(held.raw).join("\n")).toContain(
      `base packages held by Pulumi.updates.packages.lock (resolved ${/# resolved (.*)/.exec(readFileSync(join(project.dir, "Pulumi.updates.packages.lock"), "utf8"))![1]}): 1 update pending, not deployed: tor ${version} → ${newTor}; lift with npm run packages -- update --stack updates`,
    );
    const shown = project.script("cli/packages.ts", "show", "--stack", project.stack);
    expect(shown.status).toBe(1);
    expect(shown.stdout).toContain(`1 update pending:\n  tor ${version} → ${newTor}`);

    // Lifted on purpose: the lock now holds the new tor, and the base is another.
    const lifted = project.script("cli/packages.ts", "update", "--stack", project.stack);
    expect(lifted.status, lifted.stderr).toBe(0);
    expect(lifted.stdout).toContain(`tor ${version} → ${newTor}`);
    const after = await project.preview();
    expect(warnings(after.raw)).toEqual([]);
    expect(basePackages(after.steps)).toEqual(real.packages.map((line) => (line === torLine ? `tor ${newTor} amd64` : line)));
    const dirAfter = JSON.parse(String((baseBuild(after.steps).inputs.environment as Record<string, string>).DISKLESS_RELAYS_STEP)).dir as string;
    expect(dirAfter).not.toBe(dirBefore);

    // Unlocked, the stack follows the mirror: the same set as the lifted lock.
    expect(project.script("cli/packages.ts", "unlock", "--stack", project.stack).status).toBe(0);
    expect(basePackages((await project.preview()).steps)).toEqual(basePackages(after.steps));
  }, 1_200_000);

  it("stops with the mirror's name when it cannot be reached and was never resolved", async () => {
    server.stop();
    await new Promise((resolve) => server.child.once("exit", resolve));
    process.env.DISKLESS_RELAYS_PACKAGE_CACHE = join(scratch, "empty-cache");
    const fresh = new TestProject("updates-offline");
    try {
      makeTestKeys(fresh.dir, RELAYS);
      fresh.configure({ ...testStackConfig(RELAYS), image: { ...TEST_IMAGE, mirrors: [{ uri: server.url, suites: ["bookworm"], signedBy: key.keyring }] } }, { proxmoxApiToken: TEST_API_TOKEN });
      const result = await fresh.runAsync("preview");
      expect(result.status).not.toBe(0);
      expect(result.stdout + result.stderr).toContain(`image.mirrors: ${server.url} (${server.url}/dists/bookworm/InRelease: `);
      expect(result.stdout + result.stderr).toContain("the mirror cannot be reached, and this host never resolved the base's packages from it");
      expect(result.stdout + result.stderr).not.toMatch(/\n\s+at /);
    } finally {
      fresh.destroy();
    }
  }, 600_000);
});
