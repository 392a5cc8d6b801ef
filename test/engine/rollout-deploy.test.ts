/**
 * Rolling order through the real engine: two relays on one Proxmox node are
 * replaced one after the other (rollout.maxParallel = 1), never together:
 * the second waits until the first is healthy on its new image. Stand-in
 * relays (test/support/standin.ts) answer behind the Proxmox VE double.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestKeys, TEST_API_TOKEN, testStackConfig, type TestRelay } from "../support/fleet";
import { BUILD_CACHE } from "../support/images";
import { ProxmoxDoubleProcess, writes } from "../support/proxmox";
import { TestProject } from "../support/pulumi";
import { freePort } from "../support/sshd";
import { StandInRelay } from "../support/standin";
import { privateTmpDir } from "../support/tmp";
import { GUEST_PATHS } from "../../lib/image/guest-paths";

const RELAYS: TestRelay[] = [
  { name: "roll-a", nickname: "RollA", node: "pve1", vmId: 9301, exit: false },
  { name: "roll-b", nickname: "RollB", node: "pve1", vmId: 9302, exit: false },
];

describe("rolling redeploys on one node", () => {
  const scratch = privateTmpDir("rollout");
  let double: ProxmoxDoubleProcess;
  let project: TestProject;
  let config: Record<string, any>;
  const standIns: StandInRelay[] = [];

  beforeAll(async () => {
    double = await ProxmoxDoubleProcess.start(scratch, TEST_API_TOKEN, { boot: true });
    project = new TestProject("rollout");
    makeTestKeys(project.dir, RELAYS);
    config = { ...testStackConfig(RELAYS, { endpoint: double.endpoint }), buildDir: BUILD_CACHE, rollout: { maxParallel: 1, healthTimeoutSeconds: 60 } };
    for (const [i, relay] of RELAYS.entries()) {
      const orPort = await freePort();
      const standIn = await StandInRelay.start({
        dir: join(scratch, relay.name),
        keysDir: join(project.dir, "keys", relay.name),
        nickname: relay.nickname,
        orPort,
        collectorPublicKey: join(project.dir, "keys", "collector.pub"),
        root: double.rootOf(scratch, relay.vmId),
        exit: relay.exit,
      });
      standIns.push(standIn);
      Object.assign(config.relays[i], { sshHost: "127.0.0.1", sshPort: standIn.sshd.port, orPort });
    }
    project.configure(config, { proxmoxApiToken: TEST_API_TOKEN });
    const first = await project.runAsync("up", "--yes", "--skip-preview");
    expect(first.status, first.stdout + first.stderr).toBe(0);
  }, 900_000);

  afterAll(() => {
    for (const standIn of standIns) standIn.stop();
    double?.stop();
    project?.destroy();
  });

  it("replaces the second relay's VM only after the first one's is back up", async () => {
    const before = double.requests().length;
    // A fleet-wide change: both relays need a new image.
    config.image = { ...config.image, kernelCmdline: "console=ttyS0 panic=10 quiet" };
    project.configure(config, { proxmoxApiToken: TEST_API_TOKEN });
    const result = await project.runAsync("up", "--yes", "--skip-preview");
    expect(result.status, result.stdout + result.stderr).toBe(0);
    const log = writes(double.requests().slice(before)).map((r) => `${r.method} ${r.path}${r.form.vmid ? ` vmid=${r.form.vmid}` : ""}`);
    const at = (pattern: RegExp) => log.findIndex((line) => pattern.test(line));
    const aDeleted = at(/^DELETE \/nodes\/pve1\/qemu\/9301$/);
    const aStarted = at(/^POST \/nodes\/pve1\/qemu\/9301\/status\/start$/);
    const bStopped = at(/^POST \/nodes\/pve1\/qemu\/9302\/status\/stop$/);
    const bStarted = at(/^POST \/nodes\/pve1\/qemu\/9302\/status\/start$/);
    expect([aDeleted, aStarted, bStopped, bStarted].every((i) => i >= 0), log.join("\n")).toBe(true);
    // roll-a (the lower vmId) goes first, and roll-b is not touched until roll-a runs again.
    expect(aDeleted).toBeLessThan(aStarted);
    expect(aStarted).toBeLessThan(bStopped);
    expect(bStopped).toBeLessThan(bStarted);
    // roll-b's turn came only once roll-a's gate had found it healthy.
    expect(result.stdout.indexOf("relay roll-a: healthy on image")).toBeGreaterThan(-1);
    expect(result.stdout.indexOf("relay roll-a: healthy on image")).toBeLessThan(result.stdout.indexOf("relay roll-b: healthy on image"));
  }, 900_000);

  it("stops the rollout when the first relay does not come back: the second is not touched", async () => {
    const before = double.requests().length;
    // roll-a's tor dies; with rollback off, its gate gives up after the timeout.
    standIns[0]!.stopTor();
    config.image = { ...config.image, kernelCmdline: "console=ttyS0 panic=10" };
    config.rollout = { ...config.rollout, healthTimeoutSeconds: 30, rollback: false };
    project.configure(config, { proxmoxApiToken: TEST_API_TOKEN });
    const result = await project.runAsync("up", "--yes", "--skip-preview");
    const text = result.stdout + result.stderr;
    expect(result.status).not.toBe(0);
    expect(text).toMatch(/relay roll-a did not come back healthy on image [0-9a-f]{12} within 30s \(VM 9301 on pve1\): .*nothing listens on its ORPort/);
    expect(text).toMatch(/rollout\.rollback is false, so it stays on this image/);
    const log = writes(double.requests().slice(before)).map((r) => `${r.method} ${r.path}`);
    expect(log.some((line) => line.includes("/qemu/9301"))).toBe(true);
    expect(log.filter((line) => line.includes("/qemu/9302"))).toEqual([]);
    standIns[0]!.startTor();
  }, 900_000);

  it("rolls a relay that does not come back onto its last healthy image through the Proxmox VE API", async () => {
    // Deploy a healthy image first, so there is one to go back to.
    config.rollout = { ...config.rollout, rollback: true, healthTimeoutSeconds: 45 };
    config.image = { ...config.image, kernelCmdline: "console=ttyS0 panic=10 loglevel=4" };
    project.configure(config, { proxmoxApiToken: TEST_API_TOKEN });
    const healthy = await project.runAsync("up", "--yes", "--skip-preview");
    expect(healthy.status, healthy.stdout + healthy.stderr).toBe(0);
    const good = /relay roll-a: healthy on image ([0-9a-f]{12})/.exec(healthy.stdout)![1]!;

    // The next image of roll-a never gets a running tor; tor is back once the VM boots another ISO.
    const before = double.requests().length;
    standIns[0]!.stopTor();
    let finished = false;
    config.relays[0].contactInfo = "email:sick[]example.net ciissversion:2";
    project.configure(config, { proxmoxApiToken: TEST_API_TOKEN });
    const running = project.runAsync("up", "--yes", "--skip-preview").finally(() => (finished = true));
    const rebooted = () => writes(double.requests().slice(before)).some((r) => r.method === "PUT" && r.path === "/nodes/pve1/qemu/9301/config");
    while (!rebooted() && !finished) await new Promise((resolve) => setTimeout(resolve, 500));
    standIns[0]!.startTor();
    const result = await running;
    const text = result.stdout + result.stderr;
    expect(result.status).not.toBe(0);
    expect(text).toMatch(new RegExp(`ROLLED BACK to image ${good} with its current onion keys and state, and is healthy there`));
    // Through the API: the rollback image uploaded, booted on ide2, the VM restarted; roll-b untouched.
    const log = writes(double.requests().slice(before));
    const upload = log.filter((r) => r.path.endsWith("/upload")).at(-1)!;
    expect(upload.upload!.filename).toMatch(new RegExp(`^relay-RollA-${good}-[0-9a-f]{8}\\.iso$`));
    const put = log.find((r) => r.method === "PUT")!;
    expect(put.form.ide2).toBe(`local:iso/${upload.upload!.filename},media=cdrom`);
    const order = log.map((r) => `${r.method} ${r.path}`);
    expect(order.indexOf("PUT /nodes/pve1/qemu/9301/config")).toBeLessThan(order.lastIndexOf("POST /nodes/pve1/qemu/9301/status/start"));
    expect(order.filter((line) => line.includes("/qemu/9302"))).toEqual([]);
    expect(readFileSync(join(double.rootOf(scratch, 9301), GUEST_PATHS.RELAY_IMAGE_LABEL), "utf8")).toContain(`"imageDigest":"${good}`);

    // And the next up, unchanged, says so at once.
    const again = await project.runAsync("up", "--yes", "--skip-preview");
    expect(again.status).not.toBe(0);
    expect(again.stdout + again.stderr).toMatch(new RegExp(`relay roll-a: still on its rollback image ${good}`));
  }, 900_000);
});
