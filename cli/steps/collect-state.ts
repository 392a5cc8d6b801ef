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
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { validateCollectedState } from "../../lib/collected-state";
import { askRelay } from "../../lib/relay-channel";
import { readRunningRecord } from "../../lib/rollout-records";
import { relayMachine } from "../../lib/relay-targets";
import type { StepSpec } from "../../lib/steps";
import { StepFailure } from "./failure";

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
