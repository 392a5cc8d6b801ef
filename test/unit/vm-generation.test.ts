/**
 * A Proxmox VE VM that stopped since the last up is started again by the
 * next (lib/deploy/vm-generation.ts): its generation, judged at plan time
 * from what the API says (lib/proxmox/observe-vms.ts, read here from the
 * Proxmox VE double by the program's own child process). The whole path,
 * through the real engine and provider: test/engine/deploy.test.ts ("starts
 * a VM powered off since the last up").
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generationOfVmDescription, vmDescription } from "../../lib/deploy/relay-reach";
import { observeVmsNow } from "../../lib/proxmox/observe-vms";
import { plannedVmGeneration, unreadableVms } from "../../lib/deploy/vm-generation";
import { TEST_API_TOKEN } from "../support/fleet";
import { ProxmoxDoubleProcess, writes } from "../support/proxmox";
import { freePort } from "../support/sshd";
import { privateTmpDir } from "../support/tmp";
import { repoRoot } from "../support/pulumi";

const relay = { name: "exit-1", nickname: "ExitOne" };
const where = { node: "pve1", vmId: 9101 };

describe("a Proxmox VE VM's generation", () => {
  it("is written in the description only once the VM was started again, and read back from it", () => {
    const first = vmDescription(relay, "ab".repeat(32), "relay.iso");
    expect(first).not.toMatch(/generation/);
    expect(generationOfVmDescription(first)).toBe(0);
    expect(generationOfVmDescription(vmDescription(relay, "ab".repeat(32), "relay.iso", 7))).toBe(7);
    // Anything else on the line, or a leading zero, is not a generation the program wrote.
    expect(generationOfVmDescription(`${first}\ngeneration 07`)).toBe(0);
    expect(generationOfVmDescription(`${first}\ngeneration 2 or so`)).toBe(0);
  });

  it("stays while the VM runs, moves on when it is stopped, starts at 0 when it does not exist", () => {
    const description = vmDescription(relay, "ab".repeat(32), "relay.iso", 2);
    expect(plannedVmGeneration({ kind: "running", description }, where)).toEqual({ generation: 2, known: true });
    expect(plannedVmGeneration({ kind: "stopped", description }, where)).toEqual({
      generation: 3,
      known: true,
      warning: "VM 9101 on pve1 is stopped since the last up; this update starts it again and waits at the gate",
    });
    expect(plannedVmGeneration({ kind: "absent" }, where)).toEqual({ generation: 0, known: true });
    expect(plannedVmGeneration({ kind: "unreadable", reason: "x" }, where)).toEqual({ generation: 0, known: false });
  });

  it("lets a preview go on without the API, saying so once for the stack, and stops pulumi up", () => {
    const read = [
      { vm: where, observation: { kind: "unreadable" as const, reason: "connect ECONNREFUSED 127.0.0.1:8006" } },
      { vm: { node: "pve2", vmId: 9201 }, observation: { kind: "unreadable" as const, reason: "connect ECONNREFUSED 127.0.0.1:8006" } },
      { vm: { node: "pve3", vmId: 9301 }, observation: { kind: "running" as const, description: "" } },
    ];
    expect(unreadableVms(read, true)).toEqual({
      warning:
        "cannot read from the Proxmox VE API: VM 9101 on pve1, VM 9201 on pve2 (connect ECONNREFUSED 127.0.0.1:8006). This preview cannot tell whether those VMs stopped since the last up; pulumi up reads them again",
    });
    expect(unreadableVms(read, false).error).toMatch(/^cannot read from the Proxmox VE API: VM 9101 on pve1, VM 9201 on pve2 \(connect ECONNREFUSED 127\.0\.0\.1:8006\)\. pulumi up needs .*npm run preflight/);
    expect(unreadableVms(read.slice(2), false)).toEqual({});
  });
});

describe("reading the relays' VMs at plan time", () => {
  const dir = privateTmpDir("observe-vms");
  let double: ProxmoxDoubleProcess;
  const connection = () => ({ endpoint: double.endpoint, verifyTls: false, apiToken: TEST_API_TOKEN });

  beforeAll(async () => {
    double = await ProxmoxDoubleProcess.start(dir, TEST_API_TOKEN, { taskSeconds: 0.2 });
    await double.createVm("pve1", 9101, true);
    await double.api("PUT", "/nodes/pve1/qemu/9101/config", { description: vmDescription(relay, "ab".repeat(32), "relay.iso", 4) });
    await double.createVm("pve2", 9201, false);
  }, 60_000);
  afterAll(() => double?.stop());

  it("says of each VM whether it runs, with its description, in the order asked, and changes nothing", () => {
    const before = double.requests().length;
    const seen = observeVmsNow(process.cwd(), {
      connection: connection(),
      vms: [
        { node: "pve1", vmId: 9101 },
        { node: "pve2", vmId: 9201 },
        { node: "pve1", vmId: 9301 },
      ],
    });
    expect(seen).toEqual([{ kind: "running", description: vmDescription(relay, "ab".repeat(32), "relay.iso", 4) }, { kind: "stopped", description: "" }, { kind: "absent" }]);
    // The same from the program's own directory, which Pulumi hands it as ".".
    const cwd = process.cwd();
    try {
      process.chdir(repoRoot);
      expect(observeVmsNow(".", { connection: connection(), vms: [where] })).toEqual([{ kind: "running", description: vmDescription(relay, "ab".repeat(32), "relay.iso", 4) }]);
    } finally {
      process.chdir(cwd);
    }
    expect(writes(double.requests().slice(before))).toEqual([]);
  }, 60_000);

  it("names why a VM could not be read: a refused token, an endpoint nobody answers, a project without its npm packages", async () => {
    const refused = observeVmsNow(process.cwd(), { connection: { ...connection(), apiToken: "root@pam!wrong=00000000-0000-0000-0000-000000000000" }, vms: [where] });
    expect(refused).toEqual([{ kind: "unreadable", reason: expect.stringMatching(/HTTP 401/) }]);
    const nobody = observeVmsNow(process.cwd(), { connection: { ...connection(), endpoint: `https://127.0.0.1:${await freePort()}` }, vms: [where] });
    expect(nobody).toEqual([{ kind: "unreadable", reason: expect.stringMatching(/ECONNREFUSED/) }]);
    // A project without its npm packages: the reader cannot start, and says what to do.
    const bare = join(dir, "bare-project");
    mkdirSync(bare);
    expect(observeVmsNow(bare, { connection: connection(), vms: [where] })).toEqual([{ kind: "unreadable", reason: `tsx is not installed in ${bare}: run npm ci there` }]);
  }, 60_000);
});
