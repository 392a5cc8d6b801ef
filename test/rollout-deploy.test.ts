/**
 * Rolling order through the real engine: two relays on one Proxmox node are
 * replaced one after the other (rollout.maxParallel = 1), never together.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestKeys, TEST_API_TOKEN, testStackConfig, type TestRelay } from "./support/fleet";
import { BUILD_CACHE } from "./support/images";
import { ProxmoxDoubleProcess, writes } from "./support/proxmox";
import { TestProject } from "./support/pulumi";
import { freePort } from "./support/sshd";
import { privateTmpDir } from "./support/tmp";

const RELAYS: TestRelay[] = [
  { name: "roll-a", nickname: "RollA", node: "pve1", vmId: 9301, exit: false },
  { name: "roll-b", nickname: "RollB", node: "pve1", vmId: 9302, exit: false },
];

describe("rolling redeploys on one node", () => {
  const scratch = privateTmpDir("rollout");
  let double: ProxmoxDoubleProcess;
  let project: TestProject;
  let config: Record<string, any>;

  beforeAll(async () => {
    double = await ProxmoxDoubleProcess.start(scratch, TEST_API_TOKEN);
    project = new TestProject("rollout");
    makeTestKeys(project.dir, RELAYS);
    config = { ...testStackConfig(RELAYS, { endpoint: double.endpoint }), buildDir: BUILD_CACHE, rollout: { maxParallel: 1 } };
    // No relay really runs behind the double: collection goes to a closed port
    // on 127.0.0.1 (never to the relays' documentation addresses) and the
    // operator's override lets the rebuild through.
    for (const relay of config.relays) Object.assign(relay, { sshHost: "127.0.0.1", sshPort: await freePort(), allowFreshOnionKeys: true });
    project.configure(config, { proxmoxApiToken: TEST_API_TOKEN });
    const first = await project.runAsync("up", "--yes", "--skip-preview");
    expect(first.status, first.stdout + first.stderr).toBe(0);
  }, 900_000);

  afterAll(() => {
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
  }, 900_000);
});
