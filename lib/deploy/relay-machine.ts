/**
 * The machine a relay runs on, whichever the target: a Proxmox VE VM or the
 * local stack's QEMU process. What the steps ask of it: does the relay run,
 * what did its console say last, and boot this image on it instead.
 * I/O: the Proxmox VE API, or QEMU on this machine.
 */
import { existsSync, readFileSync } from "node:fs";
import { basename } from "node:path";
import { consoleLogOf, runningPid, startLocalVm } from "../local/local-vm";
import { bootIso, uploadIso, vmState, type ProxmoxConnection } from "../proxmox/proxmox-api";
import { snpKvmArguments, ukiFileName } from "../proxmox/proxmox-snp";
import type { BuiltImage } from "../image/relay-build";
import type { RelayTarget } from "../steps/steps";

export interface RelayMachine {
  /** "VM 9101 on pve1", "the QEMU process of .runtime/local/local-exit". */
  readonly where: string;
  state(): Promise<"absent" | "stopped" | "running">;
  /** The last lines of the serial console, where the target can show it. */
  consoleTail(lines: number): string[];
  /** Boots the image on this machine in place of what runs there now. */
  boot(image: BuiltImage): Promise<void>;
}

/** The Proxmox VE API token reaches steps in the environment, never in a spec or on a command line. */
export const PROXMOX_TOKEN_ENV = "PROXMOX_API_TOKEN";
/** root@pam's password, for stacks with SEV-SNP relays: only it may change a VM's args (a rollback's -kernel). */
export const PROXMOX_ROOT_PASSWORD_ENV = "PROXMOX_ROOT_PASSWORD";

/** How a step logs in to Proxmox VE: root@pam's password when the stack has one (SNP relays), else the API token. */
export function proxmoxConnection(target: { endpoint: string; verifyTls: boolean }, env: NodeJS.ProcessEnv = process.env): ProxmoxConnection {
  const rootPassword = env[PROXMOX_ROOT_PASSWORD_ENV];
  if (rootPassword) return { endpoint: target.endpoint, verifyTls: target.verifyTls, rootPassword };
  const apiToken = env[PROXMOX_TOKEN_ENV];
  if (!apiToken) throw new Error(`${PROXMOX_TOKEN_ENV} is not set: the step needs the Proxmox VE API token`);
  return { endpoint: target.endpoint, verifyTls: target.verifyTls, apiToken };
}

export function relayMachine(target: RelayTarget, env: NodeJS.ProcessEnv = process.env): RelayMachine {
  if (target.kind === "qemu") {
    return {
      where: `the QEMU process of ${target.runDir}`,
      state: async () => (runningPid(target.runDir) !== undefined ? "running" : "absent"),
      consoleTail: (lines) => {
        const log = consoleLogOf(target.runDir);
        return existsSync(log) ? readFileSync(log, "latin1").replace(/\r/g, "").trimEnd().split("\n").slice(-lines) : [];
      },
      boot: async (image) => {
        await startLocalVm(target, image.iso);
      },
    };
  }
  const connection = proxmoxConnection(target, env);
  return {
    where: `VM ${target.vmId} on ${target.node}`,
    state: () => vmState(connection, target.node, target.vmId),
    // The serial console is a socket on the node; the relay's own tor log comes with its health answer.
    consoleTail: () => [],
    boot: async (image) => {
      const volid = await uploadIso(connection, target.node, target.datastore, image.iso);
      // An SNP relay boots its UKI measured: it goes up beside the ISO, and args names it.
      const snp = target.snp;
      let args: string | undefined;
      if (snp) {
        const ukiFile = ukiFileName(basename(image.iso));
        await uploadIso(connection, target.node, target.datastore, image.uki, ukiFile);
        args = snpKvmArguments({ ...snp, ukiFile });
      }
      await bootIso(connection, target.node, target.vmId, volid, args);
    },
  };
}
