import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { join } from "node:path";
import type { StackConfig } from "../lib/config/config";
import { relayTargetOf, type ReachContext } from "../lib/deploy/relay-reach";
import { parseStepOutput, type RelayTarget } from "../lib/steps/steps";
import type { RelayVm, RelayVmArgs, VmDriver } from "./relay-vm";
import { stepResource } from "./step";
import { plannedGeneration } from "../lib/local/local-vm";

interface LocalRelayVmArgs extends RelayVmArgs {
  projectDir: string;
}

/**
 * The local stack's stand-in for a Proxmox VE VM: the same relay ISO booted by
 * QEMU with the same layout (q35, OVMF, no disk, CD-ROM on ide2, a NIC on a
 * bridge), on this machine. A new image replaces the VM; deleting it stops QEMU and removes its
 * runtime files.
 */
class LocalRelayVm extends pulumi.ComponentResource implements RelayVm {
  readonly vmId: pulumi.Output<string>;
  readonly vmResource: command.local.Command;
  readonly instance: pulumi.Output<string>;
  readonly consoleLog: string;

  constructor(name: string, args: LocalRelayVmArgs, opts?: pulumi.ComponentResourceOptions) {
    super("diskless-relays:relay:LocalRelayVm", name, {}, opts);
    const target = args.target as Extract<RelayTarget, { kind: "qemu" }>;
    this.consoleLog = join(target.runDir, "console.log");
    // A QEMU that died since the last up is started again by this one: its generation moves on.
    const planned = plannedGeneration(target.runDir);
    if (planned.gone) pulumi.log.warn(`relay ${args.relay.name}: ${planned.gone}; this update starts it again (its machine is replaced) and waits at the gate`, this);
    this.vmResource = stepResource(
      name,
      {
        step: "start-local-vm",
        onDelete: "stop-local-vm",
        spec: { target, iso: args.isoPath, generation: planned.generation },
        triggers: [args.isoPath, target, planned.generation],
        projectDir: args.projectDir,
      },
      {
        parent: this,
        dependsOn: opts?.dependsOn,
        // The forwarded ports are the VM's fixed identity here, as vmId is on Proxmox.
        deleteBeforeReplace: true,
      },
    );
    this.instance = this.vmResource.stdout;
    this.vmId = this.vmResource.stdout.apply((out) => String(parseStepOutput("start-local-vm", out)));
    this.registerOutputs({ vmId: this.vmId, consoleLog: this.consoleLog });
  }

  afterRollout(): void {
    // ISOs live in the build directory, which keeps what the relay records need.
  }
}

/** Relays under QEMU on this machine (the local stack), each on a tap device of the testnet's bridge (lib/deploy/relay-reach.ts). */
export function qemuVmDriver(config: StackConfig, context: ReachContext): VmDriver {
  return {
    spec: (relay) => relayTargetOf(config, relay, context),
    secrets: {},
    createVm: (name, args, opts) => new LocalRelayVm(name, { ...args, projectDir: context.projectDir }, opts),
  };
}
