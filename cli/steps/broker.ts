/**
 * Broker mode's steps (tools/broker's admin API, lib/broker-admin.ts):
 * upload a relay's shipped keys, and register each new image so that the
 * broker releases the keys to it, then retire it once it is superseded.
 * Print names and digests only, never key bytes.
 */
import { existsSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { registerImage, retireImage, uploadRelayKeys, BrokerAdminError, type BrokerAdminEndpoint } from "../../lib/broker-admin";
import { brokerAdminEndpoint } from "../../lib/broker-endpoint";
import { expectedLaunchMeasurement } from "../../lib/snp/launchDigest";
import { loadRelayIdentity } from "../../lib/identity";
import { readBuiltImage, type BuiltImage } from "../../lib/relay-build";
import type { BrokerAdminSpec, StepSpec } from "../../lib/steps";
import { IDENTITY_FILES, ONION_KEY_FILES } from "../../lib/tor-keys";
import { shellQuote } from "../../lib/shell-quote";
import { StepFailure } from "./failure";

export function adminEndpoint(spec: BrokerAdminSpec): BrokerAdminEndpoint {
  if ("socket" in spec) return brokerAdminEndpoint({ admin: spec });
  return brokerAdminEndpoint({ admin: { url: spec.url, tokenFile: spec.tokenFile }, ...(spec.caFile ? { caFile: spec.caFile } : {}) });
}

/** The files the broker holds for a relay, named as in tor's DataDirectory, read from the key store (and a collection). */
export function shippedFiles(spec: StepSpec<"upload-relay-keys">): Record<string, Buffer> {
  const files: Record<string, Buffer> = {};
  for (const file of IDENTITY_FILES) {
    const path = join(spec.keysDir, file);
    if (!existsSync(path)) throw new StepFailure(`relay ${spec.relay}: ${path} is missing; the broker cannot be given the relay's identity. Make it on the key-generation host (npm run keys -- init ${shellQuote(spec.relay)}).`);
    files[`keys/${file}`] = readFileSync(path);
  }
  if (spec.familyKeyFile) files[`keys/${basename(spec.familyKeyFile)}`] = readFileSync(spec.familyKeyFile);
  // A relay moving from image mode: the onion keys and state just collected from it are its current ones.
  for (const file of ONION_KEY_FILES) {
    const path = join(spec.collectedDir, "keys", file);
    if (existsSync(path)) files[`keys/${file}`] = readFileSync(path);
  }
  if (existsSync(join(spec.collectedDir, "state"))) files.state = readFileSync(join(spec.collectedDir, "state"));
  return files;
}

export async function uploadKeys(spec: StepSpec<"upload-relay-keys">): Promise<void> {
  // The files must be the identity the plan checked: a key store changed since would upload another relay's keys.
  let identity;
  try {
    identity = loadRelayIdentity(spec.relay, spec.keysDir);
  } catch (err) {
    throw new StepFailure(`relay ${spec.relay}: ${(err as Error).message}. Nothing was uploaded.`);
  }
  if (identity.rsaFingerprint !== spec.identity.rsaFingerprint || identity.ed25519Identity !== spec.identity.ed25519Identity) {
    throw new StepFailure(`relay ${spec.relay}: the keys in ${spec.keysDir} are not the identity planned (${spec.identity.rsaFingerprint}); run pulumi up again. Nothing was uploaded.`);
  }
  const files = shippedFiles(spec);
  try {
    await uploadRelayKeys(adminEndpoint(spec.broker), spec.relay, files);
  } catch (err) {
    throw new StepFailure(`relay ${spec.relay}: uploading its keys to the key broker failed: ${(err as Error).message}. Nothing was built or replaced.`);
  } finally {
    for (const bytes of Object.values(files)) bytes.fill(0);
  }
  const onion = Object.keys(files).filter((name) => name.includes("onion") || name === "state");
  console.log(
    `relay ${spec.relay}: the key broker holds its identity (${Object.keys(files).filter((name) => !onion.includes(name)).join(", ")})` +
      (onion.length > 0 ? `, and the onion keys and state collected from it (${onion.join(", ")})` : "; the onion keys it pushed, if any, are kept"),
  );
}

/** The broker keeps a relay's keys when the relay leaves the stack: only revoke ends them (npm run broker -- revoke). */
export function forgetKeys(spec: StepSpec<"forget-relay-keys">): void {
  console.log(`relay ${spec.relay}: no longer deployed by this stack; the key broker keeps its keys (npm run broker -- revoke ${shellQuote(spec.relay)} ends them)`);
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

export async function registerImageStep(spec: StepSpec<"register-image">): Promise<void> {
  const built = readBuiltImage(spec.image);
  if (built.imageDigest !== spec.imageDigest) throw new StepFailure(`relay ${spec.relay}: ${spec.image} holds image ${built.imageDigest.slice(0, 12)}, not ${spec.imageDigest.slice(0, 12)}`);
  const registration = imageRegistration(spec, built);
  try {
    await registerImage(adminEndpoint(spec.broker), spec.relay, registration);
  } catch (err) {
    throw new StepFailure(`relay ${spec.relay}: the key broker did not register image ${spec.imageDigest.slice(0, 12)}: ${(err as Error).message}. Its VM was not replaced.`);
  }
  console.log(
    `relay ${spec.relay}: the key broker will release its keys to image ${spec.imageDigest.slice(0, 12)}` +
      (registration.attestation === "snp" ? ` with launch measurement ${registration.measurements[0]}` : ` once, to its boot token (SHA-256 ${registration.tokenSha256.slice(0, 12)}…)`),
  );
}

/** Once a newer image is healthy (Pulumi deletes the old registration at the end of the update), the old one gets nothing. */
export async function retireImageStep(spec: StepSpec<"retire-image">): Promise<void> {
  try {
    await retireImage(adminEndpoint(spec.broker), spec.relay, spec.imageDigest);
  } catch (err) {
    // Already gone (a re-enrolment forgets images): nothing to retire.
    if (!(err instanceof BrokerAdminError && err.status === 404)) throw err;
  }
  console.log(`relay ${spec.relay}: image ${spec.imageDigest.slice(0, 12)} retired at the key broker`);
}
