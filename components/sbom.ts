import * as pulumi from "@pulumi/pulumi";
import { stepResource } from "./step";
import { baseSbomStem, relaySbomRecordPath } from "../lib/config/build-layout";

export interface BaseSbomArgs {
  baseDir: pulumi.Input<string>;
  baseDigest: string;
  flavour: "alpine" | "debian";
  /** artifacts/ in the project: the audit history, keyed by digest. */
  artifactsDir: string;
  projectDir: string;
}

/** The base's inventory by Syft, in Syft JSON and CycloneDX, kept under artifacts/sbom/. */
export class BaseSbom extends pulumi.ComponentResource {
  readonly syftJson: pulumi.Output<string>;
  readonly cyclonedxJson: pulumi.Output<string>;

  constructor(name: string, args: BaseSbomArgs, opts?: pulumi.ComponentResourceOptions) {
    super("diskless-relays:sbom:BaseSbom", name, {}, opts);
    const stem = baseSbomStem(args.artifactsDir, args.flavour, args.baseDigest);
    const scan = stepResource(
      `${name}-syft`,
      {
        step: "scan-base-sbom",
        spec: { rootfs: pulumi.interpolate`${args.baseDir}/rootfs`, stem, flavour: args.flavour, baseDigest: args.baseDigest },
        triggers: [args.baseDigest],
        projectDir: args.projectDir,
      },
      { parent: this },
    );
    this.syftJson = scan.stdout.apply(() => `${stem}.syft.json`);
    this.cyclonedxJson = scan.stdout.apply(() => `${stem}.cdx.json`);
    this.registerOutputs({ syftJson: this.syftJson, cyclonedxJson: this.cyclonedxJson });
  }
}

export interface RelaySbomArgs {
  relay: string;
  nickname: string;
  imageDigest: string;
  base: BaseSbom;
  /** The image's build directory, and its build record (a new build writes a new SBOM). */
  imageDir: pulumi.Input<string>;
  built: pulumi.Input<unknown>;
  projectDir: string;
  artifactsDir: string;
  /** The operator's key the record is signed with. */
  signingKey?: string;
}

/**
 * A relay image's SBOM artifact: the base SBOM's digests plus the overlay's
 * file list, at artifacts/relays/<relay>/<image digest>.json, never removed.
 */
export class RelaySbom extends pulumi.ComponentResource {
  readonly path: string;
  /** The step that writes the record: what reads the record waits for it. */
  readonly written: pulumi.Resource;

  constructor(name: string, args: RelaySbomArgs, opts?: pulumi.ComponentResourceOptions) {
    super("diskless-relays:sbom:RelaySbom", name, {}, opts);
    this.path = relaySbomRecordPath(args.artifactsDir, args.relay, args.imageDigest);
    this.written = stepResource(
      `${name}-write`,
      {
        step: "write-relay-sbom",
        spec: {
          relay: args.relay,
          nickname: args.nickname,
          imageDigest: args.imageDigest,
          baseSyftJson: args.base.syftJson,
          baseCycloneDxJson: args.base.cyclonedxJson,
          image: args.imageDir,
          out: this.path,
          ...(args.signingKey ? { signingKey: args.signingKey } : {}),
        },
        triggers: [args.built, args.signingKey ?? "unsigned"],
        projectDir: args.projectDir,
      },
      { parent: this },
    );
    this.registerOutputs({ path: this.path });
  }
}
