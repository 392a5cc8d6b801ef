import * as pulumi from "@pulumi/pulumi";
import { join } from "node:path";
import { baseBuildSpec, baseImageDigest, type BaseImageInputs } from "../lib/plan/image-inputs";
import { stepResource } from "./step";

export interface BaseImageArgs {
  inputs: BaseImageInputs;
  /** The project directory, where images/ lives and steps run. */
  projectDir: string;
  /** Private build root (0700); the base goes to <buildRoot>/base/<flavour>-<digest12>. */
  buildRoot: string;
}

/**
 * The root filesystem every relay of a flavour shares, built once per digest
 * of its inputs and reused by every relay image (and by other stacks on the
 * same build host: a finished build directory is never rebuilt).
 */
export class BaseImage extends pulumi.ComponentResource {
  /** The finished base build: vmlinuz, base.cpio.zst, rootfs/, uname, os-release. */
  readonly dir: pulumi.Output<string>;
  readonly digest: string;

  constructor(name: string, args: BaseImageArgs, opts?: pulumi.ComponentResourceOptions) {
    super("diskless-relays:image:BaseImage", name, {}, opts);
    this.digest = baseImageDigest(args.inputs);
    const dir = join(args.buildRoot, "base", `${args.inputs.flavour}-${this.digest.slice(0, 12)}`);
    const spec = baseBuildSpec(args.inputs, dir);
    const build = stepResource(
      `${name}-build`,
      { step: "build-base", spec, triggers: [args.inputs], projectDir: args.projectDir, logging: "stdoutAndStderr" },
      { parent: this },
    );
    this.dir = build.stdout.apply(() => dir);
    this.registerOutputs({ dir: this.dir, digest: this.digest });
  }
}
