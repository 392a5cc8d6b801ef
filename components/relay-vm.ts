/**
 * The VM a relay runs in, whichever the stack's target: what the relay
 * component asks of a driver, and what a driver hands back.
 */
import type * as pulumi from "@pulumi/pulumi";
import type { RelayConfig } from "../lib/config/config";
import type { RelayTarget } from "../lib/steps/steps";

/** What every driver (Proxmox VE, or QEMU for the local stack) makes a relay's VM from. */
export interface RelayVmArgs {
  relay: RelayConfig;
  imageDigest: string;
  isoName: pulumi.Input<string>;
  isoPath: pulumi.Input<string>;
  /** The UKI inside the ISO: an SEV-SNP relay boots it directly, measured. */
  ukiPath: pulumi.Input<string>;
  target: RelayTarget;
}

/** A relay's VM, as a driver made it. */
export interface RelayVm {
  /** Where the running relay is, for the stack outputs. */
  readonly vmId: pulumi.Output<number | string>;
  /** The VM resource: the rollout gate waits for it. */
  readonly vmResource: pulumi.Resource;
  /** Changes whenever the VM is created anew: the rollout gate runs again then. */
  readonly instance: pulumi.Output<string>;
  /** Work that may only happen once the relay is healthy on its new image. */
  afterRollout(gate: pulumi.Resource): void;
}

/**
 * The driver for the stack's target (config `target`: where its relays run):
 * it says where each relay runs as the steps see it, and makes its VM there.
 * Drivers: components/proxmox-relay-vm.ts, components/local-relay-vm.ts.
 */
export interface VmDriver {
  /** The target as the steps see it (lib/steps/steps.ts). */
  spec(relay: RelayConfig): RelayTarget;
  /** Secrets the steps need to reach the target, each in its own environment variable. */
  secrets: Record<string, pulumi.Input<string>>;
  createVm(name: string, args: RelayVmArgs, opts: pulumi.ComponentResourceOptions): RelayVm;
}
