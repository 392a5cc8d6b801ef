/**
 * `pulumi up` end to end against the Proxmox VE API double: the real engine,
 * the real proxmoxve and command plugins, real image builds (ukify, Syft),
 * and real OpenSSH state collection from sshd servers standing in for the
 * running relays. Only Proxmox VE itself is a double (test/proxmox-double).
 */
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectedLaunchMeasurement } from "../lib/snp/launchDigest";
import { fixturePath } from "./snp/fixtures";
import { makeTestKeys, TEST_API_TOKEN, testStackConfig, type TestRelay } from "./support/fleet";
import { ProxmoxDoubleProcess, writes } from "./support/proxmox";
import { TestProject } from "./support/pulumi";
import { RelaySshd } from "./support/sshd";
import { privateTmpDir } from "./support/tmp";

const RELAYS: TestRelay[] = [
  { name: "exit-1", nickname: "DeployExitOne", node: "pve1", vmId: 9101, exit: true },
  { name: "guard-1", nickname: "DeployGuardOne", node: "pve2", vmId: 9201, exit: false },
];
/** Shared by test runs so the Debian base is built once per machine. */
const BUILD_CACHE = join(tmpdir(), "diskless-relays-test-build");

describe("pulumi up against the Proxmox VE API double", () => {
  const scratch = privateTmpDir("deploy");
  let double: ProxmoxDoubleProcess;
  let project: TestProject;
  const sshd = new Map<string, RelaySshd>();
  let config: ReturnType<typeof testStackConfig> & Record<string, unknown>;

  /** A relay-like tor data directory, as the running relay would have it. */
  const relayData = (relay: string) => join(scratch, "relay-data", relay);

  const up = () => project.runAsync("up", "--yes", "--skip-preview");
  const vmCreates = (from: number) => writes(double.requests().slice(from)).filter((r) => r.method === "POST" && /^\/nodes\/[^/]+\/qemu$/.test(r.path));
  const vmDeletes = (from: number) => writes(double.requests().slice(from)).filter((r) => r.method === "DELETE" && /\/qemu\/\d+$/.test(r.path));

  beforeAll(async () => {
    double = await ProxmoxDoubleProcess.start(scratch, TEST_API_TOKEN);
    project = new TestProject("deploy");
    makeTestKeys(project.dir, RELAYS);
    mkdirSync(BUILD_CACHE, { recursive: true, mode: 0o700 });
    config = { ...testStackConfig(RELAYS, { endpoint: double.endpoint }), buildDir: BUILD_CACHE };
    // The guard runs as an SEV-SNP guest: its expected launch measurement is published.
    Object.assign(config.relays[1]!, { cpuType: "EPYC-v4", sev: { enabled: true, ovmf: fixturePath("ovmf_AmdSev_suffix.bin") } });
    for (const [i, relay] of RELAYS.entries()) {
      const data = relayData(relay.name);
      mkdirSync(join(data, "keys"), { recursive: true, mode: 0o700 });
      for (const file of ["secret_onion_key", "secret_onion_key_ntor"]) copyFileSync(join(project.dir, "keys", relay.name, file), join(data, "keys", file));
      writeFileSync(join(data, "state"), `# Tor state file last generated on 2026-11-24 10:00:00\nLastRotatedOnionKey 2026-11-20 10:00:00\nBWHistoryReadValues ${i + 1}000,2000\n`);
      const server = await RelaySshd.start(join(scratch, `sshd-${relay.name}`), join(project.dir, "keys", relay.name, "ssh_host_ed25519_key"), join(project.dir, "keys", "collector.pub"), data);
      sshd.set(relay.name, server);
      Object.assign(config.relays[i]!, { sshHost: "127.0.0.1", sshPort: server.port });
    }
    project.configure(config, { proxmoxApiToken: TEST_API_TOKEN });
  }, 1_200_000);

  afterAll(() => {
    for (const server of sshd.values()) server.stop();
    double?.stop();
    project?.destroy();
  });

  it("creates each relay: its ISO uploaded, then a diskless OVMF q35 VM booting it from ide2", async () => {
    const result = await up();
    expect(result.status, result.stdout + result.stderr).toBe(0);
    const uploads = writes(double.requests()).filter((r) => r.path.endsWith("/upload"));
    expect(uploads.map((r) => r.upload!.filename).sort()).toEqual(
      RELAYS.map((relay) => expect.stringMatching(new RegExp(`^relay-${relay.nickname}-[0-9a-f]{12}\\.iso$`))).sort(),
    );
    for (const relay of RELAYS) {
      const create = vmCreates(0).find((r) => r.form.vmid === String(relay.vmId))!;
      expect(create, `no VM create for ${relay.vmId}`).toBeDefined();
      expect(create.path).toBe(`/nodes/${relay.node}/qemu`);
      expect(create.form).toMatchObject({ bios: "ovmf", machine: "q35", ostype: "l26" });
      expect(create.form.ide2).toMatch(new RegExp(`^(file=)?local:iso/relay-${relay.nickname}-[0-9a-f]{12}\\.iso,media=cdrom`));
      expect(create.form.boot).toBe("order=ide2");
      // Diskless: no disk of any bus in the create request.
      expect(Object.keys(create.form).filter((key) => /^(scsi|virtio|sata|efidisk|tpmstate)\d/.test(key) || (/^ide\d$/.test(key) && key !== "ide2"))).toEqual([]);
      expect(create.form.net0).toContain(`macaddr=${config.relays[RELAYS.indexOf(relay)]!.mac}`);
      expect(create.form.net0).toContain(`tag=${100 + RELAYS.indexOf(relay)}`);
    }
    // SEV-SNP: the VM is created as an SNP guest without debugging, and the
    // expected measurement of its UKI is a stack output and an artifact.
    const guard = vmCreates(0).find((r) => r.form.vmid === "9201")!;
    expect(guard.form["amd-sev"]).toMatch(/type=snp/);
    expect(guard.form["amd-sev"]).toMatch(/no-debug=1/);
    const outputs = JSON.parse(project.must("stack", "output", "relayOutputs", "--json"));
    const measurement = outputs["guard-1"].snpLaunchMeasurement as string;
    expect(measurement).toMatch(/^[0-9a-f]{96}$/);
    expect(outputs["exit-1"].snpLaunchMeasurement).toBeUndefined();
    const artifact = JSON.parse(readFileSync(join(project.dir, "artifacts", "relays", "guard-1", `${outputs["guard-1"].imageDigest.slice(0, 12)}.snp.json`), "utf8"));
    expect(artifact.measurement).toBe(measurement);
    const uki = join(BUILD_CACHE, "diskless-relays-deploy", "relays", "guard-1", outputs["guard-1"].imageDigest.slice(0, 12), "relay.efi");
    expect(artifact.uki.sha256).toBe(createHash("sha256").update(readFileSync(uki)).digest("hex"));
    expect(expectedLaunchMeasurement({ ovmf: readFileSync(fixturePath("ovmf_AmdSev_suffix.bin")), kernel: readFileSync(uki), vcpus: 1, vcpuType: "EPYC-v4" })).toBe(measurement);

    // Each SBOM artifact exists and lists the overlay by digest.
    const sboms = readdirSync(join(project.dir, "artifacts", "sbom"));
    expect(sboms.some((f) => f.endsWith(".syft.json"))).toBe(true);
    expect(sboms.some((f) => f.endsWith(".cdx.json"))).toBe(true);
  });

  it("does nothing on a second up with no change: no SSH, no build, no upload", async () => {
    const before = double.requests().length;
    const result = await up();
    expect(result.status, result.stderr).toBe(0);
    expect(writes(double.requests().slice(before))).toEqual([]);
    const resources = result.stdout.slice(result.stdout.lastIndexOf("Resources:"));
    expect(resources).toMatch(/\b\d+ unchanged/);
    expect(resources).not.toMatch(/created|updated|replaced|deleted/);
    // Nothing ran: no collection, build or upload step appears at all.
    expect(result.stdout).not.toMatch(/collect(ed|ing)|building|upload/i);
  });

  it("redeploys exactly the relay whose torrc changed, with the onion keys collected from it", async () => {
    const before = double.requests().length;
    config.relays[0]!.contactInfo = "email:noc[]example.net ciissversion:2";
    project.configure(config, { proxmoxApiToken: TEST_API_TOKEN });
    const preview = await project.preview();
    const replaced = preview.steps.filter((s) => s.op === "replace" || s.op === "create-replacement");
    expect(replaced.length).toBeGreaterThan(0);
    expect(replaced.every((s) => s.urn.includes("exit-1"))).toBe(true);

    const result = await up();
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(vmDeletes(before).map((r) => r.path)).toEqual(["/nodes/pve1/qemu/9101"]);
    expect(vmCreates(before).map((r) => r.form.vmid)).toEqual(["9101"]);
    // The new image carries the ntor key and state the running relay handed over.
    const overlay = JSON.parse(readFileSync(latestOverlayList("exit-1"), "utf8")) as { path: string; sha256: string }[];
    const digest = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");
    expect(overlay.find((f) => f.path === "/etc/relay/keys/secret_onion_key_ntor")?.sha256).toBe(digest(join(relayData("exit-1"), "keys", "secret_onion_key_ntor")));
    expect(overlay.find((f) => f.path === "/etc/relay/state")?.sha256).toBe(digest(join(relayData("exit-1"), "state")));
  });

  it("refuses to redeploy a relay it cannot reach, leaving its VM running", async () => {
    sshd.get("guard-1")!.stop();
    const before = double.requests().length;
    config.relays[1]!.contactInfo = "email:changed[]example.net ciissversion:2";
    project.configure(config, { proxmoxApiToken: TEST_API_TOKEN });
    const result = await up();
    const text = result.stdout + result.stderr;
    expect(result.status).not.toBe(0);
    expect(text).toMatch(/relay guard-1: cannot collect onion keys and state over SSH from 127\.0\.0\.1/);
    expect(text).toMatch(/allowFreshOnionKeys/);
    expect(writes(double.requests().slice(before)).filter((r) => r.path.includes("9201") || r.path.endsWith("/upload"))).toEqual([]);
  });

  it("lets the operator through with allowFreshOnionKeys, loudly", async () => {
    const before = double.requests().length;
    (config.relays[1] as Record<string, unknown>).allowFreshOnionKeys = true;
    project.configure(config, { proxmoxApiToken: TEST_API_TOKEN });
    const result = await up();
    const text = result.stdout + result.stderr;
    expect(result.status, text).toBe(0);
    expect(text).toMatch(/WARNING allowFreshOnionKeys is set: the new image gets FRESH onion keys/);
    expect(vmCreates(before).map((r) => r.form.vmid)).toEqual(["9201"]);
  });

  it("keeps the newest keepIsos images of a relay on the datastore and prunes older ones once the new VM is up", async () => {
    const before = double.requests().length;
    const isos = () => double.requests().filter((r) => r.path.endsWith("/upload") && r.upload!.filename.startsWith("relay-DeployExitOne-")).map((r) => r.upload!.filename);
    for (const contact of ["email:noc2[]example.net ciissversion:2", "email:noc3[]example.net ciissversion:2"]) {
      config.relays[0]!.contactInfo = contact;
      project.configure(config, { proxmoxApiToken: TEST_API_TOKEN });
      const result = await up();
      expect(result.status, result.stdout + result.stderr).toBe(0);
    }
    const uploaded = isos();
    expect(uploaded).toHaveLength(4);
    const pruned = writes(double.requests().slice(before)).filter((r) => r.method === "DELETE" && r.path.includes("/content/"));
    // keepIsos is 2: after the fourth image only the third and fourth remain.
    const volumePath = (name: string) => `/nodes/pve1/storage/local/content/local:iso/${name}`;
    expect(pruned.map((r) => r.path)).toEqual(uploaded.slice(0, 2).map(volumePath));
    const deletedEver = new Set(writes(double.requests()).filter((r) => r.method === "DELETE").map((r) => r.path));
    expect(uploaded.filter((name) => !deletedEver.has(volumePath(name)))).toEqual(uploaded.slice(2));
  });

  it("keeps every private key byte out of the stack's state and the logs", async () => {
    const exported = project.must("stack", "export");
    const logs = (await up()).stdout;
    for (const relay of RELAYS) {
      const keys = join(project.dir, "keys", relay.name);
      const secrets = ["ed25519_signing_secret_key", "secret_onion_key_ntor", "ed25519_master_id_secret_key"].map((f) => readFileSync(join(keys, f)).subarray(32, 64));
      secrets.push(readFileSync(join(relayData(relay.name), "keys", "secret_onion_key_ntor")).subarray(32, 64));
      const pem = readFileSync(join(keys, "secret_id_key"), "utf8").split("\n")[2]!;
      for (const secret of secrets) {
        for (const text of [exported, logs]) {
          expect(text.includes(secret.toString("base64"))).toBe(false);
          expect(text.includes(secret.toString("hex"))).toBe(false);
        }
      }
      expect(exported.includes(pem)).toBe(false);
    }
    expect(exported).not.toContain(TEST_API_TOKEN.split("=")[1]);
  });

  it("destroys the VMs", async () => {
    const result = await project.runAsync("destroy", "--yes", "--skip-preview");
    expect(result.status, result.stdout + result.stderr).toBe(0);
    const deleted = vmDeletes(0).map((r) => r.path);
    expect(deleted).toContain("/nodes/pve1/qemu/9101");
    expect(deleted).toContain("/nodes/pve2/qemu/9201");
  });
});

/** The overlay file list of the newest image built for `relay`. */
function latestOverlayList(relay: string): string {
  const root = join(BUILD_CACHE, "diskless-relays-deploy", "relays", relay);
  const builds = readdirSync(root, { withFileTypes: true }).filter((d) => d.isDirectory() && d.name !== "collected");
  return builds.map((d) => join(root, d.name, "files.json")).sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0]!;
}
