/**
 * The status board's judgement (lib/ops/fleet-status.ts) and the QEMU command
 * line reading of lib/ops/status-probe.ts. Signing certificates are made by the
 * real tor (`--keygen`) and dated by it (`--key-expiration`); health answers
 * are written in the lines relay-health prints (test/unit/relay-health.test.ts
 * runs the script itself).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { judgeRelay, renderStatusTable, statusExitCode, type DesiredRelay, type RelayObservation } from "../../lib/ops/fleet-status";
import { initRelayKeys, torSigningKeyExpiration } from "../../lib/tor/key-store";
import { qemuRelayArgs } from "../../lib/local/qemu";
import { parseHealthReport } from "../../lib/ops/relay-health";
import { cdromOfQemuCommandLine } from "../../lib/ops/status-probe";
import { privateTmpDir } from "../support/tmp";
import { pushFreshnessSeconds } from "../../lib/broker/broker-agent";

const IMAGE = "1".repeat(64);
const OTHER = "2".repeat(64);
const RSA = "A".repeat(40);
const ED = "B".repeat(43);
const NOW = Date.parse("2026-12-01T12:00:00Z");
const POLICY = { now: NOW, certificate: { warnDays: 10, errorDays: 2 } };

/** A relay's answer as relay-health prints it. */
type Answer = { image?: string; tor?: boolean; cert?: Buffer; rotated?: string; ports?: number[]; time?: number };
function answer(options: Answer = {}): string {
  const lines = [
    `image ${JSON.stringify({ relay: "r1", nickname: "RelayOne", imageDigest: options.image ?? IMAGE })}`,
    `time ${Math.round(options.time ?? NOW / 1000)}`,
    ...(options.tor === false ? [] : ["tor 152"]),
    "resolver 134",
    `fingerprint RelayOne ${RSA}`,
    `fingerprint-ed25519 RelayOne ${ED}`,
    ...(options.cert ? [`signing-cert ${options.cert.toString("base64")}`] : []),
    ...(options.rotated ? [`onion-key-rotated ${options.rotated}`] : []),
    // 0.0.0.0:9001 listening (st 0A), as /proc/net/tcp shows it
    ...(options.ports ?? [9001]).map((port) => `tcp 0: 00000000:${port.toString(16).toUpperCase().padStart(4, "0")} 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1 0000000000000000 100 0 0 10 0`),
    "mode /etc 755",
  ];
  return lines.join("\n") + "\n";
}

const desired = (overrides: Partial<DesiredRelay> = {}): DesiredRelay => ({
  relay: "r1",
  nickname: "RelayOne",
  node: "pve1",
  imageDigest: IMAGE,
  rsaFingerprint: RSA,
  ed25519Identity: ED,
  signingCertExpiresAt: "2026-12-30T00:00:00.000Z",
  orPort: 9001,
  exit: false,
  healthVia: "ssh",
  snp: false,
  ...overrides,
});

/** A time as tor's state file writes it. */
const torTime = (ms: number) => new Date(ms).toISOString().slice(0, 19).replace("T", " ");

/** A running machine and the relay's answer, made at `at` (seconds) by the relay's clock and ours. */
const running = (options: Answer = {}, at = NOW / 1000): RelayObservation => ({
  machine: { where: "VM 9101 on pve1", state: "running", imageDigest: IMAGE },
  health: { report: parseHealthReport(answer({ ...options, time: at })), at },
});

describe("judging a relay", () => {
  const store = privateTmpDir("fleet-status");
  let shortCert: Buffer;
  let shortExpiry: Date;
  let longCert: Buffer;

  beforeAll(() => {
    // Real certificates, made by tor: one for 5 days, one for 30.
    shortCert = readFileSync(join(initRelayKeys(store, "short", { nickname: "Short" }, 5), "ed25519_signing_cert"));
    shortExpiry = torSigningKeyExpiration(join(store, "short"));
    longCert = readFileSync(join(initRelayKeys(store, "long", { nickname: "Long" }, 30), "ed25519_signing_cert"));
  }, 60_000);

  it("finds a relay healthy that runs the stack's image with tor up, its fingerprints, a valid certificate and a young onion key", () => {
    const row = judgeRelay(desired(), running({ cert: longCert, rotated: torTime(Date.now() - 86_400_000) }, Date.now() / 1000), { ...POLICY, now: Date.now() });
    expect(row.attention).toEqual([]);
    expect(row).toMatchObject({ runningImage: IMAGE, machine: "running", tor: "up", fingerprint: "ok", signingCert: { source: "relay", level: "ok" } });
    expect(statusExitCode([row])).toBe(0);
  });

  it("dates the certificate the relay holds as tor does, and warns under warnDays", () => {
    const now = shortExpiry.getTime() - 5 * 86_400_000;
    const row = judgeRelay(desired(), running({ cert: shortCert }, now / 1000), { ...POLICY, now });
    expect(row.signingCert).toMatchObject({ source: "relay", expiresAt: shortExpiry.toISOString(), daysLeft: 5, level: "warn" });
    expect(row.attention).toEqual([`its signing certificate expires in 5.0 days (${shortExpiry.toISOString()}); renew it on the key-generation host (npm run keys -- renew r1) and run pulumi up`]);
    const expired = judgeRelay(desired(), running({ cert: shortCert }, shortExpiry.getTime() / 1000 + 3600), { ...POLICY, now: shortExpiry.getTime() + 3_600_000 });
    expect(expired.signingCert.level).toBe("error");
    expect(expired.attention[0]).toMatch(/^its signing certificate expired at /);
  });

  it("falls back to the deployed certificate's date when the relay does not show one, and says so", () => {
    const row = judgeRelay(desired({ signingCertExpiresAt: "2026-12-02T12:00:00.000Z" }), running(), POLICY);
    expect(row.signingCert).toEqual({ source: "deployed", expiresAt: "2026-12-02T12:00:00.000Z", daysLeft: 1, level: "error" });
    expect(renderStatusTable([row])).toContain("* certificate as deployed");
  });

  it("calls a machine that is gone down, whatever its last report said", () => {
    const row = judgeRelay(desired(), { machine: { where: "the QEMU process of .runtime/local/r1", state: "absent" }, health: { report: parseHealthReport(answer()), at: NOW / 1000 - 10 } }, POLICY);
    expect(row).toMatchObject({ machine: "absent", tor: "down", fingerprint: "unknown" });
    // Nothing runs: the image its last answer named is not what it runs now.
    expect(row.runningImage).toBeUndefined();
    expect(row.attention[0]).toBe("the QEMU process of .runtime/local/r1 is absent");
    expect(statusExitCode([row])).toBe(1);
  });

  it("reads the gate's own problems: tor stopped, a wrong fingerprint, a closed ORPort", () => {
    const row = judgeRelay(desired({ rsaFingerprint: "C".repeat(40) }), running({ tor: false, ports: [22] }), POLICY);
    expect(row.tor).toBe("down");
    expect(row.fingerprint).toBe("wrong");
    expect(row.attention).toEqual(expect.arrayContaining(["tor is not running", "nothing listens on its ORPort 9001", expect.stringMatching(/RSA fingerprint A{40}, not the relay's C{40}/)]));
  });

  it("names the image a relay runs instead of the stack's, and a rollback that left it there", () => {
    const seen = running({ image: OTHER });
    seen.machine.imageDigest = OTHER;
    expect(judgeRelay(desired(), seen, POLICY).attention).toEqual([`it runs image 222222222222, not the stack's 111111111111: run pulumi up`]);
    seen.rolledBack = { imageDigest: OTHER, failedImageDigest: IMAGE, at: "2026-12-01T11:00:00Z", reason: "tor is not running" };
    expect(judgeRelay(desired(), seen, POLICY).attention[0]).toBe(
      "it runs image 222222222222, not the stack's 111111111111 (rolled back at 2026-12-01T11:00:00Z because image 111111111111 did not come back: tor is not running)",
    );
  });

  it("counts a broker-mode report only while it is fresh: two push intervals and a minute", () => {
    expect(pushFreshnessSeconds(30)).toBe(120);
    const broker = desired({ healthVia: "broker", pushIntervalSeconds: 30 });
    expect(judgeRelay(broker, running({}, NOW / 1000 - 100), POLICY).attention).toEqual([]);
    const stale = judgeRelay(broker, running({}, NOW / 1000 - 200), POLICY);
    expect(stale.attention[0]).toBe("its last health report is 200s old (more than 120s): it stopped pushing to the key broker");
    expect(stale.tor).toBe("unknown");
  });

  it("ages the onion key from tor's LastRotatedOnionKey, and warns past tor's 28-day rotation", () => {
    expect(judgeRelay(desired(), running({ rotated: "2026-11-21 12:00:00" }), POLICY).onionKey).toEqual({ rotatedAt: "2026-11-21T12:00:00.000Z", ageDays: 10, level: "ok" });
    const old = judgeRelay(desired(), running({ rotated: "2026-10-22 12:00:00" }), POLICY);
    expect(old.onionKey).toMatchObject({ ageDays: 40, level: "warn" });
    expect(old.attention).toEqual(["its onion key is 40.0 days old: tor rotates it every 28 days, so its state is not being kept"]);
  });

  it("counts vulnerable packages only for the image the relay runs", () => {
    const seen = { ...running(), vulnerabilities: { imageDigest: IMAGE, count: 2, worst: "High", evaluatedAt: "2026-12-01T00:00:00Z" } };
    const row = judgeRelay(desired(), seen, POLICY);
    expect(row.vulnerable).toEqual({ count: 2, worst: "High", level: "warn" });
    expect(row.attention).toEqual(["2 vulnerable packages in its image (worst: High): npm run vulns says which, and the fixed versions"]);
    const stale = judgeRelay(desired(), { ...seen, vulnerabilities: { ...seen.vulnerabilities, imageDigest: OTHER } }, POLICY);
    expect(stale.vulnerable).toBeUndefined();
    expect(stale.attention).toEqual([]);
  });

  it("says when the mirror serves package updates the running image lacks, only for the image the relay runs", () => {
    const seen = { ...running(), updates: { imageDigest: IMAGE, count: 1, changes: "tor 0.4.9.11-1 → 0.4.9.12-1", asOf: "2026-12-01T11:00:00.000Z" } };
    const row = judgeRelay(desired(), seen, POLICY);
    expect(row.updates).toEqual({ count: 1, changes: "tor 0.4.9.11-1 → 0.4.9.12-1", asOf: "2026-12-01T11:00:00.000Z", level: "warn" });
    expect(row.attention).toEqual([
      "fixes waiting: its image lacks 1 package update the mirror serves (as of 2026-12-01T11:00:00.000Z): tor 0.4.9.11-1 → 0.4.9.12-1; pulumi up deploys them (a held stack: npm run packages -- update first)",
    ]);
    expect(judgeRelay(desired(), { ...seen, updates: { ...seen.updates, count: 0, changes: "" } }, POLICY).attention).toEqual([]);
    expect(judgeRelay(desired(), { ...seen, updates: { ...seen.updates, imageDigest: OTHER } }, POLICY).updates).toBeUndefined();
  });

  it("shows the broker's attestation verdict, and a refusal after it as an error", () => {
    const snp = desired({ healthVia: "broker", pushIntervalSeconds: 30, snp: true });
    const accepted = { ...running(), attestation: { verdict: "accepted", evidenceKind: "snp", time: "2026-12-01T11:59:30Z" } };
    expect(judgeRelay(snp, accepted, POLICY)).toMatchObject({ attestation: { verdict: "accepted (snp)", level: "ok" }, attention: [] });
    const refused = { ...accepted, attestation: { ...accepted.attestation, refusedAt: "2026-12-01T11:59:50Z", refusal: "refused (measurement mismatch)" } };
    const row = judgeRelay(snp, refused, POLICY);
    expect(row.attestation).toEqual({ verdict: "refused: refused (measurement mismatch)", level: "error" });
    expect(row.attention).toContain("the key broker refused it at 2026-12-01T11:59:50Z: refused (measurement mismatch)");
    expect(judgeRelay(snp, running(), POLICY).attention).toEqual(["the key broker has no attestation from it"]);
  });

  it("shows the connection attempts its per-source limits dropped, and limits the image has but did not load as attention", () => {
    const counters = (packets: number[]) =>
      `limits ${JSON.stringify({ nftables: [{ metainfo: { version: "1.0.6" } }, ...["invalid_dropped", "orport_over_rate", "orport_over_connections"].map((name, i) => ({ counter: { family: "inet", name, table: "diskless_relay", handle: i + 2, packets: packets[i], bytes: 60 * packets[i]! } })), { counter: { family: "inet", name: "orport_over_rate", table: "someone_else", handle: 2, packets: 1000, bytes: 1 } }] })}\n`;
    const observed = (extra: string): RelayObservation => ({ machine: { where: "VM 9101 on pve1", state: "running", imageDigest: IMAGE }, health: { report: parseHealthReport(answer() + extra), at: NOW / 1000 } });
    const row = judgeRelay(desired(), observed(counters([5, 40, 2])), POLICY);
    // Invalid packets are not connection attempts; another table's counters are not the relay's.
    expect(row.limits?.dropped).toBe(42);
    expect(row.attention).toEqual([]);
    const table = renderStatusTable([row]);
    expect(table).toMatch(/\s42\s+healthy$/m);
    expect(table).toContain("DROPPED: connection attempts over the per-source limits since the relay booted");
    const missing = judgeRelay(desired(), observed("limits-missing\n"), POLICY);
    expect(missing.limits).toBeUndefined();
    expect(missing.attention).toEqual(["its connection limits are not loaded (nftables lists none of their counters): relay-hardening failed at boot, and its console says why"]);
  });

  it("renders one line per relay, then what needs attention", () => {
    const ok = judgeRelay(desired(), running({ cert: longCert, rotated: torTime(Date.now() - 86_400_000) }, Date.now() / 1000), { ...POLICY, now: Date.now() });
    const down = judgeRelay(desired({ relay: "r2", nickname: "RelayTwo" }), { machine: { where: "VM 9102 on pve1", state: "stopped" } }, POLICY);
    const table = renderStatusTable([ok, down]);
    expect(table.split("\n")[0]).toMatch(/^RELAY\s+NODE\s+IMAGE \(STACK\)\s+RUNNING\s+MACHINE\s+TOR\s+FINGERPRINT\s+CERT DAYS\s+ONION KEY\s+VULNS\s+ATTESTATION\s+DROPPED\s+STATE$/);
    expect(table).toMatch(/^r1\s+pve1\s+111111111111\s+same\s+running\s+up\s+ok\s+\d+\.\d\s+\d+\.\dd\s+-\s+-\s+-\s+healthy$/m);
    expect(table).toMatch(/^r2\s+pve1\s+111111111111\s+\?\s+stopped\s+down\s+unknown\s.*ATTENTION$/m);
    expect(table).toContain("r2 (RelayTwo) needs attention:\n  - VM 9102 on pve1 is not running: the next pulumi up starts it again\n  - no health answer");
    expect(statusExitCode([ok, down])).toBe(1);
  });
});

describe("the ISO a QEMU process boots", () => {
  it("is read back from the command line the program gives QEMU, commas in the path included", () => {
    const iso = "/srv/build, odd/relay-RelayOne-111111111111-abcdef01.iso";
    const argv = ["qemu-system-x86_64", ...qemuRelayArgs({ iso, varsFile: "/tmp/vars.fd", memoryMiB: 512, cores: 1, mac: "52:54:00:00:00:01", network: { kind: "tap", ifname: "tap0" }, serialLog: "/tmp/console.log" })];
    expect(cdromOfQemuCommandLine(argv)).toBe(iso);
    expect(cdromOfQemuCommandLine(["qemu-system-x86_64", "-m", "512"])).toBeUndefined();
  });
});
