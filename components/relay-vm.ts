import * as proxmoxve from "@muhlba91/pulumi-proxmoxve";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import type { RelayConfig } from "../lib/config";

/** What every relay VM target (Proxmox VE, or QEMU for the local stack) takes. */
export interface RelayVmArgs {
  relay: RelayConfig;
  imageDigest: string;
  isoName: string;
  isoPath: pulumi.Input<string>;
}

export interface RelayVmTarget {
  /** Where the running relay is, for the stack outputs. */
  readonly vmId: pulumi.Output<number | string>;
  /** The VM resource, so that rolling order can chain on it. */
  readonly machine: pulumi.Resource;
}

export interface ProxmoxRelayVmArgs extends RelayVmArgs {
  datastore: string;
  bridge: string;
  /** ISO images of this relay kept on the datastore for rollback, the current one included. */
  keepIsos: number;
  /** For pruning old ISOs over the HTTP API, as the provider is configured. */
  connection: { endpoint: string; apiToken: pulumi.Input<string>; verifyTls: boolean };
  projectDir: string;
}

const relayTags = (relay: RelayConfig) => ["diskless-relay", relay.exit.enabled ? "exit" : "non-exit"];

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
      // Earlier images stay on the datastore for rollback; the prune below
      // removes them once they fall out of the keepIsos window.
      { parent: this, retainOnDelete: true },
    );
    this.isoFileId = iso.id;

    this.machine = new proxmoxve.VmLegacy(
      name,
      {
        nodeName: relay.node,
        vmId: relay.vmId,
        name: relay.nickname.toLowerCase(),
        description: `diskless Tor relay ${relay.name} (${relay.nickname})\nimage ${args.imageDigest}\niso ${args.isoName}`,
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

    new command.local.Command(
      `${name}-prune-isos`,
      {
        dir: args.projectDir,
        create: pulumi.interpolate`node_modules/.bin/tsx cli/prune-isos.ts --node ${relay.node} --datastore ${args.datastore} --prefix relay-${relay.nickname}- --current ${iso.id} --keep ${args.keepIsos}`,
        environment: {
          PROXMOX_ENDPOINT: args.connection.endpoint,
          PROXMOX_API_TOKEN: pulumi.secret(args.connection.apiToken),
          PROXMOX_VERIFY_TLS: String(args.connection.verifyTls),
        },
        triggers: [args.imageDigest],
      },
      // Only once the VM runs the new image are the old ones expendable.
      { parent: this, dependsOn: [this.machine] },
    );
    this.registerOutputs({ vmId: this.vmId, isoFileId: this.isoFileId });
  }
}
