import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { join } from "node:path";

export interface BaseSbomArgs {
  baseDir: pulumi.Input<string>;
  baseDigest: string;
  flavour: string;
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
    const stem = join(args.artifactsDir, "sbom", `base-${args.flavour}-${args.baseDigest.slice(0, 12)}`);
    const scan = new command.local.Command(
      `${name}-syft`,
      {
        dir: args.projectDir,
        create: pulumi.interpolate`set -eu
mkdir -p ${join(args.artifactsDir, "sbom")}
syft scan dir:${args.baseDir}/rootfs --quiet --source-name relay-base-${args.flavour} --source-version ${args.baseDigest.slice(0, 12)} \\
  -o syft-json=${stem}.syft.json -o cyclonedx-json=${stem}.cdx.json
echo "sbom ${stem}: $(sha256sum ${stem}.syft.json | cut -d' ' -f1) syft-json, $(sha256sum ${stem}.cdx.json | cut -d' ' -f1) cyclonedx-json"`,
        environment: { SYFT_CHECK_FOR_APP_UPDATE: "false" },
        triggers: [args.baseDigest],
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
  overlayFiles: pulumi.Input<string>;
  ukiPath: pulumi.Input<string>;
  isoPath: pulumi.Input<string>;
  projectDir: string;
  artifactsDir: string;
}

/**
 * A relay image's SBOM artifact: the base SBOM's digests plus the overlay's
 * file list, at artifacts/relays/<relay>/<image digest>.json, never removed.
 */
export class RelaySbom extends pulumi.ComponentResource {
  readonly path: string;

  constructor(name: string, args: RelaySbomArgs, opts?: pulumi.ComponentResourceOptions) {
    super("diskless-relays:sbom:RelaySbom", name, {}, opts);
    this.path = join(args.artifactsDir, "relays", args.relay, `${args.imageDigest.slice(0, 12)}.json`);
    new command.local.Command(
      `${name}-write`,
      {
        dir: args.projectDir,
        create: pulumi.interpolate`bash ${join(args.projectDir, "images", "write-relay-sbom.sh")} ${args.relay} ${args.nickname} ${args.imageDigest} ${args.base.syftJson} ${args.base.cyclonedxJson} ${args.overlayFiles} ${args.ukiPath} ${args.isoPath} ${this.path} && echo "sbom ${this.path}"`,
        triggers: [args.imageDigest],
      },
      { parent: this },
    );
    this.registerOutputs({ path: this.path });
  }
}
