import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import { join } from "node:path";
import type { PlannedRelay } from "../lib/plan/fleet";
import { relayImageDigest, type RelayImageInputs, type RelayImageTexts } from "../lib/plan/image-inputs";
import { parseStepOutput, type StepOutput } from "../lib/steps/steps";
import { stepResource } from "./step";

export interface RelayImageArgs {
  relay: PlannedRelay;
  /** The finished base build directory (BaseImage.dir). */
  baseDir: pulumi.Input<string>;
  /** Named digests of everything the image is made from; a change rebuilds. */
  inputs: RelayImageInputs;
  texts: RelayImageTexts;
  /** Onion keys and state collected from the running relay (empty on a first deploy). */
  collectedDir: pulumi.Input<string>;
  /** The collection's own record: a new collection means new onion keys to build in. */
  collection: pulumi.Input<string>;
  projectDir: string;
  /** The relay's private build directory. */
  relayDir: string;
}

/** What the build step reports (its output contract, lib/steps/steps.ts: paths and digests, never key bytes). */
export type BuiltImageSummary = StepOutput<"build-relay-image">;

/**
 * One relay's bootable image: its overlay (torrc, keys, collected state),
 * packed with the shared base into a UKI by ukify, wrapped in an EFI ISO
 * whose name carries its content digest. Built by the build-relay-image step
 * from a recipe (lib/steps/steps.ts) that is kept beside the image.
 */
export class RelayImage extends pulumi.ComponentResource {
  readonly imageDigest: string;
  /** The image's build directory: recipe.json, image.json, relay.efi, the ISO, files.json. */
  readonly dir: pulumi.Output<string>;
  readonly built: pulumi.Output<BuiltImageSummary>;
  readonly isoName: pulumi.Output<string>;
  readonly isoPath: pulumi.Output<string>;
  readonly ukiPath: pulumi.Output<string>;

  constructor(name: string, args: RelayImageArgs, opts?: pulumi.ComponentResourceOptions) {
    super("diskless-relays:image:RelayImage", name, {}, opts);
    const { relay } = args;
    this.imageDigest = relayImageDigest(args.inputs);
    // One directory per build: a rebuild of the same recipe (new onion keys, or a roll forward to
    // an earlier recipe) must never share a directory with a build whose removal is still pending.
    this.dir = pulumi
      .output(args.collection)
      .apply((collection) => join(args.relayDir, `${this.imageDigest.slice(0, 12)}-${createHash("sha256").update(collection).digest("hex").slice(0, 8)}`));
    const build = stepResource(
      `${name}-build`,
      {
        step: "build-relay-image",
        onDelete: "remove-relay-image",
        spec: {
          relay: relay.config.name,
          nickname: relay.config.nickname,
          imageDigest: this.imageDigest,
          baseDir: args.baseDir,
          keysDir: relay.keysDir,
          ...(relay.familyKeyFile ? { familyKeyFile: relay.familyKeyFile } : {}),
          collectedDir: args.collectedDir,
          outDir: this.dir,
          ...args.texts,
        },
        triggers: [args.inputs, args.collection],
        projectDir: args.projectDir,
      },
      { parent: this },
    );
    this.built = build.stdout.apply((out) => parseStepOutput("build-relay-image", out));
    this.isoName = this.built.isoName;
    this.isoPath = this.built.iso;
    this.ukiPath = this.built.uki;
    this.registerOutputs({ imageDigest: this.imageDigest, isoName: this.isoName, isoPath: this.isoPath });
  }
}
