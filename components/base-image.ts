import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { join } from "node:path";
import { baseImageDigest, type BaseImageInputs } from "../lib/image-inputs";

export interface BaseImageArgs {
  inputs: BaseImageInputs;
  /** The project directory, where images/ lives. */
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
    const script = join(args.projectDir, "images", args.inputs.flavour, "build-base.sh");
    const build = new command.local.Command(
      `${name}-build`,
      {
        dir: args.projectDir,
        create: [
          `set -eu; mkdir -p -m 0700 ${join(args.buildRoot, "base")}`,
          `if [ -f ${dir}/.complete ]; then echo "base ${dir} already built"; exit 0; fi`,
          `bash ${script} ${dir} ${args.inputs.release} ${args.inputs.geoip ? "yes" : "no"} ${args.inputs.extraPackages.join(" ")}`.trim(),
          `echo "base ${dir}: $(du -b ${dir}/base.cpio.zst | cut -f1) bytes initrd, kernel $(cat ${dir}/uname)"`,
        ].join("\n"),
        triggers: [args.inputs],
        logging: "stdoutAndStderr",
      },
      { parent: this },
    );
    this.dir = build.stdout.apply(() => dir);
    this.registerOutputs({ dir: this.dir, digest: this.digest });
  }
}
