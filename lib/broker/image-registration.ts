/**
 * What a step tells the key broker, built from the step's spec: the admin
 * endpoint it speaks to, and the registration of a new image (its launch
 * measurement, or its boot token's SHA-256). Shared by the broker steps and
 * the rollout. I/O: reads the built UKI and the relay's firmware.
 */
import { readFileSync } from "node:fs";
import type { BrokerAdminEndpoint } from "./broker-admin";
import { brokerAdminEndpoint } from "./broker-endpoint";
import type { BuiltImage } from "../image/relay-build";
import { expectedLaunchMeasurement } from "../snp/launch-digest";
import { StepFailure } from "../steps/step-failure";
import type { BrokerAdminSpec, StepSpec } from "../steps/steps";

/** The admin endpoint a step's spec names: the broker's socket, or its URL with a token file. */
export function adminEndpoint(spec: BrokerAdminSpec): BrokerAdminEndpoint {
  if ("socket" in spec) return brokerAdminEndpoint({ admin: spec });
  return brokerAdminEndpoint({ admin: { url: spec.url, tokenFile: spec.tokenFile }, ...(spec.caFile ? { caFile: spec.caFile } : {}) });
}

/** What the broker is told to expect from this image: its launch measurement, or its boot token's SHA-256. */
export function imageRegistration(spec: Pick<StepSpec<"register-image">, "relay" | "attestation" | "launch">, built: BuiltImage) {
  if (spec.attestation === "none") {
    if (!built.bootTokenSha256) throw new StepFailure(`relay ${spec.relay}: image ${built.imageDigest.slice(0, 12)} carries no boot token; rebuild it`);
    return { imageDigest: built.imageDigest, attestation: "none" as const, tokenSha256: built.bootTokenSha256 };
  }
  if (!spec.launch) throw new StepFailure(`relay ${spec.relay}: attestation snp needs the relay's SEV-SNP launch (sev.ovmf, cores, sev.vcpuType)`);
  // The value measure-launch publishes for this image: the built UKI with the relay's firmware and vCPUs.
  const measurement = expectedLaunchMeasurement({ ovmf: readFileSync(spec.launch.ovmf), kernel: readFileSync(built.uki), vcpus: spec.launch.vcpus, vcpuType: spec.launch.vcpuType });
  return { imageDigest: built.imageDigest, attestation: "snp" as const, measurements: [measurement] };
}

