/**
 * The fleet status board (`npm run status`): what each relay should run,
 * what it runs, and whether it needs the operator. The observations are
 * gathered elsewhere (lib/ops/status-probe.ts); here they are judged and
 * rendered. Pure.
 */
import { droppedOverLimits, type LimitCounter } from "../render/hardening";
import { healthProblems, type HealthReport } from "./relay-health";
import { readSigningCert } from "../tor/tor-keys";
import { shellQuote } from "../core/shell-quote";
import { pushFreshnessSeconds } from "../broker/broker-agent";

/** What the stack says a relay is (its config and the stack's relayOutputs). */
export interface DesiredRelay {
  relay: string;
  nickname: string;
  node: string;
  imageDigest: string;
  rsaFingerprint: string;
  ed25519Identity: string;
  /** The certificate the last `pulumi up` deployed. */
  signingCertExpiresAt: string;
  orPort: number;
  exit: boolean;
  /** Where its health comes from: the relay itself over SSH (image mode), or its pushes to the key broker. */
  healthVia: "ssh" | "broker";
  /** Broker mode: a push is expected this often. */
  pushIntervalSeconds?: number;
  /** The relay attests with SEV-SNP before it gets its keys. */
  snp: boolean;
}

type MachineState = "running" | "stopped" | "absent";

export interface RelayObservation {
  /** The VM or QEMU process, and the image it was started with (Proxmox VE's VM description, or the ISO QEMU runs). */
  machine: { where: string; state?: MachineState; imageDigest?: string; error?: string };
  /** The relay's own health answer, with our clock (seconds) when it was made. */
  health?: { report: HealthReport; at: number } | { error: string };
  /** Broker mode: the broker's last attestation verdict and its last refusal. */
  attestation?: { verdict: string; evidenceKind?: string; time: string; reason?: string; refusedAt?: string; refusal?: string };
  /** The build host's record of a rollback that left the relay on an older image. */
  rolledBack?: { imageDigest: string; failedImageDigest: string; at: string; reason: string };
  /** The last `npm run vulns` report for this relay, if it evaluated the image the relay runs. */
  vulnerabilities?: { imageDigest: string; count: number; worst?: string; evaluatedAt: string };
  /**
   * Package updates the mirror served at the last plan on this host that the
   * base of this image lacks (lib/image/package-set.ts pendingUpdates): "tor a → b, …".
   */
  updates?: { imageDigest: string; count: number; changes: string; asOf: string };
}

export interface StatusPolicy {
  /** Our clock, in milliseconds. */
  now: number;
  certificate: { warnDays: number; errorDays: number };
}

type Level = "ok" | "warn" | "error" | "unknown";

export interface RelayStatus {
  relay: string;
  nickname: string;
  node: string;
  desiredImage: string;
  runningImage?: string;
  machine: string;
  tor: "up" | "down" | "unknown";
  /** The fingerprints tor runs with are the relay's own. */
  fingerprint: "ok" | "wrong" | "unknown";
  /** How old the health answer is, in seconds (0 for an answer asked just now). */
  healthAgeSeconds?: number;
  signingCert: { expiresAt: string; daysLeft: number; level: Level; source: "relay" | "deployed" };
  onionKey?: { rotatedAt: string; ageDays: number; level: Level };
  vulnerable?: { count: number; worst?: string; level: Level };
  /** Package updates waiting on the mirror for the image it runs. */
  updates?: { count: number; changes: string; asOf: string; level: Level };
  attestation?: { verdict: string; level: Level };
  /** Its connection limits' counters since boot, and the connection attempts they dropped (a flood shows here). */
  limits?: { dropped: number; counters: LimitCounter[] };
  /** Why the relay needs the operator; empty when it does not. */
  attention: string[];
}

const DAY_MS = 86_400_000;
/** tor's OnionKeyRotationDays default: a key older than this and a day means tor's state was not kept or rotation fails. */
const ONION_KEY_ROTATION_DAYS = 28;
const short = (digest: string | undefined) => (digest ? digest.slice(0, 12) : "?");

function certificate(desired: DesiredRelay, report: HealthReport | undefined, policy: StatusPolicy): { status: RelayStatus["signingCert"]; problem?: string } {
  let expiresAt = desired.signingCertExpiresAt;
  let source: "relay" | "deployed" = "deployed";
  if (report?.signingCert) {
    try {
      expiresAt = readSigningCert(report.signingCert).expiresAt.toISOString();
      source = "relay";
    } catch {
      // an unreadable certificate: the deployed one's date stands, and the fingerprint check says more
    }
  }
  const daysLeft = (Date.parse(expiresAt) - policy.now) / DAY_MS;
  const level: Level = daysLeft < policy.certificate.errorDays ? "error" : daysLeft < policy.certificate.warnDays ? "warn" : "ok";
  const renew = `renew it on the key-generation host (npm run keys -- renew ${shellQuote(desired.relay)}) and run pulumi up`;
  const problem =
    daysLeft <= 0
      ? `its signing certificate expired at ${expiresAt}: tor stops using it; ${renew}`
      : level !== "ok"
        ? `its signing certificate expires in ${daysLeft.toFixed(1)} days (${expiresAt}); ${renew}`
        : undefined;
  return { status: { expiresAt, daysLeft: Math.round(daysLeft * 10) / 10, level, source }, ...(problem ? { problem } : {}) };
}

/** Judges one relay: every observation that is wrong or missing becomes a sentence of `attention`. */
export function judgeRelay(desired: DesiredRelay, seen: RelayObservation, policy: StatusPolicy): RelayStatus {
  const attention: string[] = [];
  const machine = seen.machine;
  if (machine.error) attention.push(`${machine.where}: cannot tell whether it runs (${machine.error})`);
  // Both targets' next up starts a stopped VM again (lib/deploy/vm-generation.ts, lib/local/local-vm.ts plannedGeneration).
  else if (machine.state !== "running") attention.push(machine.state === "absent" ? `${machine.where} is absent` : `${machine.where} is not running: the next pulumi up starts it again`);

  let report: HealthReport | undefined;
  let healthAgeSeconds: number | undefined;
  if (seen.health && "report" in seen.health) {
    healthAgeSeconds = Math.max(0, Math.round(policy.now / 1000 - seen.health.at));
    const maxAge = desired.healthVia === "broker" ? pushFreshnessSeconds(desired.pushIntervalSeconds ?? 300) : 300;
    if (healthAgeSeconds > maxAge) attention.push(`its last health report is ${healthAgeSeconds}s old (more than ${maxAge}s): it stopped pushing to the key broker`);
    report = seen.health.report;
  } else if (seen.health) attention.push(`no health answer: ${seen.health.error}`);
  else attention.push("no health answer");

  // A stopped machine's last report says how it was, not how it is.
  const live = report && machine.state === "running" && attention.every((line) => !line.startsWith("its last health report"));
  const running = (live ? report?.image?.imageDigest : undefined) ?? machine.imageDigest;
  let tor: RelayStatus["tor"] = "unknown";
  let fingerprint: RelayStatus["fingerprint"] = "unknown";
  if (report && live) {
    tor = report.torPids.length > 0 ? "up" : "down";
    if (report.rsaFingerprint !== undefined) {
      const rsaOk = report.rsaFingerprint.toUpperCase() === desired.rsaFingerprint.toUpperCase();
      const edOk = report.ed25519Identity === undefined || report.ed25519Identity === desired.ed25519Identity;
      fingerprint = rsaOk && edOk ? "ok" : "wrong";
    }
    // The rollout gate's own judgement, against the image the relay runs.
    attention.push(...healthProblems(report, { imageDigest: running ?? desired.imageDigest, rsaFingerprint: desired.rsaFingerprint, ed25519Identity: desired.ed25519Identity, orPort: desired.orPort, exit: desired.exit, now: Math.round(policy.now / 1000) - (healthAgeSeconds ?? 0) }));
  } else if (machine.state === "running" || machine.error) {
    // Without a fresh answer nothing is known of tor.
  } else tor = "down";

  if (running && running !== desired.imageDigest) {
    const rollback = seen.rolledBack?.imageDigest === running ? ` (rolled back at ${seen.rolledBack.at} because image ${short(seen.rolledBack.failedImageDigest)} did not come back: ${seen.rolledBack.reason})` : "";
    attention.push(`it runs image ${short(running)}, not the stack's ${short(desired.imageDigest)}${rollback || ": run pulumi up"}`);
  }
  if (machine.imageDigest && report?.image?.imageDigest && machine.imageDigest !== report.image.imageDigest) {
    attention.push(`${machine.where} was started with image ${short(machine.imageDigest)}, but the relay says it runs ${short(report.image.imageDigest)}`);
  }

  const cert = certificate(desired, live ? report : undefined, policy);
  if (cert.problem) attention.push(cert.problem);

  let onionKey: RelayStatus["onionKey"];
  if (report?.onionKeyRotated) {
    const rotated = Date.parse(`${report.onionKeyRotated.replace(" ", "T")}Z`);
    const ageDays = (policy.now - rotated) / DAY_MS;
    const level: Level = ageDays > ONION_KEY_ROTATION_DAYS + 1 ? "warn" : "ok";
    onionKey = { rotatedAt: new Date(rotated).toISOString(), ageDays: Math.round(ageDays * 10) / 10, level };
    if (level !== "ok") attention.push(`its onion key is ${ageDays.toFixed(1)} days old: tor rotates it every ${ONION_KEY_ROTATION_DAYS} days, so its state is not being kept`);
  }

  let vulnerable: RelayStatus["vulnerable"];
  const vulns = seen.vulnerabilities;
  if (vulns && running && vulns.imageDigest === running) {
    vulnerable = { count: vulns.count, ...(vulns.worst ? { worst: vulns.worst } : {}), level: vulns.count > 0 ? "warn" : "ok" };
    if (vulns.count > 0) attention.push(`${vulns.count} vulnerable package${vulns.count === 1 ? "" : "s"} in its image${vulns.worst ? ` (worst: ${vulns.worst})` : ""}: npm run vulns says which, and the fixed versions`);
  }

  let updates: RelayStatus["updates"];
  if (seen.updates && running && seen.updates.imageDigest === running) {
    const { count, changes, asOf } = seen.updates;
    updates = { count, changes, asOf, level: count > 0 ? "warn" : "ok" };
    if (count > 0) attention.push(`fixes waiting: its image lacks ${count} package update${count === 1 ? "" : "s"} the mirror serves (as of ${asOf}): ${changes}; pulumi up deploys them (a held stack: npm run packages -- update first)`);
  }

  let attestation: RelayStatus["attestation"];
  if (seen.attestation) {
    const { verdict, evidenceKind, refusedAt, refusal } = seen.attestation;
    const refusedLast = refusedAt !== undefined && Date.parse(refusedAt) > Date.parse(seen.attestation.time || "1970-01-01T00:00:00Z");
    // "released" (keys at boot) and "accepted" (a push) are the broker's two good verdicts.
    const good = verdict === "released" || verdict === "accepted";
    const shown = `${verdict}${evidenceKind ? ` (${evidenceKind})` : ""}`;
    attestation = { verdict: refusedLast ? `refused: ${refusal}` : shown, level: refusedLast ? "error" : good ? "ok" : "warn" };
    if (!refusedLast && !good) attention.push(`the key broker's last verdict on it: ${shown}`);
    if (refusedLast) attention.push(`the key broker refused it at ${refusedAt}: ${refusal}`);
  } else if (desired.snp && desired.healthVia === "broker") attention.push("the key broker has no attestation from it");

  return {
    relay: desired.relay,
    nickname: desired.nickname,
    node: desired.node,
    desiredImage: desired.imageDigest,
    ...(running ? { runningImage: running } : {}),
    machine: machine.error ? "unknown" : (machine.state ?? "unknown"),
    tor,
    fingerprint,
    ...(healthAgeSeconds !== undefined ? { healthAgeSeconds } : {}),
    signingCert: cert.status,
    ...(onionKey ? { onionKey } : {}),
    ...(vulnerable ? { vulnerable } : {}),
    ...(updates ? { updates } : {}),
    ...(attestation ? { attestation } : {}),
    ...(live && report?.limits ? { limits: { dropped: droppedOverLimits(report.limits), counters: report.limits } } : {}),
    attention: [...new Set(attention)],
  };
}

/** 0 when no relay needs the operator, 1 otherwise. */
export const statusExitCode = (rows: RelayStatus[]) => (rows.some((row) => row.attention.length > 0) ? 1 : 0);

/** The board: one line per relay, then what needs attention, relay by relay. */
export function renderStatusTable(rows: RelayStatus[]): string {
  const header = ["RELAY", "NODE", "IMAGE (STACK)", "RUNNING", "MACHINE", "TOR", "FINGERPRINT", "CERT DAYS", "ONION KEY", "VULNS", "ATTESTATION", "DROPPED", "STATE"];
  const lines = rows.map((row) => [
    row.relay,
    row.node,
    short(row.desiredImage),
    row.runningImage === undefined ? "?" : row.runningImage === row.desiredImage ? "same" : short(row.runningImage),
    row.machine,
    row.tor,
    row.fingerprint,
    `${row.signingCert.daysLeft.toFixed(1)}${row.signingCert.source === "deployed" ? "*" : ""}`,
    row.onionKey ? `${row.onionKey.ageDays.toFixed(1)}d` : "?",
    row.vulnerable ? String(row.vulnerable.count) : "-",
    row.attestation?.verdict ?? "-",
    row.limits ? String(row.limits.dropped) : "-",
    row.attention.length === 0 ? "healthy" : "ATTENTION",
  ]);
  const widths = header.map((title, i) => Math.max(title.length, ...lines.map((line) => line[i]!.length)));
  const format = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd();
  const out = [format(header), ...lines.map(format)];
  const notes: string[] = [];
  if (rows.some((row) => row.signingCert.source === "deployed")) notes.push("* certificate as deployed: the relay did not show its own");
  if (rows.some((row) => !row.vulnerable)) notes.push("VULNS -: not evaluated for the image it runs (npm run vulns)");
  if (rows.some((row) => row.limits)) notes.push("DROPPED: connection attempts over the per-source limits since the relay booted (limits in the stack config)");
  if (notes.length > 0) out.push("", ...notes);
  for (const row of rows.filter((r) => r.attention.length > 0)) {
    out.push("", `${row.relay} (${row.nickname}) needs attention:`, ...row.attention.map((line) => `  - ${line}`));
  }
  return out.join("\n") + "\n";
}
