import * as pulumi from "@pulumi/pulumi";
import { parseStepOutput } from "../lib/steps/steps";
import { stepResource } from "./step";
import { launchMeasurementPath } from "../lib/config/build-layout";

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
    this.registerOutputs({ measurement: this.measurement, path: this.path });
  }
}
