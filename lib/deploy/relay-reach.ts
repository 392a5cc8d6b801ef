/**
 * Where each relay runs and how the build host reaches it, from the stack
 * config alone: the target and channel specs the deployment hands its steps
 * (lib/steps/steps.ts), and what `npm run status` asks. One place, so the status
 * board asks exactly the machine and channel the rollout gate asked. Pure.
 */
import { join } from "node:path";
import { addressOf } from "../tor/addresses";
import type { ResolvedBroker } from "../broker/broker-endpoint";
import type { RelayConfig, StackConfig } from "../config/config";
import { inProject } from "../core/paths";
import { qemuServerSnpPolicy, snpFirmwareFileName } from "../proxmox/proxmox-snp";
import type { RelayChannel, RelayTarget } from "../steps/steps";
import { tapName, type TestnetNetwork } from "../config/testnet";

export interface ReachContext {
  projectDir: string;
  stack: string;
  /** The local stack's private network (config.testnet), read from its network.json. */
  testnet?: TestnetNetwork;
  broker?: ResolvedBroker;
}

/** The local stack's QEMU run directories: <project>/.runtime/<stack>/<relay>. */
const localRuntimeDir = (projectDir: string, stack: string) => join(projectDir, ".runtime", stack);

/** The relay's machine as the steps see it: a QEMU process of the local stack, or a Proxmox VE VM. */
export function relayTargetOf(config: StackConfig, relay: RelayConfig, context: ReachContext): RelayTarget {
  if (config.target === "qemu") {
    const testnet = context.testnet;
    if (!testnet) throw new Error("the local stack's relays live on its testnet: start it with npm run testnet");
    const broker = context.broker;
    return {
      kind: "qemu",
      runDir: join(localRuntimeDir(context.projectDir, context.stack), relay.name),
      mac: relay.mac.toLowerCase(),
      memoryMiB: relay.memoryMiB,
      cores: relay.cores,
      network: { kind: "bridge", netns: testnet.netns, bridge: testnet.bridge, tap: tapName(relay.vmId) },
      // Broker mode with simulated attestation: the secure processor SNP hardware would be, simulated beside QEMU
      // (TEST ONLY), measuring the booted ISO with the relay's own SEV settings.
      ...(broker?.simulatorDir && relay.sev?.enabled && relay.sev.ovmf
        ? // The simulator reports the policy qemu-server would launch the VM with, the one the measurement log records.
          { snp: { simulatorDir: broker.simulatorDir, ovmf: inProject(context.projectDir, relay.sev.ovmf), vcpuType: relay.sev.vcpuType ?? relay.cpuType, policy: qemuServerSnpPolicy(relay.sev) } }
        : {}),
    };
  }
  const proxmox = config.proxmox!;
  return {
    kind: "proxmox",
    endpoint: proxmox.endpoint,
    verifyTls: proxmox.verifyTls,
    node: relay.node,
    vmId: relay.vmId,
    datastore: proxmox.datastore,
    ...(relay.sev?.enabled ? { snp: { isoDir: proxmox.isoDir, firmwareFile: snpFirmwareFileName(relay.sev.ovmfSha256!) } } : {}),
  };
}

/** The pinned SSH channel to a running relay, without the host key (that belongs to the image it runs). */
export function relayChannelOf(config: StackConfig, relay: RelayConfig, target: RelayTarget, projectDir: string): Omit<RelayChannel, "hostPublicKey"> {
  return {
    host: relay.sshHost ?? addressOf(relay.ipv4.address),
    port: relay.sshPort ?? config.stateCollection.port,
    user: config.stateCollection.user,
    privateKeyFile: inProject(projectDir, config.stateCollection.privateKeyFile),
    connectTimeoutSeconds: config.stateCollection.connectTimeoutSeconds,
    // A relay on the local testnet's bridge is reached from inside its namespace.
    ...(target.kind === "qemu" && target.network.kind === "bridge" ? { netns: target.network.netns } : {}),
  };
}

/**
 * The VM's description on Proxmox VE: what the operator sees in its web
 * interface, how `npm run status` learns which image a VM was created with,
 * and where the VM's generation is kept (lib/deploy/vm-generation.ts): the
 * line is there only once a stopped VM was started again, so a VM that never
 * stopped keeps the description it always had.
 */
export const vmDescription = (relay: Pick<RelayConfig, "name" | "nickname">, imageDigest: string, isoName: string, generation = 0) =>
  `diskless Tor relay ${relay.name} (${relay.nickname})\nimage ${imageDigest}\niso ${isoName}${generation > 0 ? `\ngeneration ${generation}` : ""}`;

/** The generation in a VM description written by vmDescription: 0 without the line. */
export function generationOfVmDescription(description: string): number {
  return Number(/^generation ([1-9][0-9]{0,8})$/m.exec(description)?.[1] ?? 0);
}

/** The image digest in a VM description written by vmDescription; undefined for any other text. */
export function imageDigestOfVmDescription(description: string): string | undefined {
  return /^image ([0-9a-f]{64})$/m.exec(description)?.[1];
}
