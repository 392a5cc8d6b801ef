/**
 * A relay's answer to "health" (images/rootfs/files/usr/local/sbin/relay-health),
 * read and judged. Healthy means: it runs the image we deployed, its clock
 * agrees with ours, tor is running with the relay's fingerprints, its ORPort
 * is listening, an exit's own resolver runs with a configuration it and
 * tor can read, and the connection limits its image carries are loaded
 * (their counters are part of the answer). Pure.
 */
import { parseNftCounters, type LimitCounter } from "../render/hardening";
import { GUEST_PATHS } from "../image/guest-paths";

export interface HealthReport {
  image?: { relay: string; nickname: string; imageDigest: string };
  torPids: number[];
  resolverPids: number[];
  /** The relay's clock when it answered, in seconds since the epoch. */
  time?: number;
  /** From tor's DataDirectory/fingerprint: "Nickname FINGERPRINT". */
  rsaFingerprint?: string;
  ed25519Identity?: string;
  /** tor's DataDirectory/keys/ed25519_signing_cert as the relay holds it (public), base64. */
  signingCert?: Buffer;
  /** tor's state LastRotatedOnionKey: "YYYY-MM-DD HH:MM:SS", UTC. */
  onionKeyRotated?: string;
  listeningPorts: number[];
  /** Octal permission bits by path, e.g. "/etc" → 0o755. */
  modes: Record<string, number>;
  /** The last lines of tor's log. */
  log: string[];
  /** The image carries connection limits (lib/render/hardening.ts). */
  limitsExpected: boolean;
  /** Their counters, when they are loaded. */
  limits?: LimitCounter[];
}

export interface HealthExpectation {
  imageDigest: string;
  rsaFingerprint: string;
  ed25519Identity: string;
  orPort: number;
  exit: boolean;
  /** Our clock when the answer came, in seconds since the epoch. */
  now?: number;
}

/**
 * Clocks further apart than this make tor refuse consensuses and
 * certificates; a relay should never get near it (a VM takes the host's
 * clock at boot).
 */
export const MAX_CLOCK_SKEW_SECONDS = 60;

/** Reads the relay's "key value" lines; unknown keys are ignored, so older images still parse. */
export function parseHealthReport(text: string): HealthReport {
  const report: HealthReport = { torPids: [], resolverPids: [], listeningPorts: [], modes: {}, log: [], limitsExpected: false };
  for (const line of text.split("\n")) {
    const space = line.indexOf(" ");
    const key = space < 0 ? line : line.slice(0, space);
    const value = space < 0 ? "" : line.slice(space + 1);
    switch (key) {
      case "image":
        try {
          report.image = JSON.parse(value) as HealthReport["image"];
        } catch {
          // a label that is not ours: report.image stays undefined
        }
        break;
      case "tor":
        if (/^\d+$/.test(value)) report.torPids.push(Number(value));
        break;
      case "resolver":
        if (/^\d+$/.test(value)) report.resolverPids.push(Number(value));
        break;
      case "time":
        if (/^\d+$/.test(value)) report.time = Number(value);
        break;
      case "fingerprint":
        report.rsaFingerprint = value.split(" ")[1];
        break;
      case "fingerprint-ed25519":
        report.ed25519Identity = value.split(" ")[1];
        break;
      case "signing-cert":
        if (/^[A-Za-z0-9+/]+=*$/.test(value)) report.signingCert = Buffer.from(value, "base64");
        break;
      case "onion-key-rotated":
        if (/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/.test(value)) report.onionKeyRotated = value;
        break;
      case "tcp": {
        // A /proc/net/tcp{,6} line: sl local_address rem_address st …; LISTEN is st 0A.
        const fields = value.trim().split(/\s+/);
        const localPort = fields[1]?.split(":").at(-1);
        if (fields[3] === "0A" && localPort) report.listeningPorts.push(parseInt(localPort, 16));
        break;
      }
      case "mode": {
        const [path, mode] = value.split(" ");
        if (path && mode && /^[0-7]{3,4}$/.test(mode)) report.modes[path] = parseInt(mode, 8);
        break;
      }
      case "log":
        report.log.push(value);
        break;
      case "limits": {
        report.limitsExpected = true;
        const counters = parseNftCounters(value);
        if (counters && counters.length > 0) report.limits = counters;
        break;
      }
      case "limits-missing":
        report.limitsExpected = true;
        break;
    }
  }
  report.listeningPorts = [...new Set(report.listeningPorts)].sort((a, b) => a - b);
  return report;
}

/** What is wrong with the relay, in words; an empty list means healthy. */
export function healthProblems(report: HealthReport, expected: HealthExpectation): string[] {
  const problems: string[] = [];
  if (report.image?.imageDigest !== expected.imageDigest) {
    problems.push(`it runs image ${report.image?.imageDigest?.slice(0, 12) ?? "(unknown)"}, not ${expected.imageDigest.slice(0, 12)}`);
  }
  if (expected.now !== undefined && report.time !== undefined && Math.abs(report.time - expected.now) > MAX_CLOCK_SKEW_SECONDS) {
    problems.push(`its clock is ${report.time - expected.now}s off ours: tor refuses consensuses and certificates outside their validity`);
  }
  if (report.torPids.length === 0) problems.push("tor is not running");
  if (report.rsaFingerprint === undefined) problems.push("tor has not written its fingerprint");
  else if (report.rsaFingerprint.toUpperCase() !== expected.rsaFingerprint.toUpperCase()) {
    problems.push(`tor runs with RSA fingerprint ${report.rsaFingerprint}, not the relay's ${expected.rsaFingerprint}`);
  }
  if (report.ed25519Identity !== undefined && report.ed25519Identity !== expected.ed25519Identity) {
    problems.push(`tor runs with ed25519 identity ${report.ed25519Identity}, not the relay's ${expected.ed25519Identity}`);
  }
  if (!report.listeningPorts.includes(expected.orPort)) problems.push(`nothing listens on its ORPort ${expected.orPort}`);
  if (report.limitsExpected && !report.limits) problems.push("its connection limits are not loaded (nftables lists none of their counters): relay-hardening failed at boot, and its console says why");
  if (expected.exit) {
    const etc = report.modes["/etc"];
    const resolv = report.modes["/etc/resolv.conf"];
    if (etc === undefined || !(etc & 0o001)) problems.push(`/etc is mode ${etc?.toString(8) ?? "unknown"}: tor, once it drops root, cannot reach /etc/resolv.conf and the exit cannot resolve names`);
    else if (resolv === undefined || !(resolv & 0o004)) problems.push(`/etc/resolv.conf is mode ${resolv?.toString(8) ?? "missing"}: tor, once it drops root, cannot read it and the exit cannot resolve names`);
    const resolverConf = report.modes[GUEST_PATHS.RELAY_RESOLVER_CONF];
    if (resolverConf === undefined || !(resolverConf & 0o004)) problems.push(`its resolver's configuration is ${resolverConf === undefined ? "missing" : `mode ${resolverConf.toString(8)}, unreadable by the unbound user`}`);
    else if (report.resolverPids.length === 0) problems.push("its resolver (unbound) is not running: the exit cannot resolve names for its users");
  }
  return problems;
}
