import * as pulumi from "@pulumi/pulumi";
import { join } from "node:path";
import type { StackConfig } from "../lib/config";
import { inProject, type PlannedRelay } from "../lib/fleet";
import { relayBuildEnvironment, relayImageDigest, relayImageInputs } from "../lib/image-inputs";
import type { BaseImage } from "./base-image";
import { RelayImage } from "./relay-image";
import type { RelayVmArgs, RelayVmTarget } from "./relay-vm";
import { type BaseSbom, RelaySbom } from "./sbom";
import { LaunchMeasurement } from "./launch-measurement";
import { StateCollection } from "./state-collection";

export interface RelayArgs {
  plan: PlannedRelay;
  config: StackConfig;
  base: BaseImage;
  baseSbom: BaseSbom;
  collectorPublicKey: string;
  /** Digest of the per-relay build scripts. */
  relayScripts: string;
  projectDir: string;
  buildRoot: string;
  artifactsDir: string;
  /** Makes the VM on this stack's target (Proxmox VE, or QEMU locally). */
  createVm: (name: string, args: RelayVmArgs, opts: pulumi.ComponentResourceOptions) => RelayVmTarget;
  /** VMs that must be done before this relay's VM is replaced (rolling order). */
  after: pulumi.Resource[];
}

/**
 * One relay's life: collect its state, build its image and SBOM, run it.
 * Collection → build → upload → VM, and only when one of its inputs changed.
 */
export class Relay extends pulumi.ComponentResource {
  readonly imageDigest: string;
  readonly image: RelayImage;
  readonly sbom: RelaySbom;
  readonly vm: RelayVmTarget;
  /** For SEV-SNP relays: the launch measurement their attestation reports must carry. */
  readonly launchMeasurement?: LaunchMeasurement;

  constructor(name: string, args: RelayArgs, opts?: pulumi.ComponentResourceOptions) {
    super("diskless-relays:relay:Relay", name, {}, opts);
    const { plan, config } = args;
    const environment = relayBuildEnvironment(plan, config, args.collectorPublicKey, args.projectDir);
    const inputs = relayImageInputs(plan, args.base.digest, environment, args.relayScripts);
    this.imageDigest = relayImageDigest(inputs);

    const collection = new StateCollection(
      `${name}-state`,
      {
        relay: plan.config.name,
        host: plan.config.sshHost ?? plan.config.ipv4.address.split("/")[0]!,
        port: plan.config.sshPort ?? config.stateCollection.port,
        user: config.stateCollection.user,
        privateKeyFile: config.stateCollection.privateKeyFile,
        hostPublicKeyFile: join(plan.keysDir, "ssh_host_ed25519_key.pub"),
        connectTimeoutSeconds: config.stateCollection.connectTimeoutSeconds,
        allowFreshOnionKeys: plan.config.allowFreshOnionKeys,
        imageDigest: this.imageDigest,
        projectDir: args.projectDir,
        buildRoot: args.buildRoot,
      },
      { parent: this },
    );

    this.image = new RelayImage(
      `${name}-image`,
      {
        relay: plan,
        baseDir: args.base.dir,
        inputs,
        environment,
        collectedDir: collection.dir,
        projectDir: args.projectDir,
        buildRoot: args.buildRoot,
      },
      { parent: this },
    );

    this.sbom = new RelaySbom(
      `${name}-sbom`,
      {
        relay: plan.config.name,
        nickname: plan.config.nickname,
        imageDigest: this.imageDigest,
        base: args.baseSbom,
        overlayFiles: this.image.overlayFiles,
        ukiPath: this.image.ukiPath,
        isoPath: this.image.isoPath,
        projectDir: args.projectDir,
        artifactsDir: args.artifactsDir,
      },
      { parent: this },
    );

    const sev = plan.config.sev;
    if (sev?.enabled && sev.ovmf) {
      this.launchMeasurement = new LaunchMeasurement(
        `${name}-snp`,
        {
          relay: plan.config.name,
          imageDigest: this.imageDigest,
          ukiPath: this.image.ukiPath,
          ovmf: inProject(args.projectDir, sev.ovmf),
          vcpus: plan.config.cores,
          vcpuType: sev.vcpuType ?? plan.config.cpuType,
          projectDir: args.projectDir,
          artifactsDir: args.artifactsDir,
        },
        { parent: this },
      );
    }

    this.vm = args.createVm(
      `${name}-vm`,
      { relay: plan.config, imageDigest: this.imageDigest, isoName: this.image.isoName, isoPath: this.image.isoPath },
      { parent: this, dependsOn: args.after },
    );
    this.registerOutputs({ imageDigest: this.imageDigest, isoName: this.image.isoName });
  }
}
