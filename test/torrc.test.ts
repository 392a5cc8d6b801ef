import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { RelayConfig } from "../lib/config";
import { REDUCED_EXIT_POLICY, renderTorrc, type TorrcContext } from "../lib/torrc";
import { validRelayConfig } from "./support/fleet";
import { privateTmpDir } from "./support/tmp";

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
  ["MetricsPort on localhost and a DirPort", { metricsPort: 9035, dirPort: 9030 }, {}],
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

  it("binds MetricsPort to localhost only", () => {
    const torrc = renderTorrc(relay({ metricsPort: 9035 }), context("metrics"));
    expect(torrc).toMatch(/^MetricsPort 127\.0\.0\.1:9035$/m);
    expect(torrc).toMatch(/^MetricsPortPolicy accept 127\.0\.0\.1$/m);
  });
});
