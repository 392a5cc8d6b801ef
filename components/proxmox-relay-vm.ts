import * as proxmoxve from "@muhlba91/pulumi-proxmoxve";
import * as pulumi from "@pulumi/pulumi";
import type { RelayConfig, StackConfig } from "../lib/config/config";
import { proxmoxRngs } from "../lib/render/vm-rng";
import { CLEAN_SHUTDOWN_SECONDS } from "../lib/local/qemu";
import { snpAmdSev, snpFirmwareFileName, snpKvmArguments, ukiFileName } from "../lib/proxmox/proxmox-snp";
import { generationOfVmDescription, relayTargetOf, vmDescription, type ReachContext } from "../lib/deploy/relay-reach";
import { observeVmsNow, type ObserveRequest, type VmObservation } from "../lib/proxmox/observe-vms";
import { plannedVmGeneration, unreadableVms, type PlannedVm } from "../lib/deploy/vm-generation";
import { PROXMOX_ROOT_PASSWORD_ENV, PROXMOX_TOKEN_ENV } from "../lib/deploy/relay-machine";
import { inProject } from "../lib/core/paths";
import { stepResource } from "./step";
import type { RelayVm, RelayVmArgs, VmDriver } from "./relay-vm";

const relayTags = (relay: RelayConfig) => ["diskless-relay", relay.exit.enabled ? "exit" : "non-exit"];

interface ProxmoxRelayVmArgs extends RelayVmArgs {
  datastore: string;
  bridge: string;
  /** ISO images of this relay kept on the datastore, the current one included. */
  keepIsos: number;
  secrets: Record<string, pulumi.Input<string>>;
  projectDir: string;
  /** The datastore's ISO directory on the node, where an SNP relay's firmware and UKI are found by path. */
  isoDir: string;
  /** The VM's generation, judged at plan time from what the API says of it (lib/deploy/vm-generation.ts). */
  planned: PlannedVm;
}

/** Reads the VMs of a Proxmox VE stack at plan time: one observation per VM asked about, in order. */
export type ObserveVms = (vms: ObserveRequest["vms"]) => VmObservation[];

/**
 * A diskless relay on Proxmox VE: its ISO uploaded over the HTTP API, and a
 * UEFI q35 VM with no disk that boots it from the CD-ROM and lives in RAM.
 * A new image replaces the VM (Proxmox applies a CD-ROM change live without
 * rebooting, so changing it in place would keep the old image running).
 *
 * An SEV-SNP relay boots the same image measured (lib/proxmox/proxmox-snp.ts): its
 * UKI and the pinned AmdSevX64 OVMF are uploaded as ISO content (.img names,
 * the only other extension Proxmox VE's ISO upload takes) and the VM's args
 * launch them as QEMU's -bios and -kernel with kernel hashes on. The ISO
 * stays on ide2 so the datastore still says what each VM runs. Setting args
 * and amd-sev needs root@pam with its password (proxmoxRootPassword).
 */
class ProxmoxRelayVm extends pulumi.ComponentResource implements RelayVm {
  readonly vmId: pulumi.Output<number>;
  readonly vmResource: proxmoxve.VmLegacy;
  readonly isoFileId: pulumi.Output<string>;
  readonly instance: pulumi.Output<string>;
  /** SEV-SNP relays: the QEMU arguments of the measured direct boot (Proxmox VE's args). */
  readonly kvmArguments?: pulumi.Output<string>;
  readonly ukiFileId?: pulumi.Output<string>;
  private readonly pruneArgs: { name: string; args: ProxmoxRelayVmArgs };

  constructor(name: string, args: ProxmoxRelayVmArgs, opts?: pulumi.ComponentResourceOptions) {
    super("diskless-relays:relay:ProxmoxRelayVm", name, {}, opts);
    const { relay, planned } = args;
    if (planned.warning) pulumi.log.warn(`relay ${relay.name}: ${planned.warning}`, this);
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

    const sev = relay.sev?.enabled ? relay.sev : undefined;
    if (sev) {
      // Named by its digest (pinned, and checked against the file at plan time): every SNP relay of a node boots the same file.
      const firmwareFile = snpFirmwareFileName(sev.ovmfSha256!);
      const ukiName = pulumi.output(args.isoName).apply(ukiFileName);
      const upload = (suffix: string, path: pulumi.Input<string>, fileName: pulumi.Input<string>) =>
        new proxmoxve.FileLegacy(`${name}-${suffix}`, { nodeName: relay.node, datastoreId: args.datastore, contentType: "iso", sourceFile: { path, fileName } }, { parent: this, retainOnDelete: true });
      const firmware = upload("ovmf", inProject(args.projectDir, sev.ovmf!), firmwareFile);
      const uki = upload("uki", args.ukiPath, ukiName);
      this.ukiFileId = uki.id;
      // Through the uploads' ids: the VM is created only once both files are on the datastore.
      this.kvmArguments = pulumi.all([ukiName, firmware.id, uki.id]).apply(([ukiFile]) => snpKvmArguments({ isoDir: args.isoDir, firmwareFile, ukiFile }));
    }

    this.vmResource = new proxmoxve.VmLegacy(
      name,
      {
        nodeName: relay.node,
        vmId: relay.vmId,
        name: relay.nickname.toLowerCase(),
        description: pulumi.output(args.isoName).apply((isoName) => vmDescription(relay, args.imageDigest, isoName, planned.generation)),
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
        ...(sev ? { amdSev: snpAmdSev(sev), kvmArguments: this.kvmArguments! } : {}),
        // A hardware RNG from the host's /dev/urandom (rng0), as the local stack's QEMU has it.
        rngs: proxmoxRngs(),
        started: true,
        onBoot: true,
        // Replaced or destroyed, the VM is shut down, not stopped: an ACPI shutdown (the relay stops tor,
        // whose connections close, and its agent pushes once more), with qemu-server's hard stop
        // (forceStop) only after this timeout.
        stopOnDestroy: false,
        timeoutShutdownVm: CLEAN_SHUTDOWN_SECONDS,
        purgeOnDestroy: true,
      },
      {
        parent: this,
        // Rolling order: a component's dependsOn does not reach its children.
        dependsOn: opts?.dependsOn,
        // The image is the CD-ROM (and for SNP relays the -kernel in args): a new one must replace the VM to take effect.
        replaceOnChanges: ["cdrom", "amdSev", "kvmArguments"],
        // vmId is fixed, so the old VM must go before the new one can be created.
        deleteBeforeReplace: true,
        // A VM the plan could not read (a preview without the API) keeps the generation the last up wrote.
        ...(planned.known ? {} : { ignoreChanges: ["description"] }),
      },
    );
    this.vmId = this.vmResource.vmId.apply((id) => id ?? relay.vmId);
    // The generation the VM has (its description, as written): a VM started again is a new instance, which the gate waits for.
    this.instance = pulumi.all([this.vmResource.id, iso.id, this.vmResource.description]).apply(([id, isoId, description]) => {
      const generation = generationOfVmDescription(description ?? "");
      return generation > 0 ? `${id}:${isoId}:${generation}` : `${id}:${isoId}`;
    });
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
          ...(this.ukiFileId ? { currentUkiVolid: this.ukiFileId } : {}),
        },
        secretEnvironment: args.secrets,
        triggers: [this.isoFileId, ...(this.ukiFileId ? [this.ukiFileId] : [])],
        projectDir: args.projectDir,
      },
      { parent: this, dependsOn: [gate] },
    );
  }
}

/**
 * Relays on Proxmox VE, through the proxmoxve provider. Each relay's VM is
 * read once at plan time (all of them in one request): a VM that stopped
 * since the last up is started again by this one.
 */
export function proxmoxVmDriver(config: StackConfig, context: ReachContext, options: { dryRun: boolean; observeVms?: ObserveVms }): VmDriver {
  const { projectDir } = context;
  const target = config.proxmox!;
  const vms = config.relays.map((relay) => ({ node: relay.node, vmId: relay.vmId }));
  const observe: ObserveVms = options.observeVms ?? ((asked) => observeVmsNow(projectDir, { connection: { endpoint: target.endpoint, verifyTls: target.verifyTls, apiToken: config.proxmoxApiToken! }, vms: asked }));
  const read = observe(vms).map((observation, i) => ({ vm: vms[i]!, observation }));
  const unreadable = unreadableVms(read, options.dryRun);
  if (unreadable.error) throw new pulumi.RunError(unreadable.error);
  if (unreadable.warning) pulumi.log.warn(unreadable.warning);
  const observed = new Map(read.map(({ vm, observation }) => [`${vm.node}/${vm.vmId}`, observation]));
  const plannedOf = (relay: RelayConfig) => plannedVmGeneration(observed.get(`${relay.node}/${relay.vmId}`) ?? { kind: "absent" }, relay);
  const apiToken = pulumi.secret(config.proxmoxApiToken!);
  const rootPassword = config.proxmoxRootPassword ? pulumi.secret(config.proxmoxRootPassword) : undefined;
  // Proxmox VE lets only root@pam with its password set args and amd-sev (SNP relays): the token cannot.
  const provider = new proxmoxve.Provider(
    "proxmox",
    rootPassword ? { endpoint: target.endpoint, username: "root@pam", password: rootPassword, insecure: !target.verifyTls } : { endpoint: target.endpoint, apiToken, insecure: !target.verifyTls },
  );
  const secrets: Record<string, pulumi.Input<string>> = { [PROXMOX_TOKEN_ENV]: apiToken, ...(rootPassword ? { [PROXMOX_ROOT_PASSWORD_ENV]: rootPassword } : {}) };
  return {
    spec: (relay) => relayTargetOf(config, relay, context),
    secrets,
    createVm: (name, args, opts) =>
      new ProxmoxRelayVm(name, { ...args, datastore: target.datastore, bridge: target.bridge, keepIsos: target.keepIsos, secrets, projectDir, isoDir: target.isoDir, planned: plannedOf(args.relay) }, { ...opts, provider }),
  };
}
