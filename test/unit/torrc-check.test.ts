/**
 * tor as the judge of every torrc: the real `tor --verify-config` refuses,
 * and the refusal names the config field behind the line. Also the schema's
 * rules checked against tor itself: what the schema lets through, tor takes,
 * and where both speak about the same value (burst ≥ rate) they agree.
 */
import { describe, expect, it } from "vitest";
import type { RelayConfig } from "../../lib/config/config";
import { renderTorrcLines, type TorrcContext } from "../../lib/render/torrc";
import { fieldsNamedBy, verifyTorrcsWithTor } from "../../lib/render/torrc-check";
import { parseMetricsSource, parsePolicyRule, parseTorBandwidth } from "../../lib/tor/tor-values";
import { validRelayConfig } from "../support/fleet";

const context: TorrcContext = { dataDirectory: "/var/lib/tor", familyFingerprints: [], familyIds: [], sandbox: true, user: "debian-tor" };

const relay = (overrides: Record<string, unknown> = {}): RelayConfig => validRelayConfig({ nickname: "CheckedRelay", exit: { enabled: true }, ...overrides });

/** A relay config as a hand-edited state or a future schema bug could hand over: bypassing the schema. */
function unchecked(overrides: Partial<RelayConfig>): RelayConfig {
  return { ...relay(), ...overrides } as RelayConfig;
}

describe("verifyTorrcsWithTor", () => {
  it("accepts the torrc of a valid exit and of a valid guard", () => {
    expect(
      verifyTorrcsWithTor([
        { index: 0, relay: "r1", lines: renderTorrcLines(relay(), context) },
        { index: 1, relay: "r2", lines: renderTorrcLines(relay({ exit: { enabled: false }, bandwidth: { rate: "10 MBytes", burst: "20 MBytes" } }), context) },
      ]),
    ).toEqual([]);
  });

  it("names the field tor refuses: a rate below tor's minimum for relays, which the schema lets through", () => {
    const problems = verifyTorrcsWithTor([
      { index: 0, relay: "r1", lines: renderTorrcLines(relay(), context) },
      { index: 3, relay: "slow", lines: renderTorrcLines(relay({ bandwidth: { rate: "10 KBytes", burst: "10 KBytes" } }), context) },
    ]);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^relays\[3\]\.bandwidth\.rate \(relay slow\): tor 0\.4\.\S+ refuses this relay's torrc: .*RelayBandwidthRate is set to 10240 bytes\/second\. For servers, it must be at least 76800/);
  });

  it("names the policy entry tor refuses, and the burst below the rate", () => {
    const problems = verifyTorrcsWithTor([
      { index: 0, relay: "open", lines: renderTorrcLines(unchecked({ exit: { enabled: true, ipv6Exit: true, notice: { enabled: true }, policy: ["accept *:80", "accept *:99999", "reject *:*"] } }), context) },
      { index: 1, relay: "bursty", lines: renderTorrcLines(unchecked({ bandwidth: { rate: "100 MBytes", burst: "10 MBytes" } }), context) },
    ]);
    expect(problems[0]).toMatch(/^relays\[0\]\.exit\.policy\[1\] \(relay open\): .*Malformed policy 'accept \*:99999'/);
    expect(problems[1]).toMatch(/^relays\[1\]\.bandwidth\.burst \(relay bursty\): .*RelayBandwidthBurst must be at least equal to RelayBandwidthRate/);
  });

  it("catches a line injected through a value (tor refuses the unknown option it starts)", () => {
    const problems = verifyTorrcsWithTor([{ index: 0, relay: "r1", lines: renderTorrcLines(unchecked({ contactInfo: "ops@example.org\nNotAnOption 1" }), context) }]);
    expect(problems[0]).toMatch(/Unknown option 'NotAnOption'/);
  });

  it("accepts a relay's MetricsPort lines, on IPv4 and IPv6", () => {
    const lines = renderTorrcLines(relay({ metrics: { allowFrom: ["203.0.113.0/24", "2001:db8:5::7"], port: 9100 } }), context);
    expect(lines.filter((line) => line.text.startsWith("MetricsPort"))).toHaveLength(5);
    expect(verifyTorrcsWithTor([{ index: 0, relay: "scraped", lines }])).toEqual([]);
  });

  it("says what to do when tor cannot be run", () => {
    expect(() => verifyTorrcsWithTor([{ index: 0, relay: "r1", lines: renderTorrcLines(relay(), context) }], "/nonexistent/tor")).toThrow(/install tor on this build host/);
  });
});

describe("fieldsNamedBy", () => {
  const lines = renderTorrcLines(relay({ bandwidth: { rate: "1 MBytes", burst: "2 MBytes" } }), context);
  it("prefers the line whose value tor quotes over the option it names", () => {
    expect(fieldsNamedBy(["Malformed policy 'accept *:443'. Discarding entire policy list.", "Error in ExitPolicy entry."], lines)).toEqual(["exit.policy"]);
  });
  it("falls back to the option tor names first", () => {
    expect(fieldsNamedBy(["RelayBandwidthBurst must be at least equal to RelayBandwidthRate."], lines)).toEqual(["bandwidth.burst"]);
    expect(fieldsNamedBy(["Problem with ContactInfo"], lines)).toEqual(["contactInfo"]);
    expect(fieldsNamedBy(["Something else entirely"], lines)).toEqual([]);
  });
});

describe("the schema's tor rules, checked against tor", () => {
  const torrcWith = (extra: string[]) => [...renderTorrcLines(relay({ exit: { enabled: false } }), context), ...extra.map((text) => ({ text }))];
  const torAccepts = (extra: string[]) => verifyTorrcsWithTor([{ index: 0, relay: "r", lines: torrcWith(extra) }]).length === 0;

  it("does not judge MetricsPortPolicy: tor --verify-config passes an entry tor cannot parse, so the schema refuses it", () => {
    // tor only parses the policy when it acts on the config, and then dies (test/unit/metrics-scrape.test.ts starts it).
    expect(torAccepts(["MetricsPort 127.0.0.1:9035", "MetricsPortPolicy accept not-an-address"])).toBe(true);
    expect(parseMetricsSource("not-an-address")).toHaveProperty("problem");
  });

  it("reads bandwidth units as tor does: burst < rate exactly when tor refuses", () => {
    const values = ["800 Mbits", "100 MBytes", "1 GBytes", "8 Gbits", "99999999", "100 megabits", "12.5 MBytes", "1 gbyte", "100 KBytes", "1000 kbits"];
    for (const rate of values) {
      for (const burst of values) {
        const schemaRefuses = parseTorBandwidth(burst)! < parseTorBandwidth(rate)!;
        expect(torAccepts([`RelayBandwidthRate ${rate}`, `RelayBandwidthBurst ${burst}`]), `rate ${rate}, burst ${burst}`).toBe(!schemaRefuses);
      }
    }
  }, 60_000);

  it("lets through only policy entries tor takes", () => {
    const entries = ["accept *:80", "reject *:*", "accept *4:443", "accept6 *6:80", "reject private:*", "accept 198.51.100.0/24:1-1024", "accept6 [2001:db8::]/32:6660-6669",
      "accept [2001:db8::1]:443", "reject *:65535", "accept *:99999", "accept *:0", "accept *:443-80", "allow *:80", "accept6 198.51.100.1:80", "accept 198.51.100.0/33:80", "accept *"];
    for (const entry of entries) {
      if ("rule" in parsePolicyRule(entry)) expect(torAccepts([`ExitPolicy ${entry}`]), entry).toBe(true);
    }
    // And the ones tor refuses, the schema refuses too.
    for (const entry of entries) {
      if (!torAccepts([`ExitPolicy ${entry}`])) expect("problem" in parsePolicyRule(entry), entry).toBe(true);
    }
  }, 60_000);
});
