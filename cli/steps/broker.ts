/**
 * Broker mode's steps (tools/broker's admin API, lib/broker/broker-admin.ts):
 * upload a relay's shipped keys, and register each new image so that the
 * broker releases the keys to it, then retire it once it is superseded.
 * Print names and digests only, never key bytes.
 */
import { existsSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { registerImage, retireImage, uploadRelayKeys, BrokerAdminError } from "../../lib/broker/broker-admin";
import { adminEndpoint, imageRegistration } from "../../lib/broker/image-registration";
import { loadRelayIdentity } from "../../lib/plan/identity";
import { readBuiltImage } from "../../lib/image/relay-build";
import type { StepSpec } from "../../lib/steps/steps";
import { IDENTITY_FILES, ONION_KEY_FILES } from "../../lib/tor/tor-keys";
import { shellQuote } from "../../lib/core/shell-quote";
import { StepFailure } from "../../lib/steps/step-failure";

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
