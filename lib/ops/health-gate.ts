/**
 * The health gate a rollout waits at: one answer to "how is the relay?"
 * (over the pinned SSH channel in image mode; the report the relay last
 * pushed to the key broker in broker mode), asked until the relay is healthy
 * on the expected image, the time is up, tor stays down, or its machine is
 * gone. The status board asks the same question once (lib/ops/status-probe.ts).
 * I/O: ssh, the broker's admin API, the relay's machine.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { brokerStatus, MEASUREMENT_MISMATCH, type BrokerAdminEndpoint } from "../broker/broker-admin";
import { askRelay } from "../deploy/relay-channel";
import type { RelayMachine } from "../deploy/relay-machine";
import type { RelayChannel } from "../steps/steps";
import { healthProblems, parseHealthReport, type HealthExpectation, type HealthReport } from "./relay-health";

export interface Verdict {
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
export type HealthSource = () => Promise<HealthAnswer>;

/** Image mode: ask the relay itself, over the pinned SSH channel. */
export const sshHealth =
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
export const brokerHealth =
  (admin: BrokerAdminEndpoint, relay: string, imageDigest: string, since: number, explainMeasurement?: (measurement: string) => string): HealthSource =>
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
      const why = refusal.reason === MEASUREMENT_MISMATCH && refusal.measurement && explainMeasurement ? `; ${explainMeasurement(refusal.measurement)}` : "";
      return { ok: false, error: `the key broker refused it at ${refusal.time}: ${refusal.verdict}${refusal.reason ? ` (${refusal.reason})` : ""}${why}` };
    }
    return { ok: false, error: `it has not pushed a health report to the key broker from image ${imageDigest.slice(0, 12)} yet` };
  };

/** Asks until the relay is healthy, the time is up, or its machine is gone. */
export async function waitHealthy(machine: RelayMachine, ask: HealthSource, expected: HealthExpectation, timeoutSeconds: number): Promise<Verdict> {
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

export function lastLines(machine: RelayMachine, verdict: Verdict): string {
  const consoleLines = machine.consoleTail(25);
  const log = verdict.report?.log ?? [];
  const parts: string[] = [];
  if (log.length > 0) parts.push(`  tor's log, last lines:\n${log.map((line) => `    | ${line}`).join("\n")}`);
  if (consoleLines.length > 0) parts.push(`  console, last lines:\n${consoleLines.map((line) => `    | ${line}`).join("\n")}`);
  return parts.length > 0 ? `\n${parts.join("\n")}` : "";
}
