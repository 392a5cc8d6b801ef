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
import { parseStackConfig } from "../../lib/config/config";
import { planFleet } from "../../lib/plan/fleet";
import { initRelayKeys } from "../../lib/tor/key-store";
import { parseStepSpec, STEP_COMMAND, STEP_SPECS, type StepName } from "../../lib/steps/steps";
import { environmentOf, mockFleetResources, specOf } from "../support/graph-mocks";
import { privateTmpDir } from "../support/tmp";
import { TEST_OVMF, TEST_OVMF_SHA256 } from "../support/broker";
import { poll } from "../support/poll";

const registered = mockFleetResources("graph");

describe("the fleet's resource graph", () => {
  const dir = privateTmpDir("graph");
  const index = (type: string, name: string) => registered.findIndex((r) => r.type === type && r.name === name);
  const find = (type: string, name: string) => registered[index(type, name)]!;
  const commands = () => registered.filter((r) => r.type === "command:local:Command");
  let r1Fingerprint = "";
  const askedVms: { node: string; vmId: number }[] = [];

  beforeAll(async () => {
    for (const [name, nickname] of [["r1", "GraphRelayOne"], ["r2", "GraphRelayTwo"]] as const) initRelayKeys(join(dir, "keys"), name, { nickname });
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "keys", "collector")]);
    const config = parseStackConfig({
      proxmox: { endpoint: "https://pve.example.net:8006", nodes: ["pve1"], datastore: "local", bridge: "vmbr0" },
      proxmoxApiToken: "root@pam!graph=0a1b",
      // r2 is an SEV-SNP relay: root@pam's password sets its args and amd-sev.
      proxmoxRootPassword: "graph root password",
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
        // r1 exposes its MetricsPort to a Prometheus server; r2 does not.
        ...(name === "r1" ? { metrics: { allowFrom: "203.0.113.5" } } : {}),
        ...(name === "r2" ? { cpuType: "EPYC-v4", cores: 2, sev: { enabled: true, ovmf: TEST_OVMF, ovmfSha256: TEST_OVMF_SHA256 } } : {}),
      })),
    });
    const fleet = planFleet(config, { projectDir: dir, now: new Date() });
    r1Fingerprint = fleet.relays[0]!.identity.rsaFingerprint;
    const { deployFleet } = await import("../../components/fleet");
    // A fixed package set: the graph does not depend on what Debian serves today.
    const basePackages = { sources: ["deb http://deb.debian.org/debian bookworm main"], packages: ["tor 0.4.9.11-1 amd64"] };
    // What the plan reads of the VMs (lib/proxmox/observe-vms.ts, against the API double in deploy.test.ts): r1 was started
    // again once before and is stopped now; r2 runs, never stopped.
    const observeVms = (vms: { node: string; vmId: number }[]) => {
      askedVms.push(...vms);
      return vms.map((vm) => (vm.vmId === 9100 ? { kind: "stopped" as const, description: "diskless Tor relay r1 (GraphRelayOne)\nimage x\niso y\ngeneration 2" } : { kind: "running" as const, description: "diskless Tor relay r2" }));
    };
    const outputs = deployFleet(config, { ...fleet, basePackages }, { projectDir: process.cwd(), project: "diskless-relays", stack: "graph", dryRun: true, observeVms });
    await new Promise<void>((resolve) => pulumi.all(Object.values(outputs).flatMap((o) => [o.iso, o.vmId])).apply(() => resolve()));
    // The gates and prunes register once the VMs they wait for resolve.
    await poll(() => index("command:local:Command", "r2-vm-prune-isos") >= 0, { seconds: 5 });
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
    expect(Object.keys(environmentOf(collectCommand)).sort()).toEqual(["DISKLESS_RELAYS_STEP", "PROXMOX_API_TOKEN", "PROXMOX_ROOT_PASSWORD"]);
  });

  it("starts a VM found stopped again: its next generation in its description, and a new instance the gate waits for", () => {
    expect(askedVms).toEqual([
      { node: "pve1", vmId: 9100 },
      { node: "pve1", vmId: 9101 },
    ]);
    const r1 = find("proxmoxve:index/vmLegacy:VmLegacy", "r1-vm").inputs;
    expect(r1.description).toMatch(/\ngeneration 3$/);
    expect(r1.started).toBe(true);
    // A VM that runs keeps its description: no generation line, and nothing to update.
    expect(find("proxmoxve:index/vmLegacy:VmLegacy", "r2-vm").inputs.description).not.toMatch(/generation/);
    expect(find("command:local:Command", "r1-rollout-gate").inputs.triggers[1]).toMatch(/^r1-vm-id:local:iso\/relay-Mock-[0-9a-f-]+\.iso:3$/);
    expect(find("command:local:Command", "r2-rollout-gate").inputs.triggers[1]).toMatch(/^r2-vm-id:local:iso\/relay-Mock-[0-9a-f-]+\.iso$/);
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

  it("gives the VM a virtio RNG from the host's /dev/urandom, and replaces it by an ACPI shutdown with the hard stop only after a timeout", () => {
    const vm = find("proxmoxve:index/vmLegacy:VmLegacy", "r1-vm");
    expect(vm.inputs.rngs).toEqual([{ source: "/dev/urandom", maxBytes: 1024, period: 1000 }]);
    // stopOnDestroy false: the provider's delete asks for status/shutdown with forceStop and this timeout.
    expect(vm.inputs).toMatchObject({ stopOnDestroy: false, timeoutShutdownVm: 60 });
  });

  it("boots an SNP relay measured: its UKI and the pinned firmware uploaded before the VM, launched by args with kernel hashes", () => {
    const order = [
      index("proxmoxve:index/fileLegacy:FileLegacy", "r2-vm-ovmf"),
      index("proxmoxve:index/fileLegacy:FileLegacy", "r2-vm-uki"),
      index("proxmoxve:index/vmLegacy:VmLegacy", "r2-vm"),
    ];
    expect(order.every((i) => i >= 0), JSON.stringify(order)).toBe(true);
    expect(order[2]).toBeGreaterThan(Math.max(order[0]!, order[1]!));
    const vm = find("proxmoxve:index/vmLegacy:VmLegacy", "r2-vm");
    const iso = find("proxmoxve:index/fileLegacy:FileLegacy", "r2-vm-iso").inputs.sourceFile.fileName as string;
    const uki = find("proxmoxve:index/fileLegacy:FileLegacy", "r2-vm-uki").inputs;
    const ovmf = find("proxmoxve:index/fileLegacy:FileLegacy", "r2-vm-ovmf").inputs;
    expect(uki).toMatchObject({ contentType: "iso", sourceFile: { fileName: iso.replace(/\.iso$/, ".efi.img") } });
    expect(uki.sourceFile.path).toMatch(/relay\.efi$/);
    expect(ovmf).toMatchObject({ contentType: "iso", sourceFile: { path: TEST_OVMF, fileName: `ovmf-amdsev-${TEST_OVMF_SHA256.slice(0, 16)}.img` } });
    expect(vm.inputs.amdSev).toEqual({ type: "snp", noDebug: true, allowSmt: false, kernelHashes: true, noKeySharing: false });
    expect(vm.inputs.kvmArguments).toBe(`-bios /var/lib/vz/template/iso/${ovmf.sourceFile.fileName} -kernel /var/lib/vz/template/iso/${uki.sourceFile.fileName}`);
    expect(find("proxmoxve:index/vmLegacy:VmLegacy", "r1-vm").inputs.kvmArguments).toBeUndefined();
    // The published measurement is for that launch: cores vCPUs of cpuType, qemu-server's policy.
    expect(specOf(find("command:local:Command", "r2-snp-measure"))).toMatchObject({ vcpus: 2, vcpuType: "EPYC-v4", policy: "0x20000", ovmf: TEST_OVMF });
    // The provider logs in as root@pam with its password: Proxmox VE refuses args and amd-sev to any token.
    const provider = registered.find((r) => r.type === "pulumi:providers:proxmoxve")!;
    // The password stays a secret in the provider's inputs.
    expect(provider.inputs).toMatchObject({ username: "root@pam", password: { value: "graph root password" } });
    expect(provider.inputs.apiToken).toBeUndefined();
  });

  it("puts no key bytes in any command: only paths, texts and digests", () => {
    const text = JSON.stringify(commands().map((c) => c.inputs));
    // Any PEM private key, or a tor secret-key header ("ed25519v1-secret", "c25519v1").
    expect(text).not.toMatch(/PRIVATE KEY|v1-secret|c25519v/);
  });

  it("writes the fleet's Prometheus files once, listing the relays with a MetricsPort and their labels", () => {
    const writes = commands().filter((c) => c.inputs.create === `${STEP_COMMAND} write-monitoring`);
    expect(writes.map((c) => c.name)).toEqual(["monitoring-write"]);
    expect(writes[0]!.inputs.delete).toBe(`${STEP_COMMAND} remove-monitoring`);
    const spec = specOf(writes[0]!);
    expect(spec.outDir).toBe(join(process.cwd(), "artifacts", "monitoring", "graph"));
    expect(spec.stack).toBe("graph");
    expect(spec.targets).toEqual([
      { relay: "r1", nickname: "GraphRelayOne", fingerprint: r1Fingerprint, node: "pve1", exit: false, host: "198.51.100.10", port: 9035 },
    ]);
  });
});
