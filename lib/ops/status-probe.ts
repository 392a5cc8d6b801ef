/**
 * What `npm run status` looks at, relay by relay, without changing anything:
 * the machine (the QEMU process and the ISO it runs, or the Proxmox VE VM and
 * its description), the relay's health answer (over the pinned SSH channel in
 * image mode, from its pushes to the key broker in broker mode), the broker's
 * attestation verdict, the build host's rollback record and the last
 * vulnerability report. Judged by lib/ops/fleet-status.ts.
 * I/O: /proc and xorriso (QEMU), HTTPS (Proxmox VE, the key broker), ssh.
 */
import { existsSync, readFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { MEASUREMENT_MISMATCH, type BrokerRelayStatus } from "../broker/broker-admin";
import type { RelayObservation } from "./fleet-status";
import { ISO_LABEL_FILE } from "../image/image-layout";
import { plannedGeneration, runningPid } from "../local/local-vm";
import { commandLineOf } from "../core/pid-file";
import { vmConfig, vmState, type ProxmoxConnection } from "../proxmox/proxmox-api";
import { imageDigestOfVmDescription } from "../deploy/relay-reach";
import { parseHealthReport } from "./relay-health";
import { readRollbackRecord, readRunningRecord } from "../steps/rollout-records";
import { runTool, withPrivateTmpDir } from "../core/run";
import type { RelayChannel, RelayTarget } from "../steps/steps";
import { sshHealth } from "./health-gate";

type Machine = RelayObservation["machine"];

/** The ISO a QEMU process boots: its -drive …,media=cdrom argument (commas in paths are doubled). */
export function cdromOfQemuCommandLine(argv: string[]): string | undefined {
  for (const arg of argv) {
    if (!/(^|,)media=cdrom(,|$)/.test(arg)) continue;
    const file = /^(?:.*?,)?file=((?:[^,]|,,)*)/.exec(arg)?.[1];
    if (file) return file.replaceAll(",,", ",");
  }
  return undefined;
}

/** The image digest in the ISO's public label (relay.json), or, if it cannot be read, the 12 characters in its name. */
function imageOfIso(iso: string): string | undefined {
  if (existsSync(iso)) {
    try {
      return withPrivateTmpDir("status-label", (dir) => {
        const out = join(dir, ISO_LABEL_FILE);
        // Absolute: xorriso gives some relative addresses a meaning of their own (stdio:, mmc:).
        runTool("xorriso", ["-osirrox", "on", "-indev", resolve(iso), "-extract", `/${ISO_LABEL_FILE}`, out], { what: `reading ${ISO_LABEL_FILE} of ${iso}` });
        const digest = (JSON.parse(readFileSync(out, "utf8")) as { imageDigest?: unknown }).imageDigest;
        return typeof digest === "string" && /^[0-9a-f]{64}$/.test(digest) ? digest : undefined;
      });
    } catch {
      // fall back to the name
    }
  }
  return /^relay-[A-Za-z0-9]+-([0-9a-f]{12})-[0-9a-f]{8}\.iso$/.exec(basename(iso))?.[1];
}

export async function observeMachine(target: RelayTarget, proxmox?: ProxmoxConnection): Promise<Machine> {
  if (target.kind === "qemu") {
    const where = `the QEMU process of ${target.runDir}`;
    // A machine an up started whose QEMU is gone is stopped, as a Proxmox VE VM powered off is: the next up starts it again.
    const notRunning = (): Machine => ({ where, state: plannedGeneration(target.runDir).gone ? "stopped" : "absent" });
    const pid = runningPid(target.runDir);
    if (pid === undefined) return notRunning();
    const argv = commandLineOf(pid);
    if (!argv) return notRunning();
    const iso = cdromOfQemuCommandLine(argv);
    const imageDigest = iso ? imageOfIso(iso) : undefined;
    return { where: `${where} (pid ${pid})`, state: "running", ...(imageDigest ? { imageDigest } : {}) };
  }
  const where = `VM ${target.vmId} on ${target.node}`;
  if (!proxmox) return { where, error: "no Proxmox VE credentials (PROXMOX_API_TOKEN, or the stack's proxmoxApiToken with its passphrase)" };
  try {
    const state = await vmState(proxmox, target.node, target.vmId);
    if (state === "absent") return { where, state };
    const description = (await vmConfig(proxmox, target.node, target.vmId)).description;
    const imageDigest = typeof description === "string" ? imageDigestOfVmDescription(description) : undefined;
    return { where, state, ...(imageDigest ? { imageDigest } : {}) };
  } catch (err) {
    return { where, error: (err as Error).message };
  }
}

/**
 * Image mode: the relay's own answer, over the channel pinned to the host key
 * of the image it was last found healthy on (the rollout's running record).
 */
export async function askHealthOverSsh(channel: Omit<RelayChannel, "hostPublicKey">, relayDir: string): Promise<RelayObservation["health"]> {
  const running = readRunningRecord(relayDir);
  if (!running) return { error: "no healthy image of it is recorded on this build host, so there is no host key to pin (run pulumi up from this build host)" };
  const answer = await sshHealth({ ...channel, hostPublicKey: running.hostPublicKey })();
  if (!answer.ok) return { error: answer.error };
  return { report: parseHealthReport(answer.text), at: answer.now };
}

/** Broker mode: the latest health report the relay pushed with an attested push, and the broker's verdicts. */
export function brokerObservation(status: BrokerRelayStatus | undefined, explainMeasurement?: (imageDigest: string, measurement: string) => string | undefined): Pick<RelayObservation, "health" | "attestation"> {
  if (!status) return { health: { error: "the key broker does not know this relay (pulumi up enrols it)" } };
  const health: RelayObservation["health"] = status.lastHealth
    ? { report: parseHealthReport(status.lastHealth.report), at: Math.round(Date.parse(status.lastHealth.time) / 1000) }
    : { error: status.revoked ? "it is revoked at the key broker" : "it has not pushed a health report to the key broker" };
  const last = status.lastAttestation;
  const refusal = status.lastRefusal;
  const why = refusal?.reason === MEASUREMENT_MISMATCH && refusal.measurement && refusal.imageDigest ? explainMeasurement?.(refusal.imageDigest, refusal.measurement) : undefined;
  const attestation =
    last || refusal
      ? {
          verdict: last?.verdict ?? "none",
          ...(last ? { evidenceKind: last.evidenceKind } : {}),
          time: last?.time ?? "",
          ...(last?.reason ? { reason: last.reason } : {}),
          ...(refusal ? { refusedAt: refusal.time, refusal: `${refusal.verdict}${refusal.reason ? ` (${refusal.reason})` : ""}${why ? `; ${why}` : ""}` } : {}),
        }
      : undefined;
  return { health, ...(attestation ? { attestation } : {}) };
}

export function rollbackObservation(relayDir: string): RelayObservation["rolledBack"] {
  const record = readRollbackRecord(relayDir);
  return record ? { imageDigest: record.imageDigest, failedImageDigest: record.failedImageDigest, at: record.at, reason: record.reason } : undefined;
}
