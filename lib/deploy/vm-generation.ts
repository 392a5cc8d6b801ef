/**
 * Whether `pulumi up` must start a relay's Proxmox VE VM again, judged at
 * plan time from what the API says of it (lib/proxmox/observe-vms.ts reads it).
 * Pure.
 *
 * Why a generation: Pulumi diffs the program's inputs against its state and
 * reads nothing back unless asked (`--refresh`), so a VM that stopped since
 * the last up (powered off, a reboot inside an SNP guest, which Proxmox VE
 * turns into a power-off, a crash) looks unchanged. The plan reads the VM;
 * a stopped one gets the next generation, which goes into its description.
 * The description changes, the provider updates the VM in place and, as it
 * does after every update of a VM that should run, starts it
 * (bpg/terraform-provider-proxmox v0.111.1, vmFinalizePowerState). The
 * generation is also part of the VM's instance, so the rollout gate runs
 * again and waits until the relay is healthy.
 */
import { generationOfVmDescription } from "./relay-reach";
import type { VmObservation } from "../proxmox/observe-vms";

export interface PlannedVm {
  generation: number;
  /** false: the VM could not be read, and the plan keeps whatever the last up wrote. */
  known: boolean;
  /** For the operator, in preview and up. */
  warning?: string;
}

export function plannedVmGeneration(observation: VmObservation, vm: { node: string; vmId: number }): PlannedVm {
  switch (observation.kind) {
    case "absent":
      return { generation: 0, known: true };
    case "running":
      return { generation: generationOfVmDescription(observation.description), known: true };
    case "stopped":
      return {
        generation: generationOfVmDescription(observation.description) + 1,
        known: true,
        warning: `VM ${vm.vmId} on ${vm.node} is stopped since the last up; this update starts it again and waits at the gate`,
      };
    case "unreadable":
      return { generation: 0, known: false };
  }
}

/**
 * The VMs the plan could not read, in one message for the stack: a warning in
 * a preview (which can run where the API cannot be reached, as on a pull
 * request), an error for pulumi up, which would otherwise run blind.
 */
export function unreadableVms(read: { vm: { node: string; vmId: number }; observation: VmObservation }[], dryRun: boolean): { warning?: string; error?: string } {
  const byReason = new Map<string, string[]>();
  for (const { vm, observation } of read) {
    if (observation.kind !== "unreadable") continue;
    byReason.set(observation.reason, [...(byReason.get(observation.reason) ?? []), `VM ${vm.vmId} on ${vm.node}`]);
  }
  if (byReason.size === 0) return {};
  const what = [...byReason].map(([reason, vms]) => `${vms.join(", ")} (${reason})`).join("; ");
  return dryRun
    ? { warning: `cannot read from the Proxmox VE API: ${what}. This preview cannot tell whether those VMs stopped since the last up; pulumi up reads them again` }
    : { error: `cannot read from the Proxmox VE API: ${what}. pulumi up needs to know whether each VM stopped since the last up: npm run preflight checks the API, the token and the nodes` };
}
