import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { join } from "node:path";
import type { PlannedRelay } from "../lib/fleet";
import { isoFileName, relayImageDigest, type RelayBuildEnvironment, type RelayImageInputs } from "../lib/image-inputs";

export interface RelayImageArgs {
  relay: PlannedRelay;
  /** The finished base build directory (BaseImage.dir). */
  baseDir: pulumi.Input<string>;
  /** Named digests of everything the image is made from; a change rebuilds. */
  inputs: RelayImageInputs;
  environment: RelayBuildEnvironment;
  /** Onion keys and state collected from the running relay (may be empty on a first deploy). */
  collectedDir: pulumi.Input<string>;
  projectDir: string;
  buildRoot: string;
}

/**
 * One relay's bootable image: its overlay (torrc, keys, collected state),
 * packed with the shared base into a UKI by ukify, wrapped in an EFI ISO.
 * The build directory is private; key bytes never reach the command's output.
 */
export class RelayImage extends pulumi.ComponentResource {
  readonly imageDigest: string;
  readonly isoName: string;
  readonly isoPath: pulumi.Output<string>;
  readonly ukiPath: pulumi.Output<string>;
  /** The overlay's file list (paths and digests), for the SBOM. */
  readonly overlayFiles: pulumi.Output<string>;
  readonly buildSummary: pulumi.Output<string>;

  constructor(name: string, args: RelayImageArgs, opts?: pulumi.ComponentResourceOptions) {
    super("diskless-relays:image:RelayImage", name, {}, opts);
    this.imageDigest = relayImageDigest(args.inputs);
    this.isoName = isoFileName(args.relay.config.nickname, this.imageDigest);
    const out = join(args.buildRoot, "relays", args.relay.config.name, this.imageDigest.slice(0, 12));
    const build = new command.local.Command(
      `${name}-build`,
      {
        dir: args.projectDir,
        create: pulumi.interpolate`set -eu
mkdir -p -m 0700 ${join(args.buildRoot, "relays", args.relay.config.name)}
bash ${join(args.projectDir, "images", "build-relay.sh")} ${args.baseDir} ${args.relay.keysDir} ${args.collectedDir} ${out} ${this.isoName}`,
        delete: `rm -rf ${out}`,
        environment: { ...args.environment },
        triggers: [args.inputs],
        // The build's own output carries paths and digests only.
        logging: "stdoutAndStderr",
      },
      { parent: this },
    );
    this.buildSummary = build.stdout;
    this.isoPath = build.stdout.apply(() => join(out, this.isoName));
    this.ukiPath = build.stdout.apply(() => join(out, "relay.efi"));
    this.overlayFiles = build.stdout.apply(() => join(out, "files.json"));
    this.registerOutputs({ imageDigest: this.imageDigest, isoName: this.isoName, isoPath: this.isoPath });
  }
}
