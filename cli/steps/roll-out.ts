/**
 * The rollout gate after a relay's VM was replaced: wait until the relay is
 * healthy on the new image (lib/ops/relay-health.ts), over the same pinned
 * channel as collection. Later relays wait for this step, so a relay that
 * does not come back stops the rollout. Unless rollout.rollback is false, it
 * is put back on its last healthy image, rebuilt with the onion keys and
 * state collected from it just before this rollout, and the step fails
 * naming the relay, what was wrong and the last console or log lines.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { buildRelayImage, readBuiltImage, RECIPE_RECORD, type BuiltImage } from "../../lib/image/relay-build";
import { parseHealthReport, type HealthExpectation } from "../../lib/ops/relay-health";
import { relayMachine } from "../../lib/deploy/relay-machine";
import { clearRollbackRecord, readRollbackRecord, readRunningRecord, writeRollbackRecord, writeRunningRecord } from "../../lib/steps/rollout-records";
import { relayRecipeSpec, type RelayChannel, type StepSpec } from "../../lib/steps/steps";
import { registerImage } from "../../lib/broker/broker-admin";
import { adminEndpoint, imageRegistration } from "../../lib/broker/image-registration";
import { shellQuote } from "../../lib/core/shell-quote";
import { StepFailure } from "../../lib/steps/step-failure";
import { brokerHealth, lastLines, sshHealth, waitHealthy, type HealthSource } from "../../lib/ops/health-gate";
import { mismatchExplainer } from "../../lib/ops/measurement-mismatch";

type Spec = StepSpec<"roll-out">;

const short = (digest: string) => digest.slice(0, 12);

/**
 * Once a gate is superseded (the relay is healthy on a newer image) or the
 * relay leaves the stack, its rollback image, which holds keys, goes.
 */
export function removeRollbackImage(spec: Spec): void {
  rmSync(join(spec.relayDir, "rollback"), { recursive: true, force: true });
  console.log(`relay ${spec.relay}: no rollback image kept`);
}

export async function rollOut(spec: Spec): Promise<void> {
  const image = readBuiltImage(spec.image);
  const recipe = relayRecipeSpec.parse(JSON.parse(readFileSync(join(spec.image, RECIPE_RECORD), "utf8")));
  const machine = relayMachine(spec.target);
  const expected: HealthExpectation = { imageDigest: image.imageDigest, ...spec.expected };
  const channelTo = (built: Pick<BuiltImage, "hostPublicKey">): RelayChannel => ({ ...spec.channel, hostPublicKey: built.hostPublicKey });
  mkdirSync(spec.relayDir, { recursive: true, mode: 0o700 });
  const admin = spec.broker ? adminEndpoint(spec.broker.admin) : undefined;
  // A measurement mismatch is tried offline against the same UKI and firmware with other vCPU counts and models.
  const launch = spec.broker?.launch;
  const explain = (built: BuiltImage) => (launch ? mismatchExplainer(spec.relay, built.uki, launch) : undefined);
  const healthOf = (built: BuiltImage, since: number): HealthSource => (admin ? brokerHealth(admin, spec.relay, built.imageDigest, since, explain(built)) : sshHealth(channelTo(built)));
  // Rolled back from this very image before: say so at once rather than wait out the timeout again.
  const rolledBack = readRollbackRecord(spec.relayDir);
  const running = readRunningRecord(spec.relayDir);
  if (rolledBack?.failedImageDigest === image.imageDigest && running?.imageDigest === rolledBack.imageDigest) {
    const answer = admin ? await brokerHealth(admin, spec.relay, running.imageDigest, 0)() : await sshHealth(channelTo(running))();
    const report = answer.ok ? parseHealthReport(answer.text) : undefined;
    if (report?.image?.imageDigest === rolledBack.imageDigest) {
      throw new StepFailure(
        `relay ${spec.relay}: still on its rollback image ${short(rolledBack.imageDigest)} since ${rolledBack.at}: image ${short(image.imageDigest)} ` +
          `did not come back (${rolledBack.reason}). Nothing was changed, and the relays after it in the rollout were not touched.\n` +
          `Fix the cause in the stack config and run pulumi up again. To retry image ${short(image.imageDigest)} as it is, with the onion keys the relay has now, ` +
          `run pulumi up --replace with the URN of this relay's state collection (pulumi stack --show-urns | grep -F -- ${shellQuote(`${spec.relay}-state-collect`)}).`,
      );
    }
  }

  // Pushes made before this step began are from an earlier boot (a re-registered image keeps its digest).
  const verdict = await waitHealthy(machine, healthOf(image, Date.now() - 1000), expected, spec.timeoutSeconds);
  if (verdict.healthy) {
    writeRunningRecord(spec.relayDir, {
      imageDigest: image.imageDigest,
      recipe,
      hostPublicKey: image.hostPublicKey,
      isoName: image.isoName,
      orPort: spec.expected.orPort,
      exit: spec.expected.exit,
      since: new Date().toISOString(),
    });
    clearRollbackRecord(spec.relayDir);
    console.log(
      `relay ${spec.relay}: healthy on image ${short(image.imageDigest)} after ${verdict.seconds}s: tor runs with fingerprint ${spec.expected.rsaFingerprint}, ORPort ${spec.expected.orPort} listening` +
        (verdict.clockOffsetSeconds !== undefined ? `, clock ${verdict.clockOffsetSeconds}s off ${admin ? "the broker's" : "ours"}` : "") +
        (admin ? ` (its health report came with its attested push to the key broker)` : ""),
    );
    return;
  }

  const what = `relay ${spec.relay} did not come back healthy on image ${short(image.imageDigest)} within ${spec.timeoutSeconds}s (${machine.where}): ${verdict.problems.join("; ")}`;
  const evidence = lastLines(machine, verdict);
  const stopped = "The rollout stopped here: the relays after it were not touched.";
  if (!spec.rollback) throw new StepFailure(`${what}.\n${stopped} rollout.rollback is false, so it stays on this image.${evidence}`);
  if (!running || running.imageDigest === image.imageDigest) {
    throw new StepFailure(`${what}.\n${stopped} No earlier healthy image of this relay is recorded on this build host, so it cannot be rolled back; it stays on this image.${evidence}`);
  }

  // The last healthy recipe, rebuilt with the onion keys and state collected just before this rollout.
  const rollbackRoot = join(spec.relayDir, "rollback");
  mkdirSync(rollbackRoot, { recursive: true, mode: 0o700 });
  for (const old of readdirSync(rollbackRoot)) rmSync(join(rollbackRoot, old), { recursive: true, force: true });
  const rollbackImage = buildRelayImage({ ...running.recipe, collectedDir: recipe.collectedDir, outDir: join(rollbackRoot, short(running.imageDigest)) }, ".");
  console.error(
    `${what}.\nRolling relay ${spec.relay} back to image ${short(running.imageDigest)} (${rollbackImage.isoName}, ` +
      (admin ? "its keys from the key broker)" : `onion keys: ${rollbackImage.onionKeys.join(", ") || "none"})`),
  );
  if (admin) {
    // A token-mode rebuild carries a new boot token; an SNP one is measured again: the broker must expect it before it boots.
    const registration = imageRegistration({ relay: spec.relay, attestation: spec.broker!.attestation, launch: spec.broker!.launch }, rollbackImage);
    await registerImage(admin, spec.relay, registration);
  }
  const rollbackSince = Date.now() - 1000;
  await machine.boot(rollbackImage);
  const back = await waitHealthy(
    machine,
    healthOf(rollbackImage, rollbackSince),
    { imageDigest: running.imageDigest, rsaFingerprint: spec.expected.rsaFingerprint, ed25519Identity: spec.expected.ed25519Identity, orPort: running.orPort, exit: running.exit },
    spec.timeoutSeconds,
  );
  if (!back.healthy) {
    throw new StepFailure(`${what}.\n${stopped} Its rollback to image ${short(running.imageDigest)} did not come back either: ${back.problems.join("; ")}${lastLines(machine, back)}`);
  }
  writeRunningRecord(spec.relayDir, { ...running, hostPublicKey: rollbackImage.hostPublicKey, isoName: rollbackImage.isoName, since: new Date().toISOString() });
  writeRollbackRecord(spec.relayDir, { failedImageDigest: image.imageDigest, imageDigest: running.imageDigest, at: new Date().toISOString(), reason: verdict.problems.join("; ") });
  throw new StepFailure(
    `${what}.\n${stopped} It was ROLLED BACK to image ${short(running.imageDigest)} with its current onion keys and state, and is healthy there ` +
      `(tor runs with fingerprint ${spec.expected.rsaFingerprint}, after ${back.seconds}s). Fix the cause and run pulumi up again.${evidence}`,
  );
}
