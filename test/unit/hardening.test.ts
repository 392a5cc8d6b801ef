/**
 * Exit hardening as data (lib/render/hardening.ts): the rendered nftables ruleset
 * judged by nft itself (check mode, against this machine's kernel), then
 * loaded for real into a network namespace of the test's own and flooded
 * from another: the limits drop what is over them, count it, and let other
 * sources through. The sizes follow torutils' table.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { droppedOverLimits, ipv6PrefixMask, LIMIT_COUNTERS, parseNftCounters, renderHardening, renderNftRuleset, type HardeningInput } from "../../lib/render/hardening";
import { DEFAULT_NOTICE_LIMIT, DEFAULT_ORPORT_LIMIT, defaultConntrackMax } from "../../lib/config/limits";
import { relayRecipeSpec } from "../../lib/steps/steps";
import { authorityAddresses, PUBLIC_AUTHORITIES } from "../../lib/tor/tor-authorities";
import { floodInNetns } from "../support/flood";
import { privateTmpDir } from "../support/tmp";

const dir = privateTmpDir("hardening");
let files = 0;
const write = (text: string) => {
  const file = join(dir, `ruleset-${++files}.nft`);
  writeFileSync(file, text);
  return file;
};
/** nft's own judgement of a ruleset: parsed and checked by the kernel, nothing committed. */
const nftCheck = (text: string) => spawnSync("nft", ["-c", "-f", write(text)], { encoding: "utf8" });

const exitInput = (overrides: Partial<HardeningInput> = {}): HardeningInput => ({
  orPort: 443,
  exit: true,
  conntrackMax: defaultConntrackMax(1024),
  openFiles: 65_536,
  perSource: { orPort: DEFAULT_ORPORT_LIMIT, notice: DEFAULT_NOTICE_LIMIT, ipv6SourcePrefix: 64, exempt: authorityAddresses(PUBLIC_AUTHORITIES) },
  ...overrides,
});

describe("the rendered hardening", () => {
  it("is a ruleset nft accepts, for an exit with its notice, a non-exit and other IPv6 source prefixes", () => {
    const inputs = [
      exitInput(),
      exitInput({ exit: false, orPort: 9001, perSource: { orPort: { connections: 4, newPerMinute: 4 }, ipv6SourcePrefix: 64, exempt: [] } }),
      ...[32, 48, 56, 127, 128].map((prefix) => exitInput({ perSource: { orPort: DEFAULT_ORPORT_LIMIT, notice: DEFAULT_NOTICE_LIMIT, ipv6SourcePrefix: prefix, exempt: [] } })),
    ];
    for (const input of inputs) {
      const ruleset = renderNftRuleset(input)!;
      const result = nftCheck(ruleset);
      expect(result.status, `${result.stderr}\n${ruleset}`).toBe(0);
    }
  });

  it("lets the directory authorities in before any limit, on IPv4 and IPv6, and refuses to render anything but an address there", () => {
    const ruleset = renderNftRuleset(exitInput())!;
    const lines = ruleset.split("\n").map((line) => line.trim());
    const v4 = lines.findIndex((line) => line.startsWith("ip saddr { 128.31.0.39, "));
    const v6 = lines.findIndex((line) => line.startsWith("ip6 saddr { 2a02:16a8:662:2203::1, "));
    const firstLimit = lines.findIndex((line) => line.includes("limit rate over"));
    expect(v4).toBeGreaterThan(0);
    expect(v6).toBeGreaterThan(0);
    expect(lines[v4]).toMatch(/ accept$/);
    expect(Math.max(v4, v6)).toBeLessThan(firstLimit);
    for (const bad of ["10.0.0.1 } accept; drop", "example.org", "10.0.0.0/8", ""]) {
      expect(() => renderNftRuleset(exitInput({ perSource: { orPort: DEFAULT_ORPORT_LIMIT, ipv6SourcePrefix: 64, exempt: [bad] } }))).toThrow(/an exempt source must be an IPv4 or IPv6 address/);
    }
  });

  it("negative control: nft's check refuses a ruleset with a broken rule", () => {
    const broken = renderNftRuleset(exitInput())!.replace("ct count over 8", "ct count beyond 8");
    expect(nftCheck(broken).status).not.toBe(0);
  });

  it("limits the ORPort, and port 80 only for an exit with its notice; nothing at all when the limits are off", () => {
    const exit = renderNftRuleset(exitInput())!;
    expect(exit).toMatch(/tcp dport 443 ct state new update @orport_rate_v4 \{ ip saddr limit rate over 8\/minute burst 8 packets \}/);
    expect(exit).toMatch(/tcp dport 443 ct state new add @orport_connections_v6 \{ ip6 saddr & ffff:ffff:ffff:ffff:: ct count over 8 \}/);
    expect(exit).toMatch(/tcp dport 80 ct state new add @notice_connections_v4 /);
    const guard = renderNftRuleset(exitInput({ exit: false, perSource: { orPort: DEFAULT_ORPORT_LIMIT, ipv6SourcePrefix: 64, exempt: [] } }))!;
    expect(guard).not.toMatch(/dport 80\b/);
    expect(guard).not.toContain(LIMIT_COUNTERS.noticeRate);
    const { perSource: _off, ...unlimited } = exitInput();
    expect(renderNftRuleset(unlimited)).toBeUndefined();
    expect(renderHardening(unlimited).ruleset).toBeUndefined();
  });

  it("renders what the image build's step schema accepts, for an exit and a guard", () => {
    // The recipe is checked on both sides of the step (lib/steps/steps.ts): a ruleset it refused would stop every pulumi up.
    const hardening = relayRecipeSpec.shape.hardening.unwrap();
    for (const input of [exitInput(), exitInput({ exit: false, perSource: { orPort: DEFAULT_ORPORT_LIMIT, ipv6SourcePrefix: 64, exempt: [] } })]) {
      const rendered = renderHardening(input);
      expect(rendered.ruleset).toBeDefined();
      expect(hardening.safeParse(rendered).error?.issues).toBeUndefined();
    }
  });

  it("writes IPv6 prefix masks as nft reads them", () => {
    expect(ipv6PrefixMask(64)).toBe("ffff:ffff:ffff:ffff::");
    expect(ipv6PrefixMask(56)).toBe("ffff:ffff:ffff:ff00::");
    expect(ipv6PrefixMask(48)).toBe("ffff:ffff:ffff::");
    expect(ipv6PrefixMask(127)).toBe("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe");
    expect(ipv6PrefixMask(128)).toBe("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    expect(() => ipv6PrefixMask(0)).toThrow(/1–128/);
  });

  it("sizes conntrack by RAM as torutils does, raises the SYN backlog alike, and widens an exit's source ports", () => {
    expect([512, 1024, 2047, 2048, 4096, 5120, 8192].map(defaultConntrackMax)).toEqual([2 ** 18, 2 ** 18, 2 ** 18, 2 ** 19, 2 ** 19, 2 ** 20, 2 ** 20]);
    const sysctls = renderHardening(exitInput({ conntrackMax: 2 ** 19 })).sysctls;
    expect(sysctls.split("\n").filter(Boolean)).toEqual([
      "net.netfilter.nf_conntrack_max 524288",
      "net.netfilter.nf_conntrack_buckets 524288",
      "net.ipv4.tcp_syncookies 1",
      "net.ipv4.tcp_max_syn_backlog 524288",
      "net.core.somaxconn 524288",
      "net.ipv4.ip_local_port_range 10000 65001",
    ]);
    expect(renderHardening(exitInput({ exit: false })).sysctls).not.toContain("ip_local_port_range");
  });
});

/** Two namespaces joined by a veth pair: the relay's, with the ruleset and a listener, and the sources'. */
describe("the limits in a kernel, under a flood", () => {
  const relayNs = `drhr-${process.pid}`;
  const sourceNs = `drhs-${process.pid}`;
  const ip = (...args: string[]) => {
    const result = spawnSync("ip", args, { encoding: "utf8" });
    if (result.status !== 0) throw new Error(`ip ${args.join(" ")}: ${result.stderr}`);
  };
  const listeners: ChildProcess[] = [];
  const counters = () => {
    const listed = spawnSync("ip", ["netns", "exec", relayNs, "nft", "-j", "list", "counters"], { encoding: "utf8" });
    expect(listed.status, listed.stderr).toBe(0);
    return parseNftCounters(listed.stdout)!;
  };
  const packets = (name: string) => counters().find((counter) => counter.name === name)?.packets;
  const load = (input: HardeningInput) => {
    const result = spawnSync("ip", ["netns", "exec", relayNs, "nft", "-f", write(renderNftRuleset(input)!)], { encoding: "utf8" });
    expect(result.status, result.stderr).toBe(0);
  };
  const flood = (from: string, host: string, port: number, burst: number) => floodInNetns(sourceNs, { from, host, port, burst, trickle: 0, intervalMs: 0, connectTimeoutMs: 1500 });

  beforeAll(async () => {
    ip("netns", "add", relayNs);
    ip("netns", "add", sourceNs);
    ip("-n", relayNs, "link", "set", "lo", "up");
    ip("-n", sourceNs, "link", "set", "lo", "up");
    ip("-n", relayNs, "link", "add", "relay0", "type", "veth", "peer", "name", "source0", "netns", sourceNs);
    ip("-n", relayNs, "addr", "add", "10.99.0.1/24", "dev", "relay0");
    ip("-n", relayNs, "addr", "add", "fd99::1/48", "dev", "relay0", "nodad");
    for (const address of ["10.99.0.2/24", "10.99.0.3/24"]) ip("-n", sourceNs, "addr", "add", address, "dev", "source0");
    // Two sources in one /64, one in another.
    for (const address of ["fd99:0:0:0::2/48", "fd99:0:0:0::3/48", "fd99:0:0:1::2/48"]) ip("-n", sourceNs, "addr", "add", address, "dev", "source0", "nodad");
    ip("-n", relayNs, "link", "set", "relay0", "up");
    ip("-n", sourceNs, "link", "set", "source0", "up");
    // The relay's ports: connections are accepted and held, as tor holds one until its handshake times out.
    for (const port of [443, 80]) {
      listeners.push(spawn("ip", ["netns", "exec", relayNs, process.execPath, "-e", `require("node:net").createServer(() => {}).listen(${port}, "::")`], { stdio: "ignore" }));
    }
    await new Promise((resolve) => setTimeout(resolve, 1500));
  });

  afterAll(() => {
    for (const listener of listeners) listener.kill("SIGKILL");
    spawnSync("ip", ["netns", "del", relayNs]);
    spawnSync("ip", ["netns", "del", sourceNs]);
  });

  it("lets a source open 8 new connections to the ORPort at once and drops the rest, counted; another source still connects", async () => {
    load(exitInput());
    const flooded = await flood("10.99.0.2", "10.99.0.1", 443, 20);
    expect(flooded).toMatchObject({ attempts: 20, connected: 8, failed: 0 });
    expect(flooded.timedOut).toBe(12);
    // Each dropped attempt is at least its SYN; retransmissions count too.
    expect(packets(LIMIT_COUNTERS.orPortRate)).toBeGreaterThanOrEqual(12);
    expect(droppedOverLimits(counters())).toBeGreaterThanOrEqual(12);
    expect(await flood("10.99.0.3", "10.99.0.1", 443, 1)).toMatchObject({ connected: 1 });
    // The notice's port has its own, more generous budget: the same source reaches it.
    expect(await flood("10.99.0.2", "10.99.0.1", 80, 1)).toMatchObject({ connected: 1 });
  }, 60_000);

  it("never limits an exempt source (a directory authority): its whole burst connects, and nothing is counted", async () => {
    load(exitInput({ perSource: { orPort: DEFAULT_ORPORT_LIMIT, ipv6SourcePrefix: 64, exempt: ["10.99.0.3", "fd99:0:0:1::2"] } }));
    expect(await flood("10.99.0.3", "10.99.0.1", 443, 20)).toMatchObject({ attempts: 20, connected: 20 });
    expect(await flood("fd99:0:0:1::2", "fd99::1", 443, 20)).toMatchObject({ attempts: 20, connected: 20 });
    expect(droppedOverLimits(counters())).toBe(0);
    // Negative control: its neighbour is not exempt, and is limited as before.
    expect(await flood("10.99.0.2", "10.99.0.1", 443, 12)).toMatchObject({ connected: 8, timedOut: 4 });
  }, 60_000);

  it("caps concurrent connections from one source even under the rate limit, an IPv6 /64 being one source", async () => {
    load(exitInput({ perSource: { orPort: { connections: 4, newPerMinute: 600 }, ipv6SourcePrefix: 64, exempt: [] } }));
    const v4 = await flood("10.99.0.2", "10.99.0.1", 443, 10);
    expect(v4).toMatchObject({ connected: 4, timedOut: 6 });
    expect(packets(LIMIT_COUNTERS.orPortConnections)).toBeGreaterThanOrEqual(6);
    expect(packets(LIMIT_COUNTERS.orPortRate)).toBe(0);
    // The first flood's connections are closed by now: the kernel forgets them, and the source may connect again.
    expect(await flood("fd99::2", "fd99::1", 443, 6)).toMatchObject({ connected: 4, timedOut: 2 });
    // Another address of the same /64 shares its budget; it is spent while that flood's connections are open.
    const [same, other] = await Promise.all([
      floodInNetns(sourceNs, { from: "fd99::2", host: "fd99::1", port: 443, burst: 4, trickle: 2, intervalMs: 500, connectTimeoutMs: 1500 }).then(() =>
        undefined,
      ),
      (async () => {
        await new Promise((resolve) => setTimeout(resolve, 400));
        return Promise.all([flood("fd99::3", "fd99::1", 443, 1), flood("fd99:0:0:1::2", "fd99::1", 443, 1)]);
      })(),
    ]).then(([, results]) => results);
    expect(same).toMatchObject({ connected: 0, timedOut: 1 });
    expect(other).toMatchObject({ connected: 1 });
  }, 60_000);
});

/**
 * A peer that still holds a connection the relay's VM never had (a channel to
 * the relay's previous VM, stopped hard) sends a packet that conntrack sees
 * as new and not a SYN. Established here before the ruleset is loaded, so
 * conntrack never saw its handshake: the same packet, from the kernel's side.
 */
describe("a stale peer's packet", () => {
  const relayNs = `drsr-${process.pid}`;
  const peerNs = `drsp-${process.pid}`;
  const ip = (...args: string[]) => {
    const result = spawnSync("ip", args, { encoding: "utf8" });
    if (result.status !== 0) throw new Error(`ip ${args.join(" ")}: ${result.stderr}`);
  };
  let listener: ChildProcess | undefined;
  // Connects, loads the ruleset into the relay's namespace, then writes again and says what became of the connection.
  const PEER = `
const net = require("node:net");
const { execFileSync } = require("node:child_process");
const [relayNs, ruleset] = process.argv.slice(1);
const socket = net.connect({ host: "10.98.0.1", port: 443 }, () => {
  socket.write("a");
  setTimeout(() => {
    execFileSync("ip", ["netns", "exec", relayNs, "nft", "-f", ruleset]);
    socket.write("b");
    setTimeout(() => { process.stdout.write("hung"); process.exit(0); }, 6000);
  }, 300);
});
socket.on("error", (err) => { process.stdout.write(err.code); process.exit(0); });
`;
  const peer = (ruleset: string) => {
    ip("netns", "exec", relayNs, "nft", "flush", "ruleset");
    return spawnSync("ip", ["netns", "exec", peerNs, process.execPath, "-e", PEER, relayNs, write(ruleset)], { encoding: "utf8", timeout: 30_000 }).stdout;
  };

  beforeAll(async () => {
    ip("netns", "add", relayNs);
    ip("netns", "add", peerNs);
    ip("-n", relayNs, "link", "set", "lo", "up");
    ip("-n", relayNs, "link", "add", "relay0", "type", "veth", "peer", "name", "peer0", "netns", peerNs);
    ip("-n", relayNs, "addr", "add", "10.98.0.1/24", "dev", "relay0");
    ip("-n", peerNs, "addr", "add", "10.98.0.2/24", "dev", "peer0");
    ip("-n", relayNs, "link", "set", "relay0", "up");
    ip("-n", peerNs, "link", "set", "peer0", "up");
    listener = spawn("ip", ["netns", "exec", relayNs, process.execPath, "-e", `require("node:net").createServer((s) => s.on("data", () => {})).listen(443)`], { stdio: "ignore" });
    await new Promise((resolve) => setTimeout(resolve, 1500));
  });

  afterAll(() => {
    listener?.kill("SIGKILL");
    spawnSync("ip", ["netns", "del", relayNs]);
    spawnSync("ip", ["netns", "del", peerNs]);
  });

  it("is answered with a reset, so the peer reconnects at once instead of waiting for TCP to give up", () => {
    expect(peer(renderNftRuleset(exitInput())!)).toBe("ECONNRESET");
    const listed = spawnSync("ip", ["netns", "exec", relayNs, "nft", "-j", "list", "counters"], { encoding: "utf8" });
    expect(parseNftCounters(listed.stdout)!.find((counter) => counter.name === LIMIT_COUNTERS.notSyn)?.packets).toBeGreaterThanOrEqual(1);
  }, 60_000);

  it("negative control: torutils' drop of the same packet leaves the peer hanging", () => {
    const dropping = renderNftRuleset(exitInput())!.replace(/(!= syn ct state new counter name "[a-z_]+") reject with tcp reset/, "$1 drop");
    expect(dropping).not.toContain("reject");
    expect(peer(dropping)).toBe("hung");
  }, 60_000);
});

