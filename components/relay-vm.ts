import * as proxmoxve from "@muhlba91/pulumi-proxmoxve";
import * as pulumi from "@pulumi/pulumi";
import type { RelayConfig, StackConfig } from "../lib/config";
import { PROXMOX_TOKEN_ENV } from "../lib/relay-targets";
import type { RelayTarget } from "../lib/steps";
import { stepResource } from "./step";

/** What every relay VM target (Proxmox VE, or QEMU for the local stack) takes. */
export interface RelayVmArgs {
  relay: RelayConfig;
  imageDigest: string;
  isoName: pulumi.Input<string>;
  isoPath: pulumi.Input<string>;
  target: RelayTarget;
}

export interface RelayVmTarget {
  /** Where the running relay is, for the stack outputs. */
  readonly vmId: pulumi.Output<number | string>;
  /** The VM resource: the rollout gate waits for it. */
  readonly machine: pulumi.Resource;
  /** Changes whenever the machine is created anew: the rollout gate runs again then. */
  readonly instance: pulumi.Output<string>;
  /** Work that may only happen once the relay is healthy on its new image. */
  afterRollout(gate: pulumi.Resource): void;
}

/** Where relays run, as the components and the steps need it. */
export interface RelayTargetKind {
  /** The target as the steps see it (lib/steps.ts). */
  spec(relay: RelayConfig): RelayTarget;
  /** Secrets the steps need to reach the target, each in its own environment variable. */
  secrets: Record<string, pulumi.Input<string>>;
  createVm(name: string, args: RelayVmArgs, opts: pulumi.ComponentResourceOptions): RelayVmTarget;
}

const relayTags = (relay: RelayConfig) => ["diskless-relay", relay.exit.enabled ? "exit" : "non-exit"];

export interface ProxmoxRelayVmArgs extends RelayVmArgs {
  datastore: string;
  bridge: string;
  /** ISO images of this relay kept on the datastore, the current one included. */
  keepIsos: number;
  secrets: Record<string, pulumi.Input<string>>;
  projectDir: string;
}

/**
 * A diskless relay on Proxmox VE: its ISO uploaded over the HTTP API, and a
 * UEFI q35 VM with no disk that boots it from the CD-ROM and lives in RAM.
 * A new image replaces the VM (Proxmox applies a CD-ROM change live without
 * rebooting, so changing it in place would keep the old image running).
 */
export class ProxmoxRelayVm extends pulumi.ComponentResource implements RelayVmTarget {
  readonly vmId: pulumi.Output<number>;
  readonly machine: proxmoxve.VmLegacy;
  readonly isoFileId: pulumi.Output<string>;
  readonly instance: pulumi.Output<string>;
  private readonly pruneArgs: { name: string; args: ProxmoxRelayVmArgs };

  constructor(name: string, args: ProxmoxRelayVmArgs, opts?: pulumi.ComponentResourceOptions) {
    super("diskless-relays:relay:ProxmoxRelayVm", name, {}, opts);
    const { relay } = args;
    const iso = new proxmoxve.FileLegacy(
      `${name}-iso`,
      {
        nodeName: relay.node,
        datastoreId: args.datastore,
        contentType: "iso",
        sourceFile: { path: args.isoPath, fileName: args.isoName },
      },
      // Earlier images stay on the datastore; the prune after a healthy
      // rollout removes them once they fall out of the keepIsos window.
      { parent: this, retainOnDelete: true },
    );
    this.isoFileId = iso.id;

    this.machine = new proxmoxve.VmLegacy(
      name,
      {
        nodeName: relay.node,
        vmId: relay.vmId,
        name: relay.nickname.toLowerCase(),
        description: pulumi.interpolate`diskless Tor relay ${relay.name} (${relay.nickname})\nimage ${args.imageDigest}\niso ${args.isoName}`,
        tags: relayTags(relay),
        bios: "ovmf",
        machine: "q35",
        operatingSystem: { type: "l26" },
        // No disk at all: the bridge would otherwise add its default 8 GB scsi0.
        disks: [],
        // (cdrom.enabled is deprecated and never read back: setting it is a perpetual diff.)
        cdrom: { interface: "ide2", fileId: iso.id },
        bootOrders: ["ide2"],
        memory: { dedicated: relay.memoryMiB },
        cpu: { cores: relay.cores, sockets: 1, type: relay.cpuType },
        networkDevices: [
          {
            model: "virtio",
            bridge: relay.bridge ?? args.bridge,
            macAddress: relay.mac.toUpperCase(),
            firewall: false,
            ...(relay.vlan !== undefined ? { vlanId: relay.vlan } : {}),
          },
        ],
        serialDevices: [{ device: "socket" }],
        vga: { type: "serial0" },
        agent: { enabled: false },
        ...(relay.sev?.enabled ? { amdSev: { type: "snp", noDebug: relay.sev.noDebug, allowSmt: relay.sev.allowSmt } } : {}),
        started: true,
        onBoot: true,
        stopOnDestroy: true,
        purgeOnDestroy: true,
      },
      {
        parent: this,
        // Rolling order: a component's dependsOn does not reach its children.
        dependsOn: opts?.dependsOn,
        // The image is the CD-ROM: a new one must replace the VM to take effect.
        replaceOnChanges: ["cdrom", "amdSev"],
        // vmId is fixed, so the old VM must go before the new one can be created.
        deleteBeforeReplace: true,
      },
    );
    this.vmId = this.machine.vmId.apply((id) => id ?? relay.vmId);
    this.instance = pulumi.interpolate`${this.machine.id}:${iso.id}`;
    this.pruneArgs = { name, args };
    this.registerOutputs({ vmId: this.vmId, isoFileId: this.isoFileId });
  }

  /** Old ISOs are expendable only once the relay is healthy on the new one. */
  afterRollout(gate: pulumi.Resource): void {
    const { name, args } = this.pruneArgs;
    const target = args.target;
    if (target.kind !== "proxmox") return;
    stepResource(
      `${name}-prune-isos`,
      {
        step: "prune-isos",
        spec: {
          endpoint: target.endpoint,
          verifyTls: target.verifyTls,
          node: args.relay.node,
          datastore: args.datastore,
          nickname: args.relay.nickname,
          keep: args.keepIsos,
          currentVolid: this.isoFileId,
        },
        secretEnvironment: args.secrets,
        triggers: [this.isoFileId],
        projectDir: args.projectDir,
      },
      { parent: this, dependsOn: [gate] },
    );
  }
}

/** Relays on Proxmox VE, through the proxmoxve provider. */
export function proxmoxTarget(config: StackConfig, projectDir: string): RelayTargetKind {
  const target = config.proxmox!;
  const apiToken = pulumi.secret(config.proxmoxApiToken!);
  const provider = new proxmoxve.Provider("proxmox", { endpoint: target.endpoint, apiToken, insecure: !target.verifyTls });
  const secrets = { [PROXMOX_TOKEN_ENV]: apiToken };
  return {
    spec: (relay) => ({ kind: "proxmox", endpoint: target.endpoint, verifyTls: target.verifyTls, node: relay.node, vmId: relay.vmId, datastore: target.datastore }),
    secrets,
    createVm: (name, args, opts) =>
      new ProxmoxRelayVm(name, { ...args, datastore: target.datastore, bridge: target.bridge, keepIsos: target.keepIsos, secrets, projectDir }, { ...opts, provider }),
  };
}
