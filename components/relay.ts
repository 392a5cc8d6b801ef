import * as pulumi from "@pulumi/pulumi";
import { renderAgentConfig } from "../lib/broker/broker-agent";
import { brokerAdminSpec, type ResolvedBroker } from "../lib/broker/broker-endpoint";
import { BrokerEnrolment } from "./broker-enrolment";
import { servesPublicAttestation, type StackConfig } from "../lib/config/config";
import { type PlannedRelay } from "../lib/plan/fleet";
import { inProject } from "../lib/core/paths";
import { relayImageDigest, relayImageInputs, relayImageTexts, type BrokerImageParts } from "../lib/plan/image-inputs";
import type { BaseImage } from "./base-image";
import { LaunchMeasurement } from "./launch-measurement";
import { qemuServerSnpPolicy } from "../lib/proxmox/proxmox-snp";
import { relayChannelOf } from "../lib/deploy/relay-reach";
import { RelayImage } from "./relay-image";
import { RelayRollout } from "./relay-rollout";
import type { VmDriver, RelayVm } from "./relay-vm";
import { type BaseSbom, RelaySbom } from "./sbom";
import { StateCollection } from "./state-collection";
import { publishedBuildRecord, relayBuildDir } from "../lib/config/build-layout";

/** The recipe carries the agent's path; its digest is an input of the image digest only. */
const omitDigest = ({ agentSha256: _digest, ...parts }: BrokerImageParts) => parts;

export interface RelayArgs {
  plan: PlannedRelay;
  config: StackConfig;
  base: BaseImage;
  baseSbom: BaseSbom;
  collectorPublicKey: string;
  /** Digest of the per-relay build code. */
  relayScripts: string;
  projectDir: string;
  /** This stack's private build root; the relay's directory is <buildRoot>/relays/<name>. */
  buildRoot: string;
  artifactsDir: string;
  /** The driver that makes the relay's VM where the stack's relays run (its target: Proxmox VE, or QEMU locally). */
  driver: VmDriver;
  /** Broker mode: the key broker the relay's image fetches its keys from, and what the image carries instead of keys. */
  broker?: ResolvedBroker;
  brokerParts?: BrokerImageParts;
  /** Rollout gates of the relays that must be healthy before this relay's VM is replaced. */
  after: pulumi.Resource[];
}

/**
 * One relay's life: collect its state, build its image and SBOM, run it,
 * and wait until it is healthy. Collection → build → upload → VM → gate,
 * and only when one of its inputs changed.
 */
export class Relay extends pulumi.ComponentResource {
  readonly imageDigest: string;
  readonly image: RelayImage;
  readonly sbom: RelaySbom;
  readonly vm: RelayVm;
  readonly rollout: RelayRollout;
  /** Broker mode: the relay's keys and current image at the key broker. */
  readonly enrolment?: BrokerEnrolment;
  /** For SEV-SNP relays: the launch measurement their attestation reports must carry. */
  readonly launchMeasurement?: LaunchMeasurement;

  constructor(name: string, args: RelayArgs, opts?: pulumi.ComponentResourceOptions) {
    super("diskless-relays:relay:Relay", name, {}, opts);
    const { plan, config } = args;
    const relayDir = relayBuildDir(args.buildRoot, plan.config.name);
    const { broker } = args;
    const baseTexts = relayImageTexts(plan, config, args.collectorPublicKey, args.projectDir, broker !== undefined);
    // Broker mode: the agent, what it pins and where it finds the broker, instead of any key.
    const brokerParts = args.brokerParts;
    const publicAttestation = (imageDigest: string) =>
      servesPublicAttestation(config, plan.config)
        ? { port: plan.config.sev!.publicAttestation.port, buildRecord: publishedBuildRecord(plan.config.name, imageDigest) }
        : undefined;
    const agentConfig = (imageDigest: string) => {
      const served = publicAttestation(imageDigest);
      return renderAgentConfig({ relay: plan.config.name, imageDigest, broker: broker!, withCa: brokerParts?.caPem !== undefined, ...(served ? { publicAttestation: served } : {}) });
    };
    const inputs = relayImageInputs(plan, args.base.digest, baseTexts, args.relayScripts, brokerParts ? { parts: brokerParts, agentConfigFacts: agentConfig("0".repeat(64)) } : undefined);
    this.imageDigest = relayImageDigest(inputs);
    const texts = brokerParts ? { ...baseTexts, broker: { ...omitDigest(brokerParts), agentConfig: agentConfig(this.imageDigest) } } : baseTexts;
    const target = args.driver.spec(plan.config);
    const signingKey = config.image.signingKeyFile ? inProject(args.projectDir, config.image.signingKeyFile) : undefined;
    const sev = plan.config.sev;
    const launch = sev?.enabled && sev.ovmf ? { ovmf: inProject(args.projectDir, sev.ovmf), vcpus: plan.config.cores, vcpuType: sev.vcpuType ?? plan.config.cpuType } : undefined;
    const brokerWatch = broker
      ? { admin: brokerAdminSpec(broker), pushIntervalSeconds: broker.pushIntervalSeconds, attestation: broker.attestation, ...(launch ? { launch } : {}) }
      : undefined;
    const channel = relayChannelOf(config, plan.config, target, args.projectDir);

    const collection = new StateCollection(
      `${name}-state`,
      {
        relay: plan.config.name,
        imageDigest: this.imageDigest,
        channel: { ...channel, hostPublicKey: plan.sshHostPublicKey },
        target,
        targetSecrets: args.driver.secrets,
        allowFreshOnionKeys: plan.config.allowFreshOnionKeys,
        ...(brokerWatch ? { broker: brokerWatch } : {}),
        projectDir: args.projectDir,
        relayDir,
      },
      { parent: this },
    );

    this.image = new RelayImage(
      `${name}-image`,
      { relay: plan, baseDir: args.base.dir, inputs, texts, collectedDir: collection.dir, collection: collection.summary, projectDir: args.projectDir, relayDir },
      { parent: this },
    );

    this.sbom = new RelaySbom(
      `${name}-sbom`,
      {
        relay: plan.config.name,
        nickname: plan.config.nickname,
        imageDigest: this.imageDigest,
        base: args.baseSbom,
        imageDir: this.image.dir,
        built: this.image.built,
        projectDir: args.projectDir,
        artifactsDir: args.artifactsDir,
        ...(signingKey ? { signingKey } : {}),
      },
      { parent: this },
    );

    if (sev?.enabled && sev.ovmf) {
      this.launchMeasurement = new LaunchMeasurement(
        `${name}-snp`,
        {
          relay: plan.config.name,
          imageDigest: this.imageDigest,
          ukiPath: this.image.ukiPath,
          ukiSha256: this.image.built.ukiSha256,
          ovmf: inProject(args.projectDir, sev.ovmf),
          ovmfSha256: sev.ovmfSha256!,
          vcpus: plan.config.cores,
          vcpuType: sev.vcpuType ?? plan.config.cpuType,
          policy: qemuServerSnpPolicy(sev),
          isoPath: this.image.isoPath,
          ...(signingKey ? { signingKey, log: { buildRecord: this.sbom.path, after: this.sbom.written } } : {}),
          projectDir: args.projectDir,
          artifactsDir: args.artifactsDir,
        },
        { parent: this },
      );
    }

    if (brokerWatch) {
      this.enrolment = new BrokerEnrolment(
        `${name}-broker`,
        {
          relay: plan,
          broker: brokerWatch.admin,
          attestation: brokerWatch.attestation,
          ...(launch ? { launch } : {}),
          collectedDir: collection.dir,
          collection: collection.summary,
          imageDigest: this.imageDigest,
          // Known once the image is built: registration waits for the build.
          imageDir: pulumi.all([this.image.dir, this.image.built]).apply(([dir]) => dir),
          // Volunteers can check a relay only against a logged launch: it is logged before the broker releases keys to it.
          ...(this.launchMeasurement?.logged ? { registerAfter: [this.launchMeasurement.logged] } : {}),
          projectDir: args.projectDir,
        },
        { parent: this },
      );
    }

    this.vm = args.driver.createVm(
      `${name}-vm`,
      { relay: plan.config, imageDigest: this.imageDigest, isoName: this.image.isoName, isoPath: this.image.isoPath, ukiPath: this.image.ukiPath, target },
      // In broker mode the broker must hold the keys and expect the image before the VM is replaced.
      { parent: this, dependsOn: [...args.after, ...(this.enrolment ? [this.enrolment.keys, this.enrolment.registration] : [])] },
    );

    this.rollout = new RelayRollout(
      `${name}-rollout`,
      {
        relay: plan,
        relayDir,
        imageDir: this.image.dir,
        built: this.image.built,
        vm: this.vm,
        channel,
        target,
        targetSecrets: args.driver.secrets,
        timeoutSeconds: config.rollout.healthTimeoutSeconds,
        rollback: config.rollout.rollback,
        ...(brokerWatch ? { broker: brokerWatch } : {}),
        projectDir: args.projectDir,
      },
      { parent: this },
    );
    this.vm.afterRollout(this.rollout.gate);
    this.registerOutputs({ imageDigest: this.imageDigest, isoName: this.image.isoName });
  }
}
