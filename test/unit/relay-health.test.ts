/**
 * The relay's health answer, read and judged. The answer is produced by the
 * relay's own script (images/rootfs/files/usr/local/sbin/relay-health) run
 * here against relay-like directories and this machine's /proc, with a real
 * tor listening: the parser reads what the script really prints.
 */
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LIMIT_COUNTERS, renderNftRuleset } from "../../lib/render/hardening";
import { DEFAULT_NOTICE_LIMIT, DEFAULT_ORPORT_LIMIT } from "../../lib/config/limits";
import { healthProblems, parseHealthReport, type HealthExpectation } from "../../lib/ops/relay-health";
import { readSigningCert } from "../../lib/tor/tor-keys";
import { repoRoot } from "../support/pulumi";
import { freePort } from "../support/sshd";
import { privateTmpDir } from "../support/tmp";
import { makeGuestRoot } from "../support/guest-root";

const DIGEST = "a".repeat(64);

describe("the health answer of a relay running tor", () => {
  const dir = privateTmpDir("health");
  // The relay's / as the script sees it (RELAY_ROOT).
  const guest = makeGuestRoot(join(dir, "root"));
  const etc = join(guest.root, "etc");
  const data = guest.at("RELAY_TOR_DATA");
  let orPort: number;
  let tor: ReturnType<typeof spawn>;
  let resolver: ReturnType<typeof spawn>;
  let text = "";

  beforeAll(async () => {
    orPort = await freePort();
    writeFileSync(guest.at("RELAY_IMAGE_LABEL"), JSON.stringify({ relay: "h", nickname: "HealthRelay", imageDigest: DIGEST }) + "\n");
    writeFileSync(join(etc, "resolv.conf"), "nameserver 127.0.0.1\n", { mode: 0o644 });
    writeFileSync(guest.at("RELAY_TOR_LOG"), "line one\nline two\n");
    // The exit's resolver, as its image runs it (on a free port: this machine may use 53).
    writeFileSync(guest.at("RELAY_RESOLVER_CONF"), ["server:", "  interface: 127.0.0.1", `  port: ${await freePort()}`, "  do-daemonize: no", '  username: ""', '  chroot: ""', '  pidfile: ""'].join("\n") + "\n", { mode: 0o644 });
    resolver = spawn("unbound", ["-d", "-c", guest.at("RELAY_RESOLVER_CONF")], { stdio: "ignore" });
    tor = spawn("tor", ["-f", "/dev/null", "--defaults-torrc", "/dev/null", "--ignore-missing-torrc", "--DataDirectory", data, "--Nickname", "HealthRelay", "--ORPort", `127.0.0.1:${orPort}`,
      "--PublishServerDescriptor", "0", "--AssumeReachable", "1", "--SocksPort", "0", "--ContactInfo", "test",
      "--DirAuthority", "x orport=1 no-v2 v3ident=0000000000000000000000000000000000000000 127.0.0.1:1 0000000000000000000000000000000000000000"], { stdio: "ignore" });
    const script = join(repoRoot, "images/rootfs/files/usr/local/sbin/relay-health");
    for (let i = 0; i < 60; i++) {
      text = spawnSync(script, { encoding: "utf8", env: { ...process.env, RELAY_ROOT: guest.root } }).stdout;
      const report = parseHealthReport(text);
      if (/^fingerprint-ed25519 /m.test(text) && report.onionKeyRotated && report.listeningPorts.includes(orPort) && report.resolverPids.length > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  });
  afterAll(() => {
    tor?.kill("SIGTERM");
    resolver?.kill("SIGTERM");
  });

  const expected = (): HealthExpectation => {
    const report = parseHealthReport(text);
    return { imageDigest: DIGEST, rsaFingerprint: report.rsaFingerprint ?? "none", ed25519Identity: report.ed25519Identity ?? "none", orPort, exit: true, now: Math.round(Date.now() / 1000) };
  };

  it("reads the image, tor's process, its fingerprints, the listening ports, the modes and tor's log", () => {
    const report = parseHealthReport(text);
    expect(report.image).toEqual({ relay: "h", nickname: "HealthRelay", imageDigest: DIGEST });
    expect(report.torPids).toContain(tor.pid);
    expect(report.resolverPids).toContain(resolver.pid);
    expect(Math.abs(report.time! - Date.now() / 1000)).toBeLessThan(60);
    expect(report.rsaFingerprint).toMatch(/^[0-9A-F]{40}$/);
    expect(report.ed25519Identity).toMatch(/^[A-Za-z0-9+/]{43}$/);
    expect(report.listeningPorts).toContain(orPort);
    expect(report.modes).toMatchObject({ "/etc": 0o755, "/etc/resolv.conf": 0o644, "/etc/relay/unbound.conf": 0o644 });
    expect(report.log).toEqual(["line one", "line two"]);
  });

  it("carries the signing certificate tor holds and when tor last rotated its onion key", () => {
    const report = parseHealthReport(text);
    // The very bytes tor wrote, and a certificate tor made just now: valid for days, not expired.
    expect(report.signingCert).toEqual(readFileSync(join(data, "keys", "ed25519_signing_cert")));
    const expires = readSigningCert(report.signingCert!).expiresAt.getTime();
    expect(expires).toBeGreaterThan(Date.now() + 86_400_000);
    // A tor started without onion keys makes them at once and records that moment in its state.
    const rotated = Date.parse(`${report.onionKeyRotated!.replace(" ", "T")}Z`);
    expect(Math.abs(rotated - Date.now())).toBeLessThan(10 * 60_000);
  });

  it("is healthy exactly when image, fingerprints, ORPort and resolver access are right", () => {
    const report = parseHealthReport(text);
    expect(healthProblems(report, expected())).toEqual([]);
    expect(healthProblems(report, { ...expected(), imageDigest: "b".repeat(64) })).toEqual([`it runs image aaaaaaaaaaaa, not bbbbbbbbbbbb`]);
    expect(healthProblems(report, { ...expected(), rsaFingerprint: "0".repeat(40) })[0]).toMatch(/RSA fingerprint .* not the relay's 0{40}/);
    expect(healthProblems(report, { ...expected(), orPort: 1 })).toEqual(["nothing listens on its ORPort 1"]);
    expect(healthProblems({ ...report, torPids: [] }, expected())).toEqual(["tor is not running"]);
    expect(healthProblems({ ...report, modes: { ...report.modes, "/etc": 0o700 } }, expected())[0]).toMatch(/\/etc is mode 700: tor, once it drops root, cannot reach \/etc\/resolv\.conf/);
    expect(healthProblems({ ...report, modes: { ...report.modes, "/etc/resolv.conf": 0o600 } }, expected())[0]).toMatch(/resolv\.conf is mode 600/);
    expect(healthProblems({ ...report, resolverPids: [] }, expected())).toEqual(["its resolver (unbound) is not running: the exit cannot resolve names for its users"]);
    expect(healthProblems({ ...report, modes: { ...report.modes, "/etc/relay/unbound.conf": 0o600 } }, expected())[0]).toMatch(/mode 600, unreadable by the unbound user/);
    expect(healthProblems(report, { ...expected(), now: report.time! + 3600 })).toEqual(["its clock is -3600s off ours: tor refuses consensuses and certificates outside their validity"]);
    // A non-exit does not resolve for anyone: its resolver config is not its health.
    expect(healthProblems({ ...report, modes: {}, resolverPids: [] }, { ...expected(), exit: false })).toEqual([]);
  });

  it("reads an answer that is not one: nothing is healthy", () => {
    expect(healthProblems(parseHealthReport("garbage\nimage {not json\n"), expected()).length).toBeGreaterThanOrEqual(3);
  });
});

/**
 * The connection limits' counters: the script run in a network namespace of
 * its own (unshare -n), where the rendered ruleset is loaded by the real nft,
 * or is not.
 */
describe("the health answer's connection limits", () => {
  const dir = privateTmpDir("health-limits");
  const guest = makeGuestRoot(join(dir, "root"));
  const script = join(repoRoot, "images/rootfs/files/usr/local/sbin/relay-health");
  beforeAll(() => {
    writeFileSync(guest.at("RELAY_NFT_RULESET"), renderNftRuleset({ orPort: 9001, exit: true, conntrackMax: 65_536, openFiles: 65_536, perSource: { orPort: DEFAULT_ORPORT_LIMIT, notice: DEFAULT_NOTICE_LIMIT, ipv6SourcePrefix: 64, exempt: [] } })!);
  });
  /** The answer in a fresh network namespace, after `before` ran there. */
  const answer = (before: string) =>
    spawnSync("unshare", ["-n", "sh", "-c", `${before} && exec "$0"`, script], { encoding: "utf8", env: { ...process.env, RELAY_ROOT: guest.root } });
  const healthyOtherwise: HealthExpectation = { imageDigest: DIGEST, rsaFingerprint: "0".repeat(40), ed25519Identity: "x", orPort: 9001, exit: false };

  it("carries every counter of the loaded limits, at zero after boot", () => {
    const result = answer(`nft -f ${JSON.stringify(guest.at("RELAY_NFT_RULESET"))}`);
    expect(result.status, result.stderr).toBe(0);
    const report = parseHealthReport(result.stdout);
    expect(report.limitsExpected).toBe(true);
    expect(report.limits?.map((counter) => counter.name).sort()).toEqual(Object.values(LIMIT_COUNTERS).sort());
    expect(report.limits?.every((counter) => counter.packets === 0)).toBe(true);
    expect(healthProblems(report, healthyOtherwise).filter((problem) => problem.includes("connection limits"))).toEqual([]);
  });

  it("says so when the image has limits but none are loaded", () => {
    const result = answer("true");
    expect(result.status, result.stderr).toBe(0);
    const report = parseHealthReport(result.stdout);
    expect(report.limits).toBeUndefined();
    expect(healthProblems(report, healthyOtherwise)).toContain("its connection limits are not loaded (nftables lists none of their counters): relay-hardening failed at boot, and its console says why");
    // An image without limits (older, or limits.enabled false) is not asked for them.
    expect(parseHealthReport("tor 1\n").limitsExpected).toBe(false);
  });
});
