/**
 * Collects a running relay's onion keys and tor state over the pinned
 * channel, right before its image is rebuilt. Whether there is anything to
 * collect is the target's answer (is there a VM or QEMU process, and does it
 * run?), never a guess from Pulumi's state. The host key pinned is that of
 * the image the relay runs now (recorded when it was last found healthy), so
 * a host-key rotation collects with the old key and ships the new one.
 * Prints a summary only: never key bytes. Nothing is left outside the
 * relay's private collected directory, whatever happens.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { brokerStatus } from "../../lib/broker/broker-admin";
import { validateCollectedState } from "../../lib/image/collected-state";
import { askRelay } from "../../lib/deploy/relay-channel";
import { readRunningRecord } from "../../lib/steps/rollout-records";
import { relayMachine } from "../../lib/deploy/relay-machine";
import type { StepSpec } from "../../lib/steps/steps";
import { adminEndpoint } from "../../lib/broker/image-registration";
import { shellQuote } from "../../lib/core/shell-quote";
import { StepFailure } from "../../lib/steps/step-failure";
import { pushFreshnessSeconds } from "../../lib/broker/broker-agent";

export const collectedDir = (relayDir: string, imageDigest: string) => join(relayDir, "collected", imageDigest.slice(0, 12));

/** Keeps only the newest collection: older ones hold superseded onion keys. */
function keepOnly(relayDir: string, keep: string): void {
  for (const entry of readdirSync(join(relayDir, "collected"))) {
    if (join(relayDir, "collected", entry) !== keep) rmSync(join(relayDir, "collected", entry), { recursive: true, force: true });
  }
}

function freshOnionKeys(spec: StepSpec<"collect-state">, out: string, reason: string): void {
  console.error(
    `WARNING relay ${spec.relay}: ${reason}\n` +
      `WARNING allowFreshOnionKeys is set: the new image gets FRESH onion keys. The relay will fail circuits for hours\n` +
      `WARNING until clients fetch a consensus with its new keys, and it loses its bandwidth history.`,
  );
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { mode: 0o700 });
  console.log(`relay ${spec.relay}: nothing collected (allowFreshOnionKeys)`);
}

/**
 * Broker mode: a relay on a broker-mode image has no SSH server; its onion
 * keys and state are what it last pushed to the broker, which the new image
 * fetches at boot. They count as current when the push is recent (onion keys
 * rotate every few weeks); a running relay that has stopped pushing may hold
 * newer ones, so the redeploy stops. Returns false for a relay on an
 * image-mode image (moving to broker mode): collect over SSH as before.
 */
async function brokerHoldsCurrentKeys(spec: StepSpec<"collect-state">, state: "running" | "stopped", where: string): Promise<boolean> {
  const broker = spec.broker!;
  let status;
  try {
    status = (await brokerStatus(adminEndpoint(broker.admin))).relays.find((relay) => relay.relay === spec.relay);
  } catch (err) {
    throw new StepFailure(`relay ${spec.relay}: cannot ask the key broker whether it holds the relay's current onion keys: ${(err as Error).message}. Nothing was changed.`);
  }
  if (status?.revoked) throw new StepFailure(`relay ${spec.relay}: it is revoked at the key broker; a new image would get nothing. Re-enrol it first (npm run broker -- reenroll ${shellQuote(spec.relay)}). Nothing was changed.`);
  const lastPush = status?.lastPush ? new Date(status.lastPush) : undefined;
  const age = lastPush ? Math.round((Date.now() - lastPush.getTime()) / 1000) : undefined;
  // A relay that pushes runs a broker-mode image, whatever this host last recorded (an interrupted rollout).
  const recorded = readRunningRecord(spec.relayDir);
  const onBrokerImage = (lastPush !== undefined && age! <= pushFreshnessSeconds(broker.pushIntervalSeconds)) || recorded?.recipe.broker !== undefined;
  if (!onBrokerImage) return false; // an image-mode relay (moving to broker mode), or one never deployed from here: over SSH
  if (lastPush && (state === "stopped" || age! <= pushFreshnessSeconds(broker.pushIntervalSeconds))) {
    console.log(`relay ${spec.relay}: ${where} ${state === "stopped" ? "is stopped" : "runs"}; the key broker holds the onion keys and state it pushed at ${lastPush.toISOString()} (${age}s ago): the new image fetches them`);
    return true;
  }
  const reason = lastPush
    ? `${where} ${state === "stopped" ? "is stopped" : "runs"}, but its last push to the key broker was ${age}s ago (at ${lastPush.toISOString()}; it pushes every ${broker.pushIntervalSeconds}s): it may hold onion keys the broker does not have`
    : `${where} ${state === "stopped" ? "is stopped" : "runs"}, but it never pushed its onion keys to the key broker`;
  if (spec.allowFreshOnionKeys) {
    console.error(
      `WARNING relay ${spec.relay}: ${reason}\n` +
        `WARNING allowFreshOnionKeys is set: the new image gets the onion keys the broker holds (or tor makes fresh ones). If the relay\n` +
        `WARNING rotated them since, it fails circuits for hours until clients fetch a consensus with the keys it uses.`,
    );
    return true;
  }
  throw new StepFailure(
    `relay ${spec.relay}: ${reason}. Nothing was changed. See npm run broker -- status and the relay's console; once it pushes again, run again. ` +
      `To redeploy anyway with the onion keys the broker has (or fresh ones), set allowFreshOnionKeys: true on this relay.`,
  );
}

export async function collectState(spec: StepSpec<"collect-state">): Promise<void> {
  const out = collectedDir(spec.relayDir, spec.imageDigest);
  mkdirSync(join(spec.relayDir, "collected"), { recursive: true, mode: 0o700 });
  const machine = relayMachine(spec.target);
  const state = await machine.state();
  if (state === "absent") {
    rmSync(out, { recursive: true, force: true });
    mkdirSync(out, { mode: 0o700 });
    keepOnly(spec.relayDir, out);
    console.log(`relay ${spec.relay}: nothing runs there yet (${machine.where}): first deploy, nothing to collect`);
    return;
  }
  if (spec.broker && (await brokerHoldsCurrentKeys(spec, state, machine.where))) {
    if (!existsSync(out)) mkdirSync(out, { mode: 0o700 });
    // Nothing of the relay's is on this host: the broker holds its keys.
    for (const entry of readdirSync(out)) rmSync(join(out, entry), { recursive: true, force: true });
    keepOnly(spec.relayDir, out);
    return;
  }
  if (state === "stopped") {
    const reason = `${machine.where} exists but is stopped: the onion keys it had lived in its RAM and are gone`;
    if (spec.allowFreshOnionKeys) return freshOnionKeys(spec, out, reason);
    throw new StepFailure(
      `relay ${spec.relay}: ${reason}. Nothing was changed. Start it (it boots its current image and keys), then run again; ` +
        `to redeploy anyway with fresh onion keys (circuits fail for hours), set allowFreshOnionKeys: true on this relay.`,
    );
  }

  const running = readRunningRecord(spec.relayDir);
  const channel = { ...spec.channel, hostPublicKey: running?.hostPublicKey ?? spec.channel.hostPublicKey };
  const work = mkdtempSync(join(spec.relayDir, "collected", ".incoming-"));
  try {
    const answer = await askRelay(channel, "export-state");
    if (!answer.ok || answer.stdout.length === 0) {
      const reason = `cannot collect onion keys and state over SSH from ${spec.channel.host}:${spec.channel.port}: ${answer.error || "the relay sent nothing"}`;
      if (spec.allowFreshOnionKeys) return freshOnionKeys(spec, out, reason);
      throw new StepFailure(
        `relay ${spec.relay}: ${reason}\nNothing was changed and the running relay was left alone. Make its SSH server reachable and run again; ` +
          `to redeploy anyway with fresh onion keys (circuits fail for hours), set allowFreshOnionKeys: true on this relay.`,
      );
    }
    const extracted = join(work, "collected");
    mkdirSync(extracted, { mode: 0o700 });
    const tar = spawnSync("tar", ["-x", "--no-same-owner", "-C", extracted], { input: answer.stdout });
    if (tar.status !== 0) throw new StepFailure(`relay ${spec.relay}: the relay's state export is not a tar archive: ${tar.stderr.toString().trim()}`);
    let summary;
    try {
      summary = validateCollectedState(extracted);
    } catch (err) {
      throw new StepFailure(`relay ${spec.relay}: ${(err as Error).message}`);
    }
    rmSync(out, { recursive: true, force: true });
    renameSync(extracted, out);
    keepOnly(spec.relayDir, out);
    console.log(
      `relay ${spec.relay}: collected ${summary.files.join(", ")}` + (summary.lastRotatedOnionKey ? ` (onion key last rotated ${summary.lastRotatedOnionKey})` : "") + ` at ${new Date().toISOString()}`,
    );
  } finally {
    // The incoming directory held the relay's keys until they were validated and moved: nothing stays behind.
    rmSync(work, { recursive: true, force: true });
  }
}

/** When the relay leaves the stack: its collected keys go with it. */
export function removeCollectedState(spec: StepSpec<"collect-state">): void {
  rmSync(join(spec.relayDir, "collected"), { recursive: true, force: true });
  console.log(`relay ${spec.relay}: removed its collected state`);
}
