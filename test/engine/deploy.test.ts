/**
 * `pulumi up` end to end against the Proxmox VE API double: the real engine,
 * the real proxmoxve and command plugins, real image builds (ukify, Syft),
 * real OpenSSH collection and health checks. Only Proxmox VE itself is a
 * double (test/support/proxmox-double); behind each VM a stand-in relay (real tor
 * with the relay's keys, real sshd running the relay's own scripts) answers
 * as a booted relay would, and reports the image the double "booted".
 * Every path the program is given holds spaces, quotes and $(…).
 */
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readBaseRecord } from "../../lib/image/base-record";
import { torSigningKeyExpiration } from "../../lib/tor/key-store";
import { toolsBin } from "../../lib/core/paths";
import { expectedLaunchMeasurement } from "../../lib/snp/launch-digest";
import { qemuServerSnpCommand, effectiveSnpLaunch } from "../support/qemu-server-snp";
import { TEST_OVMF, TEST_OVMF_SHA256 } from "../support/broker";
import { makeTestKeys, TEST_API_TOKEN, TEST_ROOT_PASSWORD, testStackConfig, type TestRelay } from "../support/fleet";
import { BUILD_CACHE, debianBase, debianBaseDir, waitFor } from "../support/images";
import { ProxmoxDoubleProcess, writes } from "../support/proxmox";
import { TestProject } from "../support/pulumi";
import { freePort } from "../support/sshd";
import { StandInRelay } from "../support/standin";
import { privateTmpDir } from "../support/tmp";

const RELAYS: TestRelay[] = [
  { name: "exit-1", nickname: "DeployExitOne", node: "pve1", vmId: 9101, exit: true },
  { name: "guard-1", nickname: "DeployGuardOne", node: "pve2", vmId: 9201, exit: false },
];
/** Shell syntax in every path: it must reach tools as data, never as shell text. */
const KEY_STORE = "key store $(touch pwned) 'q'";
const BUILD_DIR_NAME = "build dir $(touch pwned) \"x\"";
/** The guard is an SNP relay: root@pam's password sets its args and amd-sev, the token does the rest. */
const SECRETS = { proxmoxApiToken: TEST_API_TOKEN, proxmoxRootPassword: TEST_ROOT_PASSWORD };

describe("pulumi up against the Proxmox VE API double", () => {
  const scratch = privateTmpDir("deploy");
  const buildDir = join(scratch, BUILD_DIR_NAME);
  let double: ProxmoxDoubleProcess;
  let project: TestProject;
  const standIns = new Map<string, StandInRelay>();
  let config: ReturnType<typeof testStackConfig> & Record<string, any>;

  const up = () => project.runAsync("up", "--yes", "--skip-preview");
  const vmCreates = (from: number) => writes(double.requests().slice(from)).filter((r) => r.method === "POST" && /^\/nodes\/[^/]+\/qemu$/.test(r.path));
  const vmDeletes = (from: number) => writes(double.requests().slice(from)).filter((r) => r.method === "DELETE" && /\/qemu\/\d+$/.test(r.path));
  const relayBuild = (relay: string) => join(buildDir, "diskless-relays-deploy", "relays", relay);

  beforeAll(async () => {
    double = await ProxmoxDoubleProcess.start(scratch, TEST_API_TOKEN, { boot: true, rootPassword: TEST_ROOT_PASSWORD });
    project = new TestProject("deploy");
    makeTestKeys(project.dir, RELAYS, KEY_STORE);
    // The shared Debian base (built once per machine) is reused through a link inside the build directory.
    mkdirSync(buildDir, { recursive: true, mode: 0o700 });
    mkdirSync(join(BUILD_CACHE, "base"), { recursive: true, mode: 0o700 });
    symlinkSync(join(BUILD_CACHE, "base"), join(buildDir, "base"));
    config = {
      ...testStackConfig(RELAYS, { endpoint: double.endpoint }),
      buildDir,
      keyStore: KEY_STORE,
      stateCollection: { privateKeyFile: `${KEY_STORE}/collector`, port: 22, connectTimeoutSeconds: 5 },
      rollout: { healthTimeoutSeconds: 60 },
    };
    // The guard runs as an SEV-SNP guest: its expected launch measurement is published.
    Object.assign(config.relays[1]!, { cpuType: "EPYC-v4", sev: { enabled: true, ovmf: TEST_OVMF, ovmfSha256: TEST_OVMF_SHA256 } });
    for (const [i, relay] of RELAYS.entries()) {
      const orPort = await freePort();
      const standIn = await StandInRelay.start({
        dir: join(scratch, `relay-${relay.name}`),
        keysDir: join(project.dir, KEY_STORE, relay.name),
        nickname: relay.nickname,
        orPort,
        collectorPublicKey: join(project.dir, KEY_STORE, "collector.pub"),
        root: double.rootOf(scratch, relay.vmId),
        exit: relay.exit,
      });
      standIns.set(relay.name, standIn);
      Object.assign(config.relays[i]!, { sshHost: "127.0.0.1", sshPort: standIn.sshd.port, orPort });
    }
    project.configure(config, SECRETS);
  }, 1_200_000);

  afterAll(() => {
    for (const standIn of standIns.values()) standIn.stop();
    double?.stop();
    project?.destroy();
  });

  it("creates each relay: its ISO uploaded, a diskless OVMF q35 VM booting it from ide2, then waits until it is healthy", async () => {
    const result = await up();
    expect(result.status, result.stdout + result.stderr).toBe(0);
    const uploads = writes(double.requests()).filter((r) => r.path.endsWith("/upload"));
    // Each relay's ISO; the SNP guard's UKI and firmware beside it.
    expect(uploads.map((r) => r.upload!.filename).sort()).toEqual([
      `ovmf-amdsev-${TEST_OVMF_SHA256.slice(0, 16)}.img`,
      expect.stringMatching(/^relay-DeployExitOne-[0-9a-f]{12}-[0-9a-f]{8}\.iso$/),
      expect.stringMatching(/^relay-DeployGuardOne-[0-9a-f]{12}-[0-9a-f]{8}\.efi\.img$/),
      expect.stringMatching(/^relay-DeployGuardOne-[0-9a-f]{12}-[0-9a-f]{8}\.iso$/),
    ]);
    expect(uploads.filter((r) => r.upload!.filename.startsWith("ovmf-") || r.upload!.filename.endsWith(".efi.img")).map((r) => r.path)).toEqual(["/nodes/pve2/storage/local/upload", "/nodes/pve2/storage/local/upload"]);
    for (const relay of RELAYS) {
      const create = vmCreates(0).find((r) => r.form.vmid === String(relay.vmId))!;
      expect(create, `no VM create for ${relay.vmId}`).toBeDefined();
      expect(create.path).toBe(`/nodes/${relay.node}/qemu`);
      expect(create.form).toMatchObject({ bios: "ovmf", machine: "q35", ostype: "l26" });
      expect(create.form.ide2).toMatch(new RegExp(`^(file=)?local:iso/relay-${relay.nickname}-[0-9a-f]{12}-[0-9a-f]{8}\\.iso,media=cdrom`));
      expect(create.form.boot).toBe("order=ide2");
      // Diskless: no disk of any bus in the create request.
      expect(Object.keys(create.form).filter((key) => /^(scsi|virtio|sata|efidisk|tpmstate)\d/.test(key) || (/^ide\d$/.test(key) && key !== "ide2"))).toEqual([]);
      expect(create.form.net0).toContain(`macaddr=${config.relays[RELAYS.indexOf(relay)]!.mac}`);
      expect(create.form.net0).toContain(`tag=${100 + RELAYS.indexOf(relay)}`);
      // The gate saw the relay on its new image, with its identity and ORPort.
      expect(result.stdout).toMatch(new RegExp(`relay ${relay.name}: healthy on image [0-9a-f]{12} after \\d+s: tor runs with fingerprint [0-9A-F]{40}, ORPort \\d+ listening`));
      expect(result.stdout).toMatch(new RegExp(`relay ${relay.name}: nothing runs there yet \\(VM ${relay.vmId} on ${relay.node}\\): first deploy`));
    }
    // SEV-SNP: the guard's VM boots its UKI measured (-kernel, with the pinned
    // AmdSevX64 OVMF as -bios), as an SNP guest without debugging or SMT, and
    // the expected measurement of exactly that launch is published.
    const guard = vmCreates(0).find((r) => r.form.vmid === "9201")!;
    expect(guard.form["amd-sev"]).toBe("type=snp,allow-smt=0,kernel-hashes=1,no-debug=1,no-key-sharing=0");
    expect(guard.form.args).toMatch(/^-bios \/var\/lib\/vz\/template\/iso\/ovmf-amdsev-[0-9a-f]{16}\.img -kernel \/var\/lib\/vz\/template\/iso\/relay-DeployGuardOne-[0-9a-f]{12}-[0-9a-f]{8}\.efi\.img$/);
    expect(vmCreates(0).find((r) => r.form.vmid === "9101")!.form.args).toBeUndefined();
    const outputs = JSON.parse((await project.runAsync("stack", "output", "relayOutputs", "--json")).stdout);
    const measurement = outputs["guard-1"].snpLaunchMeasurement as string;
    expect(measurement).toMatch(/^[0-9a-f]{96}$/);
    expect(outputs["exit-1"].snpLaunchMeasurement).toBeUndefined();
    const artifact = JSON.parse(readFileSync(join(project.dir, "artifacts", "relays", "guard-1", `${outputs["guard-1"].imageDigest.slice(0, 12)}.snp.json`), "utf8"));
    expect(artifact.measurement).toBe(measurement);
    const buildDirOf = readdirSync(relayBuild("guard-1")).find((entry) => entry.startsWith(`${outputs["guard-1"].imageDigest.slice(0, 12)}-`))!;
    const uki = join(relayBuild("guard-1"), buildDirOf, "relay.efi");
    const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");
    expect(artifact.uki.sha256).toBe(sha256(uki));
    expect(artifact.ovmf.sha256).toBe(TEST_OVMF_SHA256);

    // The launch Proxmox VE makes of the VM's config (qemu-server's rules), read as QEMU reads it.
    const vmConfig = (await double.api("GET", "/nodes/pve2/qemu/9201/config")) as Record<string, string | number>;
    const launch = effectiveSnpLaunch(qemuServerSnpCommand(vmConfig, { cbitpos: 51, reducedPhysBits: 1 }));
    const onDatastore = (path: string | undefined) => join(double.datastoreDir(scratch), path!.replace(/^\/var\/lib\/vz\/template\/iso\//, ""));
    expect(sha256(onDatastore(launch.firmware))).toBe(TEST_OVMF_SHA256);
    expect(sha256(onDatastore(launch.kernel))).toBe(artifact.uki.sha256);
    expect(launch).toMatchObject({ vcpus: artifact.vcpus, cpuModel: artifact.vcpuType, policy: artifact.policy, kernelHashes: true, confidentialGuest: true });
    expect(launch.append).toBeUndefined();
    expect(artifact.policy).toBe("0x20000");
    // The published value is the measurement of the very files the launch names.
    expect(expectedLaunchMeasurement({ ovmf: readFileSync(onDatastore(launch.firmware)), kernel: readFileSync(onDatastore(launch.kernel)), vcpus: launch.vcpus, vcpuType: launch.cpuModel })).toBe(measurement);

    // Each SBOM artifact exists and lists the overlay by digest.
    const sboms = readdirSync(join(project.dir, "artifacts", "sbom"));
    expect(sboms.some((f) => f.endsWith(".syft.json"))).toBe(true);
    expect(sboms.some((f) => f.endsWith(".cdx.json"))).toBe(true);
  }, 900_000);

  it("does nothing on a second up with no change: no SSH, no build, no upload", async () => {
    const before = double.requests().length;
    const result = await up();
    expect(result.status, result.stderr).toBe(0);
    expect(writes(double.requests().slice(before))).toEqual([]);
    const resources = result.stdout.slice(result.stdout.lastIndexOf("Resources:"));
    expect(resources).toMatch(/\b\d+ unchanged/);
    expect(resources).not.toMatch(/created|updated|replaced|deleted/);
    // Nothing ran: no collection, build, upload or health check appears at all.
    expect(result.stdout).not.toMatch(/collect(ed|ing)|building|upload|healthy/i);
  }, 300_000);

  it("a stack made when steps ran through the tsx command keeps that command line: preview changes nothing, and the line still starts a step", async () => {
    const exported = JSON.parse(project.must("stack", "export"));
    const steps = exported.deployment.resources.filter((r: any) => r.type === "command:local:Command");
    expect(steps.length).toBeGreaterThan(5);
    // What this program writes today: one node process with tsx's CommonJS hook.
    for (const step of steps) expect(step.inputs.create).toMatch(/^node --require tsx\/cjs cli\/step\.ts [a-z-]+$/);
    // The line such a stack holds (written out here as those releases wrote it, not derived from today's code).
    const OLD_RUNNER = "node_modules/.bin/tsx cli/step.ts";
    const old = structuredClone(exported);
    for (const step of old.deployment.resources.filter((r: any) => r.type === "command:local:Command")) {
      for (const field of ["create", "delete"]) {
        for (const where of [step.inputs, step.outputs]) {
          if (typeof where?.[field] === "string") where[field] = where[field].replace(/^node --require tsx\/cjs cli\/step\.ts /, `${OLD_RUNNER} `);
        }
      }
    }
    const file = join(scratch, "old-runner-state.json");
    writeFileSync(file, JSON.stringify(old), { mode: 0o600 });
    try {
      project.must("stack", "import", "--file", file);
      const preview = await project.runAsync("preview", "--expect-no-changes", "--diff");
      expect(preview.status, preview.stdout + preview.stderr).toBe(0);
      // The old line still runs a step where the stack's state keeps it.
      const usage = spawnSync("/bin/sh", ["-c", `${OLD_RUNNER} no-such-step`], { cwd: project.dir, encoding: "utf8" });
      expect(usage.status).toBe(2);
      expect(usage.stderr).toContain("usage: cli/step.ts STEP");
    } finally {
      writeFileSync(file, JSON.stringify(exported), { mode: 0o600 });
      project.must("stack", "import", "--file", file);
      rmSync(file);
    }
  }, 300_000);

  it("npm run status: every relay healthy on the image the stack wants; a stopped VM needs attention; read-only", async () => {
    const outputs = JSON.parse((await project.runAsync("stack", "output", "relayOutputs", "--json")).stdout);
    const status = () => project.status();
    const before = double.requests().length;
    const healthy = await status();
    expect(healthy.status).toBe(0);
    for (const relay of RELAYS) {
      const row = healthy.rows.get(relay.name)!;
      expect(row.attention).toEqual([]);
      // What runs: the double's VM description (read here on its own) names the image the stack output wants.
      const description = ((await double.api("GET", `/nodes/${relay.node}/qemu/${relay.vmId}/config`)) as { description: string }).description;
      expect(description).toContain(`image ${outputs[relay.name].imageDigest}`);
      expect(row).toMatchObject({ desiredImage: outputs[relay.name].imageDigest, runningImage: outputs[relay.name].imageDigest, machine: "running", tor: "up", fingerprint: "ok" });
      // The certificate the relay holds, dated as tor itself dates it.
      expect(row.signingCert).toMatchObject({ source: "relay", expiresAt: torSigningKeyExpiration(join(project.dir, KEY_STORE, relay.name)).toISOString(), level: "ok" });
      expect(row.onionKey.ageDays).toBeGreaterThanOrEqual(0);
      expect(row.onionKey.ageDays).toBeLessThan(1);
    }
    // Read-only: status changed nothing on Proxmox VE (it logged in as root@pam, which this stack's SNP relay needs, and read).
    expect(writes(double.requests().slice(before)).filter((r) => r.path !== "/access/ticket")).toEqual([]);
    expect(double.requests().slice(before).filter((r) => r.method === "GET").length).toBeGreaterThanOrEqual(2 * RELAYS.length);

    // The real npm run vulns over these very images' SBOMs, with a database (tools/vulndb) saying the installed tor is fixed in a later version.
    const torVersion = readBaseRecord(debianBase()).packages.find((p) => p.name === "tor")!.version;
    writeFileSync(join(scratch, "vulns.json"), JSON.stringify({ entries: [{ id: "CVE-2099-0001", distro: "debian:12", package: "tor", fixedIn: `${torVersion}.1`, severity: "high" }] }));
    const grypeEnv = { GRYPE_DB_CACHE_DIR: join(scratch, "grype-db") };
    const made = spawnSync(join(toolsBin(), "vulndb"), ["-spec", join(scratch, "vulns.json"), "-out", join(scratch, "vulndb")], { encoding: "utf8" });
    expect(made.status, made.stderr).toBe(0);
    expect((await project.scriptAsyncWith(grypeEnv, "cli/vulns.ts", "db", "import", made.stdout.trim())).status).toBe(0);
    const scanned = await project.scriptAsyncWith(grypeEnv, "cli/vulns.ts", "--stack", project.stack, "--build-dir", buildDir);
    expect(scanned.status, scanned.stdout + scanned.stderr).toBe(5);
    const flagged = await status();
    expect(flagged.status).toBe(1);
    for (const relay of RELAYS) {
      expect(flagged.rows.get(relay.name).vulnerable).toEqual({ count: 1, worst: "High", level: "warn" });
      expect(flagged.rows.get(relay.name).attention).toEqual(["1 vulnerable package in its image (worst: High): npm run vulns says which, and the fixed versions"]);
    }

    await double.waitForTask((await double.api("POST", "/nodes/pve1/qemu/9101/status/stop")) as string);
    try {
      const down = await status();
      expect(down.status).toBe(1);
      expect(down.rows.get("exit-1")).toMatchObject({ machine: "stopped", tor: "down" });
      expect(down.rows.get("exit-1").attention).toContain("VM 9101 on pve1 is not running: the next pulumi up starts it again");
      expect(down.rows.get("guard-1").attention).toEqual([expect.stringMatching(/^1 vulnerable package in its image/)]);
      const table = await project.scriptAsync("cli/status.ts", "--stack", project.stack);
      expect(table.status).toBe(1);
      expect(table.stdout).toMatch(/^exit-1\s+pve1\s+[0-9a-f]{12}\s+\S+\s+stopped\s+down\s.*ATTENTION$/m);
      expect(table.stdout).toMatch(/^guard-1\s+pve2\s+[0-9a-f]{12}\s+same\s+running\s+up\s+ok\s+\d+\.\d\s+\d+\.\dd\s+1\s+-\s+-\s+ATTENTION$/m);
    } finally {
      await double.waitForTask((await double.api("POST", "/nodes/pve1/qemu/9101/status/start")) as string);
    }
  }, 300_000);

  it("starts a VM powered off since the last up: preview says why, up starts it in place, the gate waits for it, and it boots the image it had", async () => {
    // The fingerprint tor itself wrote for the relay (its data directory's fingerprint file).
    const torFingerprint = readFileSync(join(standIns.get("exit-1")!.torData, "fingerprint"), "utf8").trim().split(" ")[1]!;
    // Powered off from outside (as a reboot inside an SNP guest does on Proxmox VE): the stack's state still says it runs.
    await double.waitForTask((await double.api("POST", "/nodes/pve1/qemu/9101/status/stop")) as string);
    const vmState = async () => ((await double.api("GET", "/nodes/pve1/qemu/9101/status/current")) as { status: string }).status;
    try {
      const preview = await project.preview();
      const warnings = (preview.raw.diagnostics ?? []).filter((d: any) => d.severity === "warning").map((d: any) => String(d.message).replace(/<\{%[^%]*%\}>/g, "").trim());
      expect(warnings, JSON.stringify(preview.raw.diagnostics, null, 1)).toContainEqual(expect.stringContaining("relay exit-1: VM 9101 on pve1 is stopped since the last up; this update starts it again and waits at the gate"));
      const changed = preview.steps.filter((s) => s.op !== "same").map((s) => `${s.op} ${s.name}`);
      // The VM is updated in place (its description gets generation 1), not replaced; its gate runs again; nothing else.
      expect(changed.sort()).toEqual(["replace exit-1-rollout-gate", "update exit-1-vm"]);
      expect(preview.steps.find((s) => s.name === "exit-1-vm")!.diffReasons).toEqual(["description"]);

      const before = double.requests().length;
      const result = await up();
      expect(result.status, result.stdout + result.stderr).toBe(0);
      // The config update (the description) and then the start, by the provider; no VM made anew, nothing uploaded or built:
      // the VM boots the ISO it had, with the identity and onion keys that image carries.
      const changes = writes(double.requests().slice(before)).map((r) => `${r.method} ${r.path}`).filter((line) => line !== "POST /access/ticket");
      expect(changes).toEqual(["PUT /nodes/pve1/qemu/9101/config", "POST /nodes/pve1/qemu/9101/status/start"]);
      expect(result.stdout).not.toMatch(/building|collect(ed|ing)/i);
      expect(result.stdout).toMatch(new RegExp(`relay exit-1: healthy on image [0-9a-f]{12} after \\d+s: tor runs with fingerprint ${torFingerprint}`));
      expect(await vmState()).toBe("running");
      const description = ((await double.api("GET", "/nodes/pve1/qemu/9101/config")) as { description: string }).description;
      expect(description).toMatch(/\ngeneration 1$/);
      // A VM that runs keeps its generation: the next preview changes nothing.
      const after = await project.preview();
      expect(after.steps.filter((s) => s.op !== "same").map((s) => `${s.op} ${s.name}`)).toEqual([]);
    } finally {
      // The later tests need the relay running, whatever happened here.
      if ((await vmState()) !== "running") await double.waitForTask((await double.api("POST", "/nodes/pve1/qemu/9101/status/start")) as string);
    }
  }, 600_000);

  it("redeploys exactly the relay whose torrc changed, with the onion keys collected from it", async () => {
    const before = double.requests().length;
    config.relays[0]!.contactInfo = "email:noc[]example.net ciissversion:2";
    project.configure(config, SECRETS);
    const preview = await project.preview();
    const replaced = preview.steps.filter((s) => s.op === "replace" || s.op === "create-replacement");
    expect(replaced.length).toBeGreaterThan(0);
    expect(replaced.every((s) => s.urn.includes("exit-1"))).toBe(true);
    // The pull request comment of this very plan, made by the command the preview workflow runs.
    writeFileSync(join(scratch, "preview.json"), JSON.stringify(preview.raw));
    const comment = await project.scriptAsync("cli/preview-summary.ts", "--stack", project.stack, "--json", join(scratch, "preview.json"));
    expect(comment.status, comment.stderr).toBe(0);
    expect(comment.stdout).toContain("- exit-1: rebuild — torrc changed: ContactInfo; newly collected onion keys and state\n");
    expect(comment.stdout).toContain("- guard-1: unchanged\n");

    const result = await up();
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(vmDeletes(before).map((r) => r.path)).toEqual(["/nodes/pve1/qemu/9101"]);
    expect(vmCreates(before).map((r) => r.form.vmid)).toEqual(["9101"]);
    // The new image carries the ntor key and state the running relay handed over.
    const overlay = JSON.parse(readFileSync(latestOverlayList(relayBuild("exit-1")), "utf8")) as { path: string; sha256: string }[];
    const digest = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");
    const data = standIns.get("exit-1")!.torData;
    expect(overlay.find((f) => f.path === "/etc/relay/keys/secret_onion_key_ntor")?.sha256).toBe(digest(join(data, "keys", "secret_onion_key_ntor")));
    expect(overlay.find((f) => f.path === "/etc/relay/state")?.sha256).toMatch(/^[0-9a-f]{64}$/);
  }, 900_000);

  it("refuses to redeploy a relay it cannot reach, leaving its VM running", async () => {
    standIns.get("guard-1")!.sshd.stop();
    const before = double.requests().length;
    config.relays[1]!.contactInfo = "email:changed[]example.net ciissversion:2";
    project.configure(config, SECRETS);
    const result = await up();
    const text = result.stdout + result.stderr;
    expect(result.status).not.toBe(0);
    expect(text).toMatch(/relay guard-1: cannot collect onion keys and state over SSH from 127\.0\.0\.1/);
    expect(text).toMatch(/allowFreshOnionKeys/);
    expect(writes(double.requests().slice(before)).filter((r) => r.path.includes("9201") || r.path.endsWith("/upload"))).toEqual([]);
  }, 600_000);

  it("lets the operator through with allowFreshOnionKeys, loudly, and still waits until the new relay is healthy", async () => {
    const before = double.requests().length;
    (config.relays[1] as Record<string, unknown>).allowFreshOnionKeys = true;
    project.configure(config, SECRETS);
    let finished = false;
    const running = up().finally(() => (finished = true));
    // The new VM's SSH server comes up with it.
    while (vmCreates(before).length === 0 && !finished) await new Promise((resolve) => setTimeout(resolve, 500));
    await standIns.get("guard-1")!.restartSshd();
    const result = await running;
    const text = result.stdout + result.stderr;
    expect(result.status, text).toBe(0);
    expect(text).toMatch(/WARNING allowFreshOnionKeys is set: the new image gets FRESH onion keys/);
    expect(vmCreates(before).map((r) => r.form.vmid)).toEqual(["9201"]);
    expect(result.stdout).toMatch(/relay guard-1: healthy on image/);
  }, 900_000);

  it("keeps the newest keepIsos images of a relay on the datastore and prunes older ones once the new relay is healthy", async () => {
    const before = double.requests().length;
    const isos = () => double.requests().filter((r) => r.path.endsWith("/upload") && r.upload!.filename.startsWith("relay-DeployExitOne-")).map((r) => r.upload!.filename);
    for (const contact of ["email:noc2[]example.net ciissversion:2", "email:noc3[]example.net ciissversion:2"]) {
      config.relays[0]!.contactInfo = contact;
      project.configure(config, SECRETS);
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
  }, 900_000);

  it("stops on a failed upload before the relay's VM is touched: the old relay keeps running", async () => {
    const before = double.requests().length;
    config.relays[0]!.contactInfo = "email:upload-fails[]example.net ciissversion:2";
    project.configure(config, SECRETS);
    await double.failNext("imgcopy", "copy failed: No space left on device");
    const result = await up();
    const text = result.stdout + result.stderr;
    expect(result.status).not.toBe(0);
    expect(text).toMatch(/copy failed: No space left on device/);
    expect(vmDeletes(before)).toEqual([]);
    expect(((await double.api("GET", "/nodes/pve1/qemu/9101/status/current")) as { status: string }).status).toBe("running");
  }, 600_000);

  it("reports a VM that fails to start with Proxmox's own words, and the next up brings the relay up healthy", async () => {
    const before = double.requests().length;
    await double.failNext("qmstart", "start failed: QEMU exited with code 1", "9101");
    const failed = await up();
    expect(failed.status).not.toBe(0);
    expect(failed.stdout + failed.stderr).toMatch(/start failed: QEMU exited with code 1/);
    expect(vmCreates(before).map((r) => r.form.vmid)).toEqual(["9101"]);
    // The gate never saw the relay: nothing after it (pruning, the next relays) ran.
    expect(failed.stdout).not.toMatch(/relay exit-1: healthy/);
    const again = await up();
    expect(again.status, again.stdout + again.stderr).toBe(0);
    expect(again.stdout).toMatch(/relay exit-1: healthy on image [0-9a-f]{12}/);
  }, 900_000);

  it("leaves the relays alone when an image build fails midway, and the next up succeeds", async () => {
    // The stack's base seen through a directory of this test's own without its finished-build marker, so the
    // image build fails after collection; the shared base the other test files read stays whole.
    const shared = debianBaseDir();
    const unfinished = join(scratch, "unfinished-base", basename(shared));
    mkdirSync(unfinished, { recursive: true });
    for (const entry of readdirSync(shared)) if (entry !== ".complete") symlinkSync(join(shared, entry), join(unfinished, entry));
    const baseLink = join(buildDir, "base");
    rmSync(baseLink);
    symlinkSync(dirname(unfinished), baseLink);
    const before = double.requests().length;
    config.relays[0]!.contactInfo = "email:build-fails[]example.net ciissversion:2";
    project.configure(config, SECRETS);
    try {
      const failed = await up();
      expect(failed.status).not.toBe(0);
      expect(failed.stdout + failed.stderr).toMatch(/is not a finished base build; run pulumi up again to build it/);
      // Nothing was uploaded and no VM was touched (a root@pam login is all): the relay still runs the image it ran.
      expect(writes(double.requests().slice(before)).map((r) => `${r.method} ${r.path}`).filter((line) => line !== "POST /access/ticket")).toEqual([]);
      expect(((await double.api("GET", "/nodes/pve1/qemu/9101/status/current")) as { status: string }).status).toBe("running");
    } finally {
      rmSync(baseLink);
      symlinkSync(join(BUILD_CACHE, "base"), baseLink);
    }
    const again = await up();
    expect(again.status, again.stdout + again.stderr).toBe(0);
    expect(again.stdout).toMatch(/relay exit-1: healthy on image [0-9a-f]{12}/);
  }, 900_000);

  it("converges after a pulumi up interrupted during an image build", async () => {
    config.relays[0]!.contactInfo = "email:interrupted[]example.net ciissversion:2";
    project.configure(config, SECRETS);
    const child = project.spawn("up", "--yes", "--skip-preview");
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    await waitFor(() => output, /exit-1-image-build creating/, 300);
    child.kill("SIGINT");
    await new Promise((resolve) => child.on("close", resolve));

    const result = await up();
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/relay exit-1: healthy on image [0-9a-f]{12}/);
    const after = await project.preview();
    expect(after.steps.filter((s) => s.op !== "same").map((s) => `${s.op} ${s.urn}`)).toEqual([]);
  }, 900_000);

  it("keeps every private key byte out of the stack's state and the logs", async () => {
    const exported = (await project.runAsync("stack", "export")).stdout;
    const logs = (await up()).stdout;
    for (const relay of RELAYS) {
      const keys = join(project.dir, KEY_STORE, relay.name);
      const secrets = ["ed25519_signing_secret_key", "secret_onion_key_ntor", "ed25519_master_id_secret_key"].map((f) => readFileSync(join(keys, f)).subarray(32, 64));
      secrets.push(readFileSync(join(standIns.get(relay.name)!.torData, "keys", "secret_onion_key_ntor")).subarray(32, 64));
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
  }, 300_000);

  it("ran no value as shell: no file named pwned anywhere it could land", () => {
    for (const place of [project.dir, scratch, BUILD_CACHE, process.cwd(), "/tmp", "/"]) {
      const found = readdirSync(place).filter((name) => name === "pwned");
      expect(found, place).toEqual([]);
    }
    // And everything the program wrote under the project is where it belongs.
    expect(readdirSync(project.dir).sort()).toEqual(expect.arrayContaining([KEY_STORE, "artifacts", ".pulumi"]));
    expect(readdirSync(project.dir).filter((name) => !["Pulumi.yaml", "Pulumi.deploy.yaml", "index.ts", "package.json", "tsconfig.json", "lib", "components", "images", "cli", "node_modules", KEY_STORE, "artifacts", ".pulumi"].includes(name))).toEqual([]);
  });

  it("destroys the VMs", async () => {
    const result = await project.runAsync("destroy", "--yes", "--skip-preview");
    expect(result.status, result.stdout + result.stderr).toBe(0);
    const deleted = vmDeletes(0).map((r) => r.path);
    expect(deleted).toContain("/nodes/pve1/qemu/9101");
    expect(deleted).toContain("/nodes/pve2/qemu/9201");
  }, 300_000);
});

/** The overlay file list of the newest image built in a relay's build directory. */
function latestOverlayList(root: string): string {
  const builds = readdirSync(root, { withFileTypes: true }).filter((d) => d.isDirectory() && /^[0-9a-f]{12}-[0-9a-f]{8}$/.test(d.name));
  return builds.map((d) => join(root, d.name, "files.json")).sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0]!;
}
