/**
 * The resource graph of one relay under Pulumi's mocks: fast, and a check on
 * the wiring (collect → build → upload → VM). The real engine runs the same
 * graph in preview.test.ts and deploy.test.ts.
 */
import * as pulumi from "@pulumi/pulumi";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseStackConfig } from "../lib/config";
import { planFleet } from "../lib/fleet";
import { initRelayKeys } from "../lib/key-store";
import { privateTmpDir } from "./support/tmp";
import { repoRoot } from "./support/pulumi";

interface Registered {
  type: string;
  name: string;
  inputs: Record<string, any>;
}

const registered: Registered[] = [];
pulumi.runtime.setMocks(
  {
    newResource(args) {
      registered.push({ type: args.type, name: args.name, inputs: args.inputs });
      const state = args.type === "command:local:Command" ? { ...args.inputs, stdout: `${args.name} done` } : args.inputs;
      const id = args.type === "proxmoxve:index/fileLegacy:FileLegacy" ? `local:iso/${args.inputs.sourceFile.fileName}` : `${args.name}-id`;
      return { id, state };
    },
    call: (args) => args.inputs,
  },
  "diskless-relays",
  "graph",
  false,
);

describe("one relay's resource graph", () => {
  const dir = privateTmpDir("graph");
  const index = (type: string, name: string) => registered.findIndex((r) => r.type === type && r.name === name);
  const find = (type: string, name: string) => registered[index(type, name)]!;

  beforeAll(async () => {
    initRelayKeys(join(dir, "keys"), "r1", { nickname: "GraphRelay" });
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "keys", "collector")]);
    const config = parseStackConfig({
      proxmox: { endpoint: "https://pve.example.net:8006", nodes: ["pve1"], datastore: "local", bridge: "vmbr0" },
      proxmoxApiToken: "root@pam!graph=0a1b",
      stateCollection: { privateKeyFile: "keys/collector" },
      relays: [{ name: "r1", nickname: "GraphRelay", node: "pve1", vmId: 9100, mac: "BC:24:11:00:00:01", ipv4: { address: "198.51.100.10/24", gateway: "198.51.100.1" }, contactInfo: "x@example.net" }],
    });
    const fleet = planFleet(config, { projectDir: dir, now: new Date() });
    const { BaseImage } = await import("../components/base-image");
    const { BaseSbom } = await import("../components/sbom");
    const { Relay } = await import("../components/relay");
    const { ProxmoxRelayVm } = await import("../components/relay-vm");
    const { baseImageInputs, treeDigest, RELAY_SCRIPT_PATHS } = await import("../lib/image-inputs");
    const base = new BaseImage("debian", { inputs: baseImageInputs(config.image, repoRoot), projectDir: repoRoot, buildRoot: join(dir, "build") });
    const baseSbom = new BaseSbom("debian", { baseDir: base.dir, baseDigest: base.digest, flavour: "debian", artifactsDir: join(dir, "artifacts"), projectDir: repoRoot });
    const relay = new Relay("r1", {
      plan: fleet.relays[0]!,
      config,
      base,
      baseSbom,
      collectorPublicKey: fleet.collectorPublicKey,
      relayScripts: treeDigest(repoRoot, RELAY_SCRIPT_PATHS),
      projectDir: repoRoot,
      buildRoot: join(dir, "build", "stack"),
      artifactsDir: join(dir, "artifacts"),
      createVm: (name, args, opts) =>
        new ProxmoxRelayVm(name, {
          ...args,
          datastore: "local",
          bridge: "vmbr0",
          keepIsos: 2,
          connection: { endpoint: "https://pve.example.net:8006", apiToken: pulumi.secret("root@pam!graph=0a1b"), verifyTls: true },
          projectDir: repoRoot,
        }, opts),
      after: [],
    });
    await new Promise<void>((resolve) => pulumi.all([relay.vm.vmId, relay.image.isoPath]).apply(() => resolve()));
  });

  it("collects before it builds, builds before it uploads, uploads before the VM", () => {
    const collect = index("command:local:Command", "r1-state-collect");
    const build = index("command:local:Command", "r1-image-build");
    const upload = index("proxmoxve:index/fileLegacy:FileLegacy", "r1-vm-iso");
    const vm = index("proxmoxve:index/vmLegacy:VmLegacy", "r1-vm");
    expect([collect, build, upload, vm].every((i) => i >= 0)).toBe(true);
    expect(collect).toBeLessThan(build);
    expect(build).toBeLessThan(upload);
    expect(upload).toBeLessThan(vm);
  });

  it("builds from the directory the collection filled", () => {
    const build = find("command:local:Command", "r1-image-build");
    expect(build.inputs.create).toMatch(/\/relays\/r1\/collected\/[0-9a-f]{12} /);
    expect(build.inputs.triggers[0]).toMatchObject({ torrc: expect.stringMatching(/^[0-9a-f]{64}$/), identityKeys: expect.stringMatching(/^[0-9a-f]{64}$/) });
  });

  it("collects only on a rebuild: nothing on create, the SSH collector on update", () => {
    const collect = find("command:local:Command", "r1-state-collect");
    expect(collect.inputs.create).toMatch(/first deploy, nothing to collect/);
    expect(collect.inputs.create).not.toMatch(/ssh|collect-state/);
    expect(collect.inputs.update).toMatch(/cli\/collect-state\.ts --relay r1 --host 198\.51\.100\.10 --port 22/);
    expect(collect.inputs.triggers).toBeUndefined();
  });

  it("boots the VM from the uploaded ISO on ide2, with no disk", () => {
    const vm = find("proxmoxve:index/vmLegacy:VmLegacy", "r1-vm");
    const iso = find("proxmoxve:index/fileLegacy:FileLegacy", "r1-vm-iso");
    expect(vm.inputs.cdrom).toEqual({ interface: "ide2", fileId: `local:iso/${iso.inputs.sourceFile.fileName}` });
    expect(vm.inputs.disks).toEqual([]);
    expect(vm.inputs).toMatchObject({ bios: "ovmf", machine: "q35", vmId: 9100, started: true });
  });

  it("puts no key bytes in any command: only paths and digests", () => {
    const commands = registered.filter((r) => r.type === "command:local:Command");
    const text = JSON.stringify(commands.map((c) => c.inputs));
    // Any PEM private key, or a tor secret-key header ("ed25519v1-secret", "c25519v1").
    expect(text).not.toMatch(/PRIVATE KEY|v1-secret|c25519v/);
  });
});
