/**
 * `pulumi preview` with the real engine, the real language host and the real
 * proxmoxve and command plugins, on a throwaway local backend. No mocks: the
 * plan asserted here is what an operator's preview shows.
 */
import { readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renewSigningKey } from "../../lib/tor/key-store";
import { type PreviewStep, TestProject } from "../support/pulumi";
import { makeTestKeys, TEST_API_TOKEN, testStackConfig, THREE_RELAYS } from "../support/fleet";
import { repoRoot } from "../support/pulumi";

describe("pulumi preview of a fresh stack", () => {
  let project: TestProject;
  let steps: PreviewStep[];
  let output: string;

  beforeAll(async () => {
    project = new TestProject("preview");
    makeTestKeys(project.dir, THREE_RELAYS);
    const { proxmox, ...rest } = testStackConfig(THREE_RELAYS);
    // Every relay's MetricsPort open to one Prometheus server: the fleet's monitoring files are planned too.
    project.configure({ proxmox, ...rest, metrics: { allowFrom: "203.0.113.5" } }, { proxmoxApiToken: TEST_API_TOKEN });
    const preview = await project.preview();
    steps = preview.steps;
    output = preview.result.stdout + preview.result.stderr;
    expect(preview.result.status, output).toBe(0);
  });
  afterAll(() => project?.destroy());

  const ofType = (type: string) => steps.filter((step) => step.type === type);

  it("plans every resource of the fleet, and only creations", () => {
    expect(new Set(steps.map((s) => s.op))).toEqual(new Set(["create"]));
    const count = (type: string) => ofType(type).length;
    expect(count("pulumi:pulumi:Stack")).toBe(1);
    expect(count("pulumi:providers:proxmoxve")).toBe(1);
    expect(count("diskless-relays:image:BaseImage")).toBe(1);
    expect(count("diskless-relays:sbom:BaseSbom")).toBe(1);
    expect(count("diskless-relays:relay:Relay")).toBe(3);
    expect(count("diskless-relays:relay:StateCollection")).toBe(3);
    expect(count("diskless-relays:image:RelayImage")).toBe(3);
    expect(count("diskless-relays:sbom:RelaySbom")).toBe(3);
    expect(count("diskless-relays:relay:ProxmoxRelayVm")).toBe(3);
    expect(count("proxmoxve:index/fileLegacy:FileLegacy")).toBe(3);
    expect(count("proxmoxve:index/vmLegacy:VmLegacy")).toBe(3);
    expect(count("diskless-relays:relay:RelayRollout")).toBe(3);
    expect(count("diskless-relays:monitoring:Monitoring")).toBe(1);
    // base build + syft + per relay: collect, build, sbom write, rollout gate, iso prune + the monitoring files
    expect(count("command:local:Command")).toBe(2 + 3 * 5 + 1);
  });

  it("keeps the URN of every resource an earlier release made, so an existing stack sees no spurious replacement", () => {
    const earlier = readFileSync(join(repoRoot, "test", "fixtures", "urns-e2e970c.txt"), "utf8").split("\n").filter((line) => line.startsWith("urn:"));
    const now = new Set(steps.map((step) => step.urn));
    expect(earlier.filter((urn) => !now.has(urn))).toEqual([]);
  });

  it("describes each VM as a diskless UEFI q35 machine booting its ISO from ide2", () => {
    const vms = ofType("proxmoxve:index/vmLegacy:VmLegacy");
    for (const [i, relay] of THREE_RELAYS.entries()) {
      const vm = vms.find((step) => step.inputs.vmId === relay.vmId)!;
      expect(vm, `no VM with vmId ${relay.vmId}`).toBeDefined();
      expect(vm.inputs).toMatchObject({
        nodeName: relay.node,
        bios: "ovmf",
        machine: "q35",
        started: true,
        onBoot: true,
        bootOrders: ["ide2"],
        operatingSystem: { type: "l26" },
        memory: { dedicated: 1024 },
        tags: ["diskless-relay", relay.exit ? "exit" : "non-exit"],
      });
      expect(vm.inputs.disks ?? []).toEqual([]);
      expect((vm.inputs.cdrom as any).interface).toBe("ide2");
      expect((vm.inputs.networkDevices as any[])[0]).toMatchObject({ model: "virtio", bridge: "vmbr0", vlanId: 100 + i, macAddress: `BC:24:11:00:00:0${i + 1}` });
    }
  });

  it("uploads each ISO to the datastore; its name, taken from its content, is known once it is built", () => {
    for (const step of ofType("proxmoxve:index/fileLegacy:FileLegacy")) expect(step.inputs).toMatchObject({ contentType: "iso", datastoreId: "local" });
    expect(ofType("proxmoxve:index/fileLegacy:FileLegacy")).toHaveLength(3);
  });

  it("keeps the API token secret and prints no key material", () => {
    const provider = ofType("pulumi:providers:proxmoxve")[0]!;
    expect(provider.inputs.apiToken).toBe("[secret]");
    expect(output).not.toContain(TEST_API_TOKEN.split("=")[1]);
    for (const relay of THREE_RELAYS) {
      const keys = join(project.dir, "keys", relay.name);
      for (const file of readdirSync(keys).filter((f) => f.includes("secret") || f === "ssh_host_ed25519_key")) {
        const bytes = readFileSync(join(keys, file));
        for (const encoding of ["base64", "hex"] as const) {
          const body = bytes.subarray(32, 64).toString(encoding);
          expect(output.includes(body), `${file} (${encoding}) appears in the preview`).toBe(false);
        }
      }
    }
  });

  it("hands resources no path of this checkout, so a preview elsewhere (a pull request's runner) shows no change", () => {
    expect(JSON.stringify(steps.map((s) => s.inputs))).not.toContain(project.dir);
  });

  it("runs no command during preview: nothing was built, collected or written", () => {
    expect(readdirSync(project.dir)).not.toContain("build");
    expect(readdirSync(project.dir)).not.toContain("artifacts");
  });

  it("says once that it cannot read the VMs from the Proxmox VE API (nothing answers at the test's endpoint), and plans them all the same", () => {
    const said = output.match(/cannot read from the Proxmox VE API: VM 9101 on pve1, VM 9102 on pve1, VM 9201 on pve2 \([^)]*ECONNREFUSED[^)]*\)\. This preview cannot tell whether those VMs stopped since the last up; pulumi up reads them again/g) ?? [];
    // Once in the run's log and once in its diagnostics.
    expect(said.length, output).toBeGreaterThan(0);
    expect(new Set(said).size).toBe(1);
    expect(ofType("proxmoxve:index/vmLegacy:VmLegacy")).toHaveLength(3);
  });

  it("lets no pulumi up run without reading the VMs: it stops before anything is made, naming them and npm run preflight", async () => {
    const result = await project.runAsync("up", "--yes", "--skip-preview");
    const text = result.stdout + result.stderr;
    expect(result.status, text).not.toBe(0);
    expect(text).toMatch(/cannot read from the Proxmox VE API: VM 9101 on pve1, VM 9102 on pve1, VM 9201 on pve2 \([^)]*ECONNREFUSED[^)]*\)\. pulumi up needs to know whether each VM stopped since the last up: npm run preflight checks/);
    const state = JSON.parse(project.must("stack", "export")) as { deployment: { resources?: { type: string }[] } };
    expect((state.deployment.resources ?? []).filter((resource) => resource.type !== "pulumi:pulumi:Stack")).toEqual([]);
  }, 300_000);
});

describe("pulumi preview stops before anything changes", () => {
  let project: TestProject;
  beforeAll(() => {
    project = new TestProject("refuse");
    makeTestKeys(project.dir, THREE_RELAYS);
  });
  afterAll(() => project?.destroy());

  it("on a bad config, naming the field, with no resource planned", async () => {
    const config = testStackConfig(THREE_RELAYS);
    config.relays[1]!.nickname = "not a nickname";
    project.configure(config, { proxmoxApiToken: TEST_API_TOKEN });
    const result = await project.runAsync("preview", "--json");
    const text = result.stdout + result.stderr;
    expect(result.status).not.toBe(0);
    expect(text).toMatch(/relays\[1\]\.nickname: must be 1–19 characters/);
    const steps = JSON.parse(result.stdout).steps ?? [];
    expect(steps.filter((s: any) => s.op === "create" && !s.urn.includes("pulumi:pulumi:Stack"))).toEqual([]);
  });

  it("on a value that would inject a torrc line, and on one tor itself refuses, naming the field, with no resource planned", async () => {
    const config = testStackConfig(THREE_RELAYS);
    (config.relays[0] as Record<string, unknown>).contactInfo = "ops@example.org\nExitPolicy accept *:*";
    (config.relays[2] as Record<string, unknown>).bandwidth = { rate: "10 KBytes", burst: "10 KBytes" };
    project.configure(config, { proxmoxApiToken: TEST_API_TOKEN });
    let result = await project.runAsync("preview", "--json");
    expect(result.status).not.toBe(0);
    expect(result.stdout + result.stderr).toMatch(/relays\[0\]\.contactInfo: must be one line of text/);
    // The schema lets a 10 KBytes rate through; tor --verify-config does not.
    (config.relays[0] as Record<string, unknown>).contactInfo = "ops@example.org";
    project.configure(config, { proxmoxApiToken: TEST_API_TOKEN });
    result = await project.runAsync("preview", "--json");
    expect(result.status).not.toBe(0);
    expect(result.stdout + result.stderr).toMatch(/relays\[2\]\.bandwidth\.rate \(relay exit-2\): tor \S+ refuses this relay's torrc: .*must be at least 76800/);
    const steps = JSON.parse(result.stdout).steps ?? [];
    expect(steps.filter((s: any) => s.op === "create" && !s.urn.includes("pulumi:pulumi:Stack"))).toEqual([]);
  });

  it("on a misspelled top-level setting", async () => {
    project.configure({ ...testStackConfig(THREE_RELAYS), rolout: { maxParallel: 2 } }, { proxmoxApiToken: TEST_API_TOKEN });
    const result = await project.runAsync("preview");
    expect(result.status).not.toBe(0);
    expect(result.stdout + result.stderr).toMatch(/rolout: is not a known setting \(a typo\?\)/);
  });

  it("on a signing certificate inside the error window, naming the relay, the file and the renew command", async () => {
    // tor's shortest certificate is 2 days; a 5-day error window catches it.
    project.configure({ ...testStackConfig(THREE_RELAYS), certificate: { errorDays: 5, warnDays: 10 } }, { proxmoxApiToken: TEST_API_TOKEN });
    renewSigningKey(join(project.dir, "keys"), "guard-1", 2);
    const result = await project.runAsync("preview");
    const text = result.stdout + result.stderr;
    expect(result.status).not.toBe(0);
    expect(text).toMatch(/relay guard-1: .*keys\/guard-1\/ed25519_signing_cert expires at .*npm run keys -- renew guard-1/);
    renewSigningKey(join(project.dir, "keys"), "guard-1", 30);
  });

  it("on a signing certificate that has expired, naming the relay, the file and the renew command", async () => {
    project.configure(testStackConfig(THREE_RELAYS), { proxmoxApiToken: TEST_API_TOKEN });
    // 40 days on, the 30-day certificates tor issued at init have expired.
    const result = await project.runAtAsync("+40d", "preview");
    const text = result.stdout + result.stderr;
    expect(result.status).not.toBe(0);
    for (const relay of THREE_RELAYS) {
      expect(text).toMatch(new RegExp(`relay ${relay.name}: .*keys/${relay.name}/ed25519_signing_cert expired at .*npm run keys -- renew ${relay.name}`));
    }
    expect((await project.runAsync("preview")).status).toBe(0);
  });

  it("on a missing key file", async () => {
    rmSync(join(project.dir, "keys", "exit-2", "secret_id_key"));
    const result = await project.runAsync("preview");
    expect(result.status).not.toBe(0);
    expect(result.stdout + result.stderr).toMatch(/relay exit-2: .*keys\/exit-2\/secret_id_key is missing/);
  });
});
