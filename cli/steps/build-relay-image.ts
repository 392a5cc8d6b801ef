/** One relay's image from its recipe (lib/image/relay-build.ts); prints its outputs as one JSON line, never key bytes. */
import { rmSync } from "node:fs";
import { buildRelayImage } from "../../lib/image/relay-build";
import { encodeStepOutput, type StepSpec } from "../../lib/steps/steps";

/**
 * Test-only fault for the rollout tests: DISKLESS_RELAYS_TEST_FAULT=stop-tor:RELAY
 * makes this build of RELAY carry a torrc line tor refuses at start (an
 * unwritable log file), so the new image boots but tor never runs. The saved
 * recipe stays clean: a rebuild of the same recipe (a rollback) is healthy.
 */
export const TEST_FAULT_ENV = "DISKLESS_RELAYS_TEST_FAULT";
const FAULT_TORRC = "Log notice file /nonexistent/diskless-relays-test-fault/tor.log\n";

export function buildImage(spec: StepSpec<"build-relay-image">): void {
  const faulty = process.env[TEST_FAULT_ENV] === `stop-tor:${spec.relay}`;
  if (faulty) console.error(`relay ${spec.relay}: ${TEST_FAULT_ENV} is set: this image's tor will refuse to start (test fault)`);
  const built = buildRelayImage(spec, ".", faulty ? { extraTorrc: FAULT_TORRC } : {});
  const { relay, imageDigest, isoName, iso, uki, files, isoSha256, ukiSha256, isoBytes, ukiBytes, onionKeys } = built;
  console.log(encodeStepOutput("build-relay-image", { relay, imageDigest, isoName, iso, uki, files, isoSha256, ukiSha256, isoBytes, ukiBytes, onionKeys }));
}

export function removeImage(spec: StepSpec<"remove-relay-image">): void {
  rmSync(spec.outDir, { recursive: true, force: true });
  console.log(`removed ${spec.outDir}`);
}
