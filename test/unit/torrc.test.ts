import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { RelayConfig } from "../../lib/config/config";
import { REDUCED_EXIT_POLICY, renderTorrc, type TorrcContext } from "../../lib/render/torrc";
import { validRelayConfig } from "../support/fleet";
import { privateTmpDir } from "../support/tmp";

const scratch = privateTmpDir("torrc");

const relay = (overrides: Record<string, unknown>): RelayConfig => validRelayConfig({ nickname: "TorrcRelay", ...overrides });

const FAMILY = ["F850770A2BDB16B9C4E79C0A724298CF3558AE84", "0123456789ABCDEF0123456789ABCDEF01234567"];

/** tor's own verdict on a torrc: exit status 0 and "Configuration was valid". */
function torVerifyConfig(name: string, torrc: string) {
  const path = join(scratch, `${name}.torrc`);
  writeFileSync(path, torrc);
  const result = spawnSync("tor", ["--verify-config", "-f", path, "--defaults-torrc", "/dev/null"], { encoding: "utf8" });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

function context(name: string, extra: Partial<TorrcContext> = {}): TorrcContext {
  const dataDirectory = join(scratch, `data-${name}`);
  mkdirSync(dataDirectory, { recursive: true, mode: 0o700 });
  return { dataDirectory, familyFingerprints: [], familyIds: [], sandbox: false, ...extra };
}

const variants: [string, Record<string, unknown>, Partial<TorrcContext>][] = [
  ["non-exit guard, IPv4 and IPv6", { exit: { enabled: false }, orPort: 9001 }, {}],
  ["non-exit, IPv4 only", { ipv6: undefined }, {}],
  ["exit with the reduced exit policy", { exit: { enabled: true } }, {}],
  ["exit with its own policy, no IPv6 exit", { exit: { enabled: true, ipv6Exit: false, policy: ["reject *:25", "accept *:80", "accept *:443", "reject *:*"] } }, {}],
  ["exit on IPv4 only", { ipv6: undefined, exit: { enabled: true } }, {}],
  ["bandwidth limits", { bandwidth: { rate: "100 MBytes", burst: "125 MBytes" } }, {}],
  ["MetricsPort for one IPv4 scraper, and a DirPort", { metrics: { allowFrom: "203.0.113.5" }, dirPort: 9030 }, {}],
  ["MetricsPort on IPv4 and IPv6 for two networks", { metrics: { allowFrom: ["203.0.113.0/24", "2001:db8:5::/48"], port: 9100 } }, {}],
  ["MetricsPort on IPv6 only", { metrics: { allowFrom: "2001:db8::5" } }, {}],
  ["family by fingerprints and FamilyId", {}, { familyFingerprints: FAMILY, familyIds: ["+5zq3Fsbq7r9IcdiisT8hcoLI8RD9DIFVLWepJ/ESuw"] }],
];

describe("renderTorrc", () => {
  it.each(variants)("%s passes tor --verify-config", (name, overrides, extra) => {
    const torrc = renderTorrc(relay(overrides), context(name.replace(/\W+/g, "-"), extra));
    const verdict = torVerifyConfig(name.replace(/\W+/g, "-"), torrc);
    expect(verdict.output).toMatch(/Configuration was valid/);
    expect(verdict.status).toBe(0);
  });

  it("sandboxed, dropping to an unprivileged user, passes tor --verify-config", () => {
    // tor checks the data directory as the user it drops to, so that user must own it.
    const user = process.getuid?.() === 0 ? "debian-tor" : userInfo().username;
    const parent = mkdtempSync(join(tmpdir(), "diskless-relays-torrc-user-"));
    chmodSync(parent, 0o711);
    const dataDirectory = join(parent, "data");
    mkdirSync(dataDirectory, { mode: 0o700 });
    execFileSync("chown", [user, dataDirectory]);
    try {
      const torrc = renderTorrc(relay({ exit: { enabled: true } }), { ...context("user"), dataDirectory, sandbox: true, user });
      expect(torrc).toMatch(/^Sandbox 1$/m);
      const verdict = torVerifyConfig("user", torrc);
      expect(verdict.output).toMatch(/Configuration was valid/);
      expect(verdict.status).toBe(0);
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });

  it("is rejected by tor when a line is wrong, so the oracle can fail", () => {
    const torrc = renderTorrc(relay({}), context("broken")).replace("Nickname TorrcRelay", "Nickname Torrc-Relay");
    expect(torVerifyConfig("broken", torrc).status).not.toBe(0);
  });

  it("runs on the offline signing key and never as an exit unless asked", () => {
    const torrc = renderTorrc(relay({}), context("defaults"));
    expect(torrc).toMatch(/^OfflineMasterKey 1$/m);
    expect(torrc).toMatch(/^ExitRelay 0$/m);
    // An explicit reject-all, as ansible-relayor writes for non-exits.
    expect(torrc.match(/^ExitPolicy .*$/gm)).toEqual(["ExitPolicy reject *:*"]);
    expect(torrc).not.toMatch(/^DirPort/m);
    expect(torrc).toMatch(/^NoExec 1$/m);
    expect(torrc).toMatch(/^ORPort 198\.51\.100\.11:443$/m);
    expect(torrc).toMatch(/^ORPort \[2001:db8::11\]:443$/m);
  });

  it("uses the reduced exit policy by default, ending in reject *:*", () => {
    const torrc = renderTorrc(relay({ exit: { enabled: true } }), context("reduced"));
    const policy = torrc.split("\n").filter((line) => line.startsWith("ExitPolicy "));
    expect(policy).toEqual(REDUCED_EXIT_POLICY.map((rule) => `ExitPolicy ${rule}`));
    expect(policy.at(-1)).toBe("ExitPolicy reject *:*");
    expect(torrc).toMatch(/^IPv6Exit 1$/m);
  });

  it("lists family members once each, sorted, with tor's $ prefix", () => {
    const torrc = renderTorrc(relay({}), context("family", { familyFingerprints: [FAMILY[0]!, FAMILY[1]!.toLowerCase(), FAMILY[0]!] }));
    expect(torrc).toMatch(new RegExp(`^MyFamily \\$${FAMILY[1]},\\$${FAMILY[0]}$`, "m"));
  });

  it("has no MetricsPort unless metrics is set", () => {
    expect(renderTorrc(relay({}), context("no-metrics"))).not.toMatch(/^MetricsPort/m);
  });

  // Expected text in the form of tor's manual (MetricsPort): "MetricsPort 1.2.3.4:9035" and
  // "MetricsPortPolicy accept 5.6.7.8"; policy entries "have the same form as exit policies"
  // (ExitPolicy: ADDR[/MASK], IPv6 addresses in brackets).
  const metricsRows: [string, Record<string, unknown>, string[]][] = [
    ["one IPv4 scraper, the default port", { allowFrom: "203.0.113.5" }, ["MetricsPort 198.51.100.11:9035", "MetricsPortPolicy accept 203.0.113.5", "MetricsPortPolicy reject *:*"]],
    ["an IPv4 network", { allowFrom: ["203.0.113.0/24"], port: 9100 }, ["MetricsPort 198.51.100.11:9100", "MetricsPortPolicy accept 203.0.113.0/24", "MetricsPortPolicy reject *:*"]],
    [
      "an IPv4 scraper and an IPv6 network, spelled long",
      { allowFrom: ["203.0.113.5", "2001:0db8:0005:0:0:0:0:0/48"] },
      ["MetricsPort 198.51.100.11:9035", "MetricsPort [2001:db8::11]:9035", "MetricsPortPolicy accept 203.0.113.5", "MetricsPortPolicy accept [2001:db8:5::]/48", "MetricsPortPolicy reject *:*"],
    ],
    ["one IPv6 scraper: listens on IPv6 only", { allowFrom: "2001:db8::5" }, ["MetricsPort [2001:db8::11]:9035", "MetricsPortPolicy accept [2001:db8::5]", "MetricsPortPolicy reject *:*"]],
  ];
  it.each(metricsRows)("MetricsPort for %s: on the relay's own address, accepting only allowFrom, then a reject-all", (_what, metrics, expected) => {
    const torrc = renderTorrc(relay({ metrics }), context("metrics"));
    expect(torrc.split("\n").filter((line) => line.startsWith("MetricsPort"))).toEqual(expected);
  });
});
