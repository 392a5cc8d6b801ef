/**
 * The SEV-SNP launch measurement a genuine instance of a relay image must
 * report, computed from its UKI and published beside its SBOM; prints the
 * measurement (hex) as the step's output. The document is the measurement
 * tuple (UKI, ISO and OVMF digests, vCPUs, model, guest features, policy),
 * signed with the operator's key when the stack names one.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { basename, dirname, isAbsolute, relative } from "node:path";
import { expectedLaunchMeasurement } from "../../lib/snp/launch-digest";
import { publishSigned } from "../../lib/image/signing";
import { encodeStepOutput, type StepSpec } from "../../lib/steps/steps";

const projectRelative = (file: string) => {
  const inside = relative(process.cwd(), file);
  return inside.startsWith("..") || isAbsolute(inside) ? basename(file) : inside;
};

export function measureLaunch(spec: StepSpec<"measure-launch">): void {
  const ovmf = readFileSync(spec.ovmf);
  const kernel = readFileSync(spec.uki);
  const measurement = expectedLaunchMeasurement({ ovmf, kernel, vcpus: spec.vcpus, vcpuType: spec.vcpuType });
  const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");
  mkdirSync(dirname(spec.out), { recursive: true });
  const artifact = {
    relay: spec.relay,
    imageDigest: spec.imageDigest,
    uki: { sha256: sha256(kernel) },
    ...(spec.iso ? { iso: { sha256: sha256(readFileSync(spec.iso)) } } : {}),
    // Where the project keeps it (steps run in the project), never the build host's absolute path: verify-build finds it there, or takes --ovmf.
    ovmf: { file: projectRelative(spec.ovmf), sha256: sha256(ovmf) },
    vcpus: spec.vcpus,
    vcpuType: spec.vcpuType,
    vmm: "QEMU",
    guestFeatures: "0x1",
    policy: spec.policy,
    measurement,
  };
  publishSigned(spec.out, JSON.stringify(artifact, null, 1) + "\n", spec.signingKey);
  console.log(encodeStepOutput("measure-launch", measurement));
}
