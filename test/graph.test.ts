/**
 * The fleet's resource graph under Pulumi's mocks, through the program's own
 * wiring (deployFleet): fast, and a check that every command is a constant
 * step invocation whose data arrives as a valid JSON spec. The real engine
 * runs the same graph in preview.test.ts and deploy.test.ts.
 */
import * as pulumi from "@pulumi/pulumi";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseStackConfig } from "../lib/config";
import { planFleet } from "../lib/fleet";
import { initRelayKeys } from "../lib/key-store";
import { parseStepSpec, STEP_COMMAND, STEP_SPECS, type StepName } from "../lib/steps";
import { environmentOf, mockFleetResources, specOf } from "./support/graph-mocks";
import { privateTmpDir } from "./support/tmp";

const registered = mockFleetResources("graph");

describe("the fleet's resource graph", () => {
  const dir = privateTmpDir("graph");
  const index = (type: string, name: string) => registered.findIndex((r) => r.type === type && r.name === name);
  const find = (type: string, name: string) => registered[index(type, name)]!;
  const commands = () => registered.filter((r) => r.type === "command:local:Command");

  beforeAll(async () => {
    for (const [name, nickname] of [["r1", "GraphRelayOne"], ["r2", "GraphRelayTwo"]] as const) initRelayKeys(join(dir, "keys"), name, { nickname });
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "keys", "collector")]);
    const config = parseStackConfig({
      proxmox: { endpoint: "https://pve.example.net:8006", nodes: ["pve1"], datastore: "local", bridge: "vmbr0" },
      proxmoxApiToken: "root@pam!graph=0a1b",
      keyStore: join(dir, "keys"),
      buildDir: join(dir, "build dir $(touch pwned)"),
      stateCollection: { privateKeyFile: join(dir, "keys", "collector") },
      relays: ["r1", "r2"].map((name, i) => ({
        name,
        nickname: `GraphRelay${["One", "Two"][i]}`,
        node: "pve1",
        vmId: 9100 + i,
        mac: `BC:24:11:00:00:0${i + 1}`,
        ipv4: { address: `198.51.100.${10 + i}/24`, gateway: "198.51.100.1" },
        contactInfo: "x@example.net",
      })),
    });
    const fleet = planFleet(config, { projectDir: dir, now: new Date() });
    const { deployFleet } = await import("../components/fleet");
    const outputs = deployFleet(config, fleet, { projectDir: process.cwd(), project: "diskless-relays", stack: "graph", dryRun: true });
    await new Promise<void>((resolve) => pulumi.all(Object.values(outputs).flatMap((o) => [o.iso, o.vmId])).apply(() => resolve()));
    // The gates and prunes register once the VMs they wait for resolve.
    for (let i = 0; i < 50 && index("command:local:Command", "r2-vm-prune-isos") < 0; i++) await new Promise((resolve) => setTimeout(resolve, 100));
  });

  it("collects before it builds, builds before it uploads, uploads before the VM, and gates after it", () => {
    const order = [
      index("command:local:Command", "r1-state-collect"),
      index("command:local:Command", "r1-image-build"),
      index("proxmoxve:index/fileLegacy:FileLegacy", "r1-vm-iso"),
      index("proxmoxve:index/vmLegacy:VmLegacy", "r1-vm"),
      index("command:local:Command", "r1-rollout-gate"),
      index("command:local:Command", "r1-vm-prune-isos"),
    ];
    expect(order.every((i) => i >= 0), JSON.stringify(order)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
  });

  it("runs one constant command line per step, its data a JSON spec the step's schema accepts", () => {
    expect(commands().length).toBeGreaterThan(10);
    for (const command of commands()) {
      for (const field of ["create", "update", "delete"]) {
        const line = command.inputs[field];
        if (line === undefined) continue;
        const step = line.slice(STEP_COMMAND.length + 1);
        expect(line, `${command.name}.${field}`).toBe(`${STEP_COMMAND} ${step}`);
        expect(Object.keys(STEP_SPECS)).toContain(step);
      }
      const step = command.inputs.create.slice(STEP_COMMAND.length + 1) as StepName;
      expect(() => parseStepSpec(step, specOf(command)), command.name).not.toThrow();
    }
  });

  it("passes paths with spaces and $(…) as data, unchanged", () => {
    const build = specOf(find("command:local:Command", "r1-image-build"));
    expect(build.outDir).toContain("build dir $(touch pwned)");
    expect(build.collectedDir).toMatch(/build dir \$\(touch pwned\)\/diskless-relays-graph\/relays\/r1\/collected\/[0-9a-f]{12}$/);
  });

  it("collects through the pinned channel and asks the target whether the relay runs", () => {
    const collect = specOf(find("command:local:Command", "r1-state-collect"));
    expect(collect.channel).toMatchObject({ host: "198.51.100.10", port: 22, user: "root", hostPublicKey: expect.stringMatching(/^ssh-ed25519 /) });
    expect(collect.target).toEqual({ kind: "proxmox", endpoint: "https://pve.example.net:8006", verifyTls: true, node: "pve1", vmId: 9100, datastore: "local" });
    const collectCommand = find("command:local:Command", "r1-state-collect");
    expect(Object.keys(environmentOf(collectCommand)).sort()).toEqual(["DISKLESS_RELAYS_STEP", "PROXMOX_API_TOKEN"]);
  });

  it("gates each relay on its expected identity and ORPort", () => {
    const gate = specOf(find("command:local:Command", "r1-rollout-gate"));
    expect(gate.expected).toMatchObject({ orPort: 443, exit: false, rsaFingerprint: expect.stringMatching(/^[0-9A-F]{40}$/) });
    expect(gate).toMatchObject({ timeoutSeconds: 600, rollback: true });
  });

  it("boots the VM from the uploaded ISO on ide2, with no disk", () => {
    const vm = find("proxmoxve:index/vmLegacy:VmLegacy", "r1-vm");
    const iso = find("proxmoxve:index/fileLegacy:FileLegacy", "r1-vm-iso");
    expect(vm.inputs.cdrom).toEqual({ interface: "ide2", fileId: `local:iso/${iso.inputs.sourceFile.fileName}` });
    expect(vm.inputs.disks).toEqual([]);
    expect(vm.inputs).toMatchObject({ bios: "ovmf", machine: "q35", vmId: 9100, started: true });
  });

  it("puts no key bytes in any command: only paths, texts and digests", () => {
    const text = JSON.stringify(commands().map((c) => c.inputs));
    // Any PEM private key, or a tor secret-key header ("ed25519v1-secret", "c25519v1").
    expect(text).not.toMatch(/PRIVATE KEY|v1-secret|c25519v/);
  });
});
