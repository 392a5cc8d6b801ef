import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";

export interface LaunchMeasurementArgs {
  relay: string;
  imageDigest: string;
  /** The relay's UKI, measured as the kernel of a measured direct boot. */
  ukiPath: pulumi.Input<string>;
  /** The AmdSevX64 OVMF the guest launches with. */
  ovmf: string;
  vcpus: number;
  vcpuType: string;
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
    this.path = join(args.artifactsDir, "relays", args.relay, `${args.imageDigest.slice(0, 12)}.snp.json`);
    const ovmfSha256 = createHash("sha256").update(readFileSync(args.ovmf)).digest("hex");
    const measure = new command.local.Command(
      `${name}-measure`,
      {
        dir: args.projectDir,
        create: pulumi.interpolate`set -eu
m=$(node_modules/.bin/tsx cli/snp.ts measure --ovmf ${args.ovmf} --kernel ${args.ukiPath} --vcpus ${args.vcpus} --vcpu-type ${args.vcpuType})
mkdir -p ${join(args.artifactsDir, "relays", args.relay)}
printf '{"relay":"%s","imageDigest":"%s","uki":{"sha256":"%s"},"ovmf":{"file":"%s","sha256":"%s"},"vcpus":%s,"vcpuType":"%s","vmm":"QEMU","guestFeatures":"0x1","measurement":"%s"}\\n' \\
  ${args.relay} ${args.imageDigest} "$(sha256sum ${args.ukiPath} | cut -d' ' -f1)" ${args.ovmf} ${ovmfSha256} ${args.vcpus} ${args.vcpuType} "$m" >${this.path}
echo "$m"`,
        triggers: [args.imageDigest, ovmfSha256, args.vcpus, args.vcpuType],
      },
      { parent: this },
    );
    this.measurement = measure.stdout;
    this.registerOutputs({ measurement: this.measurement, path: this.path });
  }
}
