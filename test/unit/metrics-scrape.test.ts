/**
 * A real tor on this host, run as a relay with the torrc the program renders
 * (its MetricsPort on the relay's address, 127.0.0.1 here, answering only
 * 127.0.0.1 and 127.0.0.2) and the offline identity `npm run keys` makes,
 * scraped over HTTP: every series the alert rules read is there, the
 * signing certificate's expiry is the one tor's --key-expiration reads from
 * the certificate, and a scrape from another address is refused. Then a real
 * Prometheus runs the generated configuration and scrapes it, labels and all.
 * Not published and not reachable: no directory authority it could reach.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RelayConfig } from "../../lib/config/config";
import { loadRelayIdentity } from "../../lib/plan/identity";
import { initRelayKeys, torSigningKeyExpiration } from "../../lib/tor/key-store";
import {
  alertRules, DNS_TIMEOUT_REASON, KEPT_FLAGS, MONITORING_FILES, monitoringTargets, prometheusJob, renderAlertRules, renderPrometheusConfig, renderScrapeTargets, RESOLVER_FAILURE_REASONS, TOR_SERIES,
} from "../../lib/render/monitoring";
import { renderTorrc } from "../../lib/render/torrc";
import { IDENTITY_FILES } from "../../lib/tor/tor-keys";
import { validRelayConfig } from "../support/fleet";
import { fetchMetricsText, parseMetricsText, scrapeMetrics, type Sample } from "../support/metrics";
import { freePort } from "../support/sshd";
import { privateTmpDir } from "../support/tmp";

/**
 * Loopback addresses: all of 127.0.0.0/8 is this host's, so a request can
 * come from an address the policy does not accept. Prometheus, which cannot
 * choose its source address, reaches the relay from 127.0.0.1.
 */
const RELAY = "127.0.0.1";
const SCRAPER = "127.0.0.2";
const STRANGER = "127.0.0.3";

describe("a real tor's MetricsPort, with the program's torrc", () => {
  const dir = privateTmpDir("metrics");
  const data = join(dir, "data");
  let tor: ChildProcess | undefined;
  let url = "";
  let keysDir = "";
  let log = "";
  let scrape: Map<string, Sample[]> = new Map();
  let text = "";
  let relay: RelayConfig;

  beforeAll(async () => {
    keysDir = initRelayKeys(join(dir, "keys"), "scraped", { nickname: "ScrapedRelay" });
    // The relay's keys as its image ships them: the offline identity, no master secret key.
    mkdirSync(join(data, "keys"), { recursive: true, mode: 0o700 });
    for (const file of IDENTITY_FILES) copyFileSync(join(keysDir, file), join(data, "keys", file));
    const [orPort, metricsPort] = [await freePort(), await freePort()];
    relay = validRelayConfig({
      name: "scraped",
      nickname: "ScrapedRelay",
      ipv4: { address: `${RELAY}/8`, gateway: "127.0.0.254" },
      ipv6: undefined,
      orPort,
      exit: { enabled: true },
      nameservers: [],
      metrics: { allowFrom: [SCRAPER, RELAY], port: metricsPort },
    });
    const torrc = renderTorrc(relay, { dataDirectory: data, familyFingerprints: [], familyIds: [], sandbox: false });
    // Test-only lines: never publish, take the ORPort as reachable, and know only an authority that is not there.
    const offline = ["PublishServerDescriptor 0", "AssumeReachable 1", `DirAuthority nowhere orport=1 no-v2 v3ident=${"0".repeat(40)} 127.0.0.1:1 ${"0".repeat(40)}`];
    writeFileSync(join(dir, "torrc"), torrc + offline.join("\n") + "\n", { mode: 0o600 });
    tor = spawn("tor", ["-f", join(dir, "torrc"), "--defaults-torrc", "/dev/null"], { stdio: ["ignore", "pipe", "pipe"] });
    tor.stdout!.on("data", (chunk: Buffer) => (log += chunk.toString()));
    tor.stderr!.on("data", (chunk: Buffer) => (log += chunk.toString()));
    url = `http://${RELAY}:${metricsPort}/metrics`;
    // A cold machine shared with other work: tor starts in a second or two, given up to 90 s here.
    const deadline = Date.now() + 90_000;
    for (;;) {
      try {
        text = await fetchMetricsText(url, { localAddress: SCRAPER, timeoutMs: 5_000 });
        scrape = parseMetricsText(text);
        if (scrape.has(TOR_SERIES.signingCertExpiry)) break;
      } catch (err) {
        if (tor.exitCode !== null) throw new Error(`tor exited (${tor.exitCode}):\n${log}`);
        if (Date.now() > deadline) throw new Error(`no scrape from ${url} within 90 s (${(err as Error).message}); tor's log:\n${log}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }, 150_000);

  afterAll(() => {
    tor?.kill("SIGTERM");
  });

  it("exports every series the alert rules read", () => {
    const used = new Set(alertRules("test").flatMap((rule) => [...rule.expr.matchAll(/\b(tor_[a-z_]+)\{/g)].map((match) => match[1]!)));
    expect([...used].sort()).toEqual(Object.values(TOR_SERIES).sort());
    for (const name of used) expect(scrape.get(name), `${name} is not in the scrape`).toBeDefined();
  });

  it("exports the label values the rules select on", () => {
    const values = (name: string, label: string) => new Set(scrape.get(name)!.map((sample) => sample.labels[label]));
    const reasons = values(TOR_SERIES.dnsErrors, "reason");
    for (const reason of [DNS_TIMEOUT_REASON, ...RESOLVER_FAILURE_REASONS]) expect(reasons, `reason="${reason}"`).toContain(reason);
    expect(values(TOR_SERIES.onionskins, "action")).toEqual(new Set(["processed", "dropped"]));
    const flags = values(TOR_SERIES.flags, "type");
    for (const flag of KEPT_FLAGS) expect(flags, `type="${flag}"`).toContain(flag);
    // Not in any consensus: every flag is 0, as the rules expect of a relay that lost them.
    expect(scrape.get(TOR_SERIES.flags)!.every((sample) => sample.value === 0)).toBe(true);
  });

  it("reports the signing certificate's expiry as tor --key-expiration reads it", () => {
    const [sample] = scrape.get(TOR_SERIES.signingCertExpiry)!;
    expect(sample!.value * 1000).toBe(torSigningKeyExpiration(keysDir).getTime());
  });

  it("is Prometheus's text format, as promtool reads it", () => {
    // promtool's linter also judges naming conventions tor does not follow (a counter without _total); only a parse error fails here.
    const lint = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
    expect(lint.error).toBeUndefined();
    // 0: clean; 3: lint findings only (1 would be a text it cannot read).
    expect([0, 3]).toContain(lint.status);
    expect(`${lint.stdout}${lint.stderr}`).not.toMatch(/parsing error|error while linting/);
    expect(() => parseMetricsText("tor_relay_flag{type=\"Guard\" 1\n")).toThrow(/unterminated|malformed/);
  });

  it("listens on the relay's address only, and refuses a scrape from outside allowFrom", async () => {
    expect(text).toMatch(/^tor_relay_load_onionskins_total\{/m);
    // tor accepts the connection, checks MetricsPortPolicy and closes it without a word.
    await expect(scrapeMetrics(url, { localAddress: STRANGER, timeoutMs: 5_000 })).rejects.toThrow(/socket hang up/);
    // The same request from the allowed address still gets its answer.
    expect((await scrapeMetrics(url, { localAddress: SCRAPER })).has(TOR_SERIES.dnsQueries)).toBe(true);
    // Bound to the relay's own address, not a wildcard: another local address has nothing listening.
    await expect(scrapeMetrics(url.replace(RELAY, "127.0.0.4"), { localAddress: SCRAPER, timeoutMs: 5_000 })).rejects.toThrow(/ECONNREFUSED/);
  });

  it("is scraped by a real Prometheus running the generated configuration, with the relay's labels", async () => {
    const dir2 = join(dir, "prometheus");
    const spec = { stack: "scrape", targets: monitoringTargets([{ config: relay, identity: loadRelayIdentity("scraped", keysDir, "ScrapedRelay") }]) };
    mkdirSync(dir2);
    writeFileSync(join(dir2, MONITORING_FILES.targets), renderScrapeTargets(spec));
    writeFileSync(join(dir2, MONITORING_FILES.rules), renderAlertRules(spec));
    // The one change: a scrape a second instead of a minute, so the test need not wait for one.
    const config = JSON.parse(renderPrometheusConfig(spec).replace(/^#.*$/gm, ""));
    config.global.scrape_interval = "1s";
    writeFileSync(join(dir2, MONITORING_FILES.config), JSON.stringify(config));
    const port = await freePort();
    let prometheusLog = "";
    const prometheus = spawn("prometheus", [`--config.file=${join(dir2, MONITORING_FILES.config)}`, `--storage.tsdb.path=${join(dir2, "data")}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ["ignore", "pipe", "pipe"] });
    prometheus.stderr!.on("data", (chunk: Buffer) => (prometheusLog += chunk.toString()));
    try {
      const query = async (promql: string) => {
        const body = await fetchMetricsText(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(promql)}`);
        return (JSON.parse(body) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } }).data.result;
      };
      let result: Awaited<ReturnType<typeof query>> = [];
      const deadline = Date.now() + 90_000;
      while (result.length === 0) {
        if (prometheus.exitCode !== null) throw new Error(`prometheus exited (${prometheus.exitCode}):\n${prometheusLog}`);
        if (Date.now() > deadline) throw new Error(`Prometheus scraped nothing within 90 s:\n${prometheusLog}`);
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        result = await query(TOR_SERIES.signingCertExpiry).catch(() => []);
      }
      const identity = loadRelayIdentity("scraped", keysDir, "ScrapedRelay");
      expect(result[0]!.metric).toEqual({
        __name__: TOR_SERIES.signingCertExpiry,
        job: prometheusJob("scrape"),
        instance: `${RELAY}:${relay.metrics!.port}`,
        relay: "scraped",
        nickname: "ScrapedRelay",
        fingerprint: identity.rsaFingerprint,
        node: "pve1",
        exit: "true",
      });
      expect(Number(result[0]!.value[1]) * 1000).toBe(torSigningKeyExpiration(keysDir).getTime());
      expect((await query(`up{job="${prometheusJob("scrape")}"}`)).map((sample) => sample.value[1])).toEqual(["1"]);
      const rules = JSON.parse(await fetchMetricsText(`http://127.0.0.1:${port}/api/v1/rules`)) as { data: { groups: { rules: { name: string; health: string }[] }[] } };
      expect(rules.data.groups[0]!.rules.map((rule) => rule.name)).toEqual(alertRules("scrape").map((rule) => rule.alert));
    } finally {
      prometheus.kill("SIGTERM");
    }
  }, 150_000);
});
