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
import { askRelay } from "../../lib/deploy/relay-channel";
import { healthProblems, parseHealthReport, type HealthExpectation, type HealthReport } from "../../lib/ops/relay-health";
import { relayMachine, type RelayMachine } from "../../lib/deploy/relay-targets";
import { clearRollbackRecord, readRollbackRecord, readRunningRecord, writeRollbackRecord, writeRunningRecord } from "../../lib/steps/rollout-records";
import { relayRecipeSpec, type RelayChannel, type StepSpec } from "../../lib/steps/steps";
import { brokerStatus, registerImage, type BrokerAdminEndpoint } from "../../lib/broker/broker-admin";
import { adminEndpoint, imageRegistration } from "../../lib/broker/image-registration";
import { shellQuote } from "../../lib/core/shell-quote";
import { StepFailure } from "../../lib/steps/step-failure";
import { setTimeout as sleep } from "node:timers/promises";

type Spec = StepSpec<"roll-out">;

interface Verdict {
  healthy: boolean;
  seconds: number;
  problems: string[];
  report?: HealthReport;
  /** The relay's clock minus ours when it answered: the evidence that the VM's clock, taken from its host, suffices. */
  clockOffsetSeconds?: number;
}

const POLL_MS = 5000;
/**
 * Once the relay answers on the expected image, tor starts within seconds
 * (relay-tor restarts it every few seconds if it exits). A relay that has
 * answered for this long without a running tor will not get one by waiting.
 */
const TOR_START_GRACE_SECONDS = 90;

/** One answer to "how is the relay?": its health report and our clock when it was made, or why there is none. */
type HealthAnswer = { ok: true; text: string; now: number } | { ok: false; error: string };
type HealthSource = () => Promise<HealthAnswer>;

/** Image mode: ask the relay itself, over the pinned SSH channel. */
const sshHealth =
  (channel: RelayChannel): HealthSource =>
  async () => {
    const answer = await askRelay(channel, "health");
    return answer.ok ? { ok: true, text: answer.stdout.toString("utf8"), now: Math.round(Date.now() / 1000) } : { ok: false, error: `it does not answer over SSH (${answer.error})` };
  };

/**
 * Broker mode: the relay has no SSH server; its health report travels with
 * its attested pushes, and the broker keeps the latest. Only a report pushed
 * since `since` by `imageDigest` counts. A refusal since then says why the
 * relay got no keys (a wrong measurement, a used boot token, a revocation).
 */
const brokerHealth =
  (admin: BrokerAdminEndpoint, relay: string, imageDigest: string, since: number): HealthSource =>
  async () => {
    let status;
    try {
      status = (await brokerStatus(admin)).relays.find((entry) => entry.relay === relay);
    } catch (err) {
      return { ok: false, error: `the key broker does not answer (${(err as Error).message})` };
    }
    const health = status?.lastHealth;
    if (health && health.imageDigest === imageDigest && Date.parse(health.time) >= since) {
      return { ok: true, text: health.report, now: Math.round(Date.parse(health.time) / 1000) };
    }
    const refusal = status?.lastRefusal;
    if (refusal && Date.parse(refusal.time) >= since) {
      return { ok: false, error: `the key broker refused it at ${refusal.time}: ${refusal.verdict}${refusal.reason ? ` (${refusal.reason})` : ""}` };
    }
    return { ok: false, error: `it has not pushed a health report to the key broker from image ${imageDigest.slice(0, 12)} yet` };
  };

/** Asks until the relay is healthy, the time is up, or its machine is gone. */
async function waitHealthy(machine: RelayMachine, ask: HealthSource, expected: HealthExpectation, timeoutSeconds: number): Promise<Verdict> {
  const start = Date.now();
  const elapsed = () => Math.round((Date.now() - start) / 1000);
  let verdict: Verdict = { healthy: false, seconds: 0, problems: ["it has not answered yet"] };
  let down = 0;
  let torlessSince: number | undefined;
  while (Date.now() - start < timeoutSeconds * 1000) {
    const answer = await ask();
    if (answer.ok) {
      const report = parseHealthReport(answer.text);
      const now = answer.now;
      const problems = healthProblems(report, { ...expected, now });
      verdict = { healthy: problems.length === 0, seconds: elapsed(), problems, report, ...(report.time !== undefined ? { clockOffsetSeconds: report.time - now } : {}) };
      if (verdict.healthy) return verdict;
      const onImage = report.image?.imageDigest === expected.imageDigest;
      if (onImage && report.torPids.length === 0) torlessSince ??= Date.now();
      else torlessSince = undefined;
      if (torlessSince !== undefined && Date.now() - torlessSince > TOR_START_GRACE_SECONDS * 1000) {
        return { ...verdict, problems: [...problems, `tor has not run for ${TOR_START_GRACE_SECONDS}s while the relay answered`] };
      }
    } else {
      verdict = { ...verdict, seconds: elapsed(), problems: [answer.error] };
    }
    // A machine that is gone will not come back by waiting.
    if ((await machine.state()) !== "running") {
      if (++down >= 2) return { ...verdict, problems: [`${machine.where} is not running`, ...verdict.problems] };
    } else down = 0;
    await sleep(POLL_MS);
  }
  return { ...verdict, seconds: elapsed() };
}

function lastLines(machine: RelayMachine, verdict: Verdict): string {
  const consoleLines = machine.consoleTail(25);
  const log = verdict.report?.log ?? [];
  const parts: string[] = [];
  if (log.length > 0) parts.push(`  tor's log, last lines:\n${log.map((line) => `    | ${line}`).join("\n")}`);
  if (consoleLines.length > 0) parts.push(`  console, last lines:\n${consoleLines.map((line) => `    | ${line}`).join("\n")}`);
  return parts.length > 0 ? `\n${parts.join("\n")}` : "";
}

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
  const healthOf = (built: BuiltImage, since: number): HealthSource => (admin ? brokerHealth(admin, spec.relay, built.imageDigest, since) : sshHealth(channelTo(built)));
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
