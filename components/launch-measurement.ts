import * as pulumi from "@pulumi/pulumi";
import { parseStepOutput } from "../lib/steps/steps";
import { stepResource } from "./step";
import { launchMeasurementPath, measurementLogDir, measurementLogSigners } from "../lib/config/build-layout";

export interface LaunchMeasurementArgs {
  relay: string;
  imageDigest: string;
  /** The relay's UKI, measured as the kernel of a measured direct boot, and its digest (a new UKI, a new measurement). */
  ukiPath: pulumi.Input<string>;
  ukiSha256: pulumi.Input<string>;
  /** The AmdSevX64 OVMF the guest launches with, and its pinned SHA-256 (checked against the file at plan time). */
  ovmf: string;
  ovmfSha256: string;
  vcpus: number;
  vcpuType: string;
  /** The guest policy the VM launches with (qemu-server's rule for its amd-sev settings). */
  policy: string;
  /** The image's ISO: the document names its digest too. */
  isoPath: pulumi.Input<string>;
  /** The operator's key the document is signed with. */
  signingKey?: string;
  /**
   * The public measurement log the launch is added to, signed with signingKey, once the build record it
   * names is written (`after`). Absent without a signing key: an unsigned log would prove nothing.
   */
  log?: { buildRecord: string; after: pulumi.Resource };
  projectDir: string;
  artifactsDir: string;
}

/**
 * The SEV-SNP launch measurement a genuine instance of this relay's image
 * must report, computed from its UKI at build time and published as a stack
 * output and beside its SBOM (artifacts/relays/<relay>/<digest>.snp.json), so
 * running relays can be attested against it (`npm run snp -- verify`).
 */
export class LaunchMeasurement extends pulumi.ComponentResource {
  readonly measurement: pulumi.Output<string>;
  readonly path: string;
  /** The log's new entry: the broker registers the image only after it. */
  readonly logged?: pulumi.Resource;

  constructor(name: string, args: LaunchMeasurementArgs, opts?: pulumi.ComponentResourceOptions) {
    super("diskless-relays:snp:LaunchMeasurement", name, {}, opts);
    this.path = launchMeasurementPath(args.artifactsDir, args.relay, args.imageDigest);
    const measure = stepResource(
      `${name}-measure`,
      {
        step: "measure-launch",
        spec: { relay: args.relay, imageDigest: args.imageDigest, uki: args.ukiPath, ovmf: args.ovmf, vcpus: args.vcpus, vcpuType: args.vcpuType, policy: args.policy, iso: args.isoPath, out: this.path, ...(args.signingKey ? { signingKey: args.signingKey } : {}) },
        triggers: [args.ukiSha256, args.ovmfSha256, args.vcpus, args.vcpuType, args.policy, args.signingKey ?? "unsigned"],
        projectDir: args.projectDir,
      },
      { parent: this },
    );
    this.measurement = measure.stdout.apply((out) => parseStepOutput("measure-launch", out));
    if (args.log && args.signingKey) {
      this.logged = stepResource(
        `${name}-log`,
        {
          step: "log-measurement",
          spec: {
            relay: args.relay,
            imageDigest: args.imageDigest,
            measurementDocument: this.path,
            buildRecord: args.log.buildRecord,
            log: measurementLogDir(args.artifactsDir),
            allowedSigners: measurementLogSigners(args.artifactsDir),
            signingKey: args.signingKey,
          },
          // A new measurement is a new entry; the log refuses a second measurement for one image digest.
          triggers: [this.measurement],
          projectDir: args.projectDir,
        },
        { parent: this, dependsOn: [measure, args.log.after] },
      );
    }
    this.registerOutputs({ measurement: this.measurement, path: this.path });
  }
}
