import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { join } from "node:path";
import type { RelayVmArgs, RelayVmTarget } from "./relay-vm";

export interface LocalRelayVmArgs extends RelayVmArgs {
  /** Git-ignored runtime directory: <runtimeDir>/<relay>/ holds the pid file and the console log. */
  runtimeDir: string;
  projectDir: string;
  /**
   * Host ports on 127.0.0.1 forwarded to the relay's SSH server (which listens
   * on the same port inside, as its network config says) and its ORPort.
   */
  sshPort: number;
  orPort: number;
}

/**
 * The local stack's stand-in for a Proxmox VE VM: the same relay ISO booted by
 * QEMU with the same layout (q35, OVMF, no disk, CD-ROM on ide2), on this
 * machine. A new image replaces the VM; deleting it stops QEMU and removes its
 * runtime files.
 */
export class LocalRelayVm extends pulumi.ComponentResource implements RelayVmTarget {
  readonly vmId: pulumi.Output<string>;
  readonly machine: command.local.Command;
  readonly consoleLog: string;

  constructor(name: string, args: LocalRelayVmArgs, opts?: pulumi.ComponentResourceOptions) {
    super("diskless-relays:relay:LocalRelayVm", name, {}, opts);
    const { relay } = args;
    const runDir = join(args.runtimeDir, relay.name);
    this.consoleLog = join(runDir, "console.log");
    const cli = "node_modules/.bin/tsx cli/local-vm.ts";
    this.machine = new command.local.Command(
      name,
      {
        dir: args.projectDir,
        create: pulumi.interpolate`${cli} start --run-dir ${runDir} --iso ${args.isoPath} --mac ${relay.mac} --memory ${relay.memoryMiB} --cores ${relay.cores} --forward ${args.sshPort}:${args.sshPort} --forward ${args.orPort}:${relay.orPort} --guest-address ${relay.ipv4.address.split("/")[0]}`,
        delete: `${cli} stop --run-dir ${runDir}`,
        triggers: [args.imageDigest, relay.memoryMiB, relay.cores, relay.mac, args.sshPort, args.orPort],
      },
      {
        parent: this,
        dependsOn: opts?.dependsOn,
        // The forwarded ports are the VM's fixed identity here, as vmId is on Proxmox.
        deleteBeforeReplace: true,
      },
    );
    this.vmId = this.machine.stdout.apply((out) => /pid (\d+)/.exec(out)?.[1] ?? "");
    this.registerOutputs({ vmId: this.vmId, consoleLog: this.consoleLog });
  }
}
