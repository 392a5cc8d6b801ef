/**
 * The descriptor size bound, held against the descriptors real tor builds
 * from the same torrc (offline, lib/tor/tor-probe.ts: GETINFO
 * dir/server/authority returns the relay's own signed descriptor). The
 * bound must never be below tor's size, and not far above it.
 */
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { descriptorSizeBound, MAX_DESCRIPTOR_UPLOAD_SIZE } from "../../lib/tor/descriptor-size";
import { initFamilyKey } from "../../lib/tor/key-store";
import { checkPublication, probeLines } from "../../lib/plan/publication";
import { probeTorAsync } from "../../lib/tor/tor-probe";
import { renderTorrcLines, type TorrcContext, type TorrcLine } from "../../lib/render/torrc";
import { validRelayConfig } from "../support/fleet";
import { privateTmpDir } from "../support/tmp";

const CONTEXT: TorrcContext = { dataDirectory: "/var/lib/tor", familyFingerprints: [], familyIds: [], sandbox: false };
const store = privateTmpDir("descriptor-size");
/** What tor's run-time values (uptime, bandwidth, platform, protocols) may add beyond today's: the bound's margin, and no more. */
const SLACK = 400;

const torrcOf = (overrides: Record<string, unknown>, context: Partial<TorrcContext> = {}): TorrcLine[] =>
  renderTorrcLines(validRelayConfig(overrides), { ...CONTEXT, ...context });

describe("the descriptor size bound", () => {
  let familyId: string;
  let familyKey: Buffer;
  const cases: { name: string; torrc: TorrcLine[]; family?: boolean }[] = [];
  const actual = new Map<string, number>();
  const descriptors = new Map<string, string>();

  beforeAll(async () => {
    familyId = initFamilyKey(store, "sizes");
    familyKey = readFileSync(join(store, "families", "sizes.secret_family_key"));
    const members = Array.from({ length: 8 }, (_, i) => `${i}`.repeat(40).toUpperCase());
    cases.push(
      { name: "a non-exit, IPv4 only", torrc: torrcOf({ ipv6: undefined }) },
      { name: "an exit with the reduced policy, IPv4 and IPv6", torrc: torrcOf({ exit: { enabled: true } }) },
      {
        name: "an exit with narrow entries, a DirPort and a 5 kB contact",
        torrc: torrcOf({
          exit: { enabled: true, policy: ["reject 198.51.100.0/24:*", "accept [2001:db8::]/32:80", "accept 203.0.113.7:8000-8100", "accept *:443", "reject *:*"] },
          dirPort: 8080,
          contactInfo: `email:abuse[]example.net ${"x".repeat(5000)}`,
        }),
      },
      { name: "a family of nine with a family key", torrc: torrcOf({ family: "sizes" }, { familyFingerprints: members, familyIds: [familyId] }), family: true },
      { name: "a contact of multi-byte characters", torrc: torrcOf({ contactInfo: `email:abuse[]example.net ${"é€".repeat(2000)}` }) },
      { name: "the issue's 25 kB contact", torrc: torrcOf({ contactInfo: `email:abuse[]example.net ${"x".repeat(25_000)}` }) },
    );
    const results = await probeTorAsync(
      cases.map((c) => ({
        // The probe runs without the family key unless given one; this one has it, so tor writes the family-cert.
        lines: [...probeLines(c.torrc), ...(c.family ? [`FamilyId ${familyId}`] : [])],
        queries: ["dir/server/authority"],
        ...(c.family ? { files: { "keys/sizes.secret_family_key": familyKey } } : {}),
      })),
    );
    results.forEach((result, i) => {
      if ("error" in result) throw new Error(`tor built no descriptor for ${cases[i]!.name}: ${result.error}\n${result.log}`);
      const descriptor = result.answers["dir/server/authority"]!;
      expect(descriptor.endsWith("\n-----END SIGNATURE-----\n")).toBe(true);
      descriptors.set(cases[i]!.name, descriptor);
      actual.set(cases[i]!.name, Buffer.byteLength(descriptor, "utf8"));
    });
  }, 120_000);

  it("is never below the descriptor tor builds, and within its margin of it", () => {
    for (const { name, torrc } of cases) {
      const bound = descriptorSizeBound(torrc.map((line) => line.text)).bytes;
      const size = actual.get(name)!;
      expect(bound, name).toBeGreaterThanOrEqual(size);
      expect(bound - size, name).toBeLessThanOrEqual(SLACK);
    }
  });

  it("counts the family lines tor writes: MyFamily with the relay itself, and a family-cert per FamilyId", () => {
    const family = cases.find((c) => c.family)!;
    const without = descriptorSizeBound(family.torrc.filter((line) => !/^(MyFamily|FamilyId) /.test(line.text)).map((line) => line.text));
    const withFamily = descriptorSizeBound(family.torrc.map((line) => line.text));
    // tor's own family line (the relay and its eight members) and family-cert block.
    const descriptor = descriptors.get(family.name)!;
    const familyLine = /^family .*\n/m.exec(descriptor)![0];
    const familyCert = /^family-cert\n-----BEGIN FAMILY CERT-----\n[^-]*-----END FAMILY CERT-----\n/m.exec(descriptor)![0];
    expect(familyLine.split(" ")).toHaveLength(10);
    expect(withFamily.family).toBe(familyLine.length + familyCert.length);
    expect(withFamily.bytes - without.bytes).toBe(withFamily.family);
  });

  it("refuses the issue's 25 kB contactInfo, which tor's descriptor puts over the authorities' limit", () => {
    const big = cases.find((c) => c.name === "the issue's 25 kB contact")!;
    expect(actual.get(big.name)!).toBeGreaterThan(MAX_DESCRIPTOR_UPLOAD_SIZE);
    const contactLine = /^contact .*\n/m.exec(descriptors.get(big.name)!)![0];
    const { problems } = checkPublication([{ index: 0, config: validRelayConfig(), torrcLines: big.torrc }], { target: "proxmox" });
    expect(problems).toEqual([
      expect.stringMatching(
        /^relays\[0\]\.contactInfo \(relay r1\): the relay's descriptor would be up to \d+ bytes, over the 20000 bytes tor's directory authorities accept \(MAX_DESCRIPTOR_UPLOAD_SIZE\): they would drop it, and the relay would never be listed\. ContactInfo takes (\d+) bytes of it: shorten it by at least \d+ bytes$/,
      ),
    ]);
    expect(Number(/ContactInfo takes (\d+) bytes/.exec(problems[0]!)![1])).toBe(contactLine.length);
  });

  it("passes the longest contact whose bound fits, and tor's descriptor for it fits too", async () => {
    const fill = (n: number) => torrcOf({ contactInfo: `email:abuse[]example.net x${"x".repeat(n)}` });
    const base = descriptorSizeBound(fill(0).map((line) => line.text)).bytes;
    const torrc = fill(MAX_DESCRIPTOR_UPLOAD_SIZE - base);
    expect(descriptorSizeBound(torrc.map((line) => line.text)).bytes).toBe(MAX_DESCRIPTOR_UPLOAD_SIZE);
    expect(checkPublication([{ index: 0, config: validRelayConfig(), torrcLines: torrc }], { target: "proxmox" }).problems).toEqual([]);
    expect(checkPublication([{ index: 0, config: validRelayConfig(), torrcLines: fill(MAX_DESCRIPTOR_UPLOAD_SIZE - base + 1) }], { target: "proxmox" }).problems).toHaveLength(1);
    const result = (await probeTorAsync([{ lines: probeLines(torrc), queries: ["dir/server/authority"] }]))[0]!;
    if ("error" in result) throw new Error(result.error);
    const size = Buffer.byteLength(result.answers["dir/server/authority"]!, "utf8");
    expect(size).toBeLessThanOrEqual(MAX_DESCRIPTOR_UPLOAD_SIZE);
    expect(size).toBeGreaterThan(MAX_DESCRIPTOR_UPLOAD_SIZE - SLACK);
    // A real authority takes it.
    expect(await authority.upload(result.answers["dir/server/authority"]!)).toBe("200");
  }, 60_000);

  it("holds the limit against a real directory authority: 20000 bytes are taken, 20001 and the 25 kB contact's are dropped", async () => {
    // Descriptors of exactly 20000 and 20001 bytes: the contact grows the descriptor byte for byte.
    const probe = async (n: number) => {
      const result = (await probeTorAsync([{ lines: probeLines(torrcOf({ contactInfo: `email:abuse[]example.net x${"x".repeat(n)}` })), queries: ["dir/server/authority"] }]))[0]!;
      if ("error" in result) throw new Error(result.error);
      return result.answers["dir/server/authority"]!;
    };
    const base = Buffer.byteLength(await probe(0), "utf8");
    const [atLimit, overLimit] = (await probeTorAsync(
      [MAX_DESCRIPTOR_UPLOAD_SIZE, MAX_DESCRIPTOR_UPLOAD_SIZE + 1].map((size) => ({
        lines: probeLines(torrcOf({ contactInfo: `email:abuse[]example.net x${"x".repeat(size - base)}` })),
        queries: ["dir/server/authority"],
      })),
    )).map((result) => ("error" in result ? "" : result.answers["dir/server/authority"]!));
    expect([Buffer.byteLength(atLimit!), Buffer.byteLength(overLimit!)]).toEqual([MAX_DESCRIPTOR_UPLOAD_SIZE, MAX_DESCRIPTOR_UPLOAD_SIZE + 1]);
    expect(await authority.upload(atLimit!)).toBe("200");
    expect(await authority.upload(overLimit!)).toBe("400 Router descriptor was too large.");
    expect(await authority.upload(descriptors.get("the issue's 25 kB contact")!)).toBe("400 Router descriptor was too large.");
    for (const c of cases.filter((c) => actual.get(c.name)! <= MAX_DESCRIPTOR_UPLOAD_SIZE)) expect(await authority.upload(descriptors.get(c.name)!), c.name).toBe("200");
  }, 60_000);
});

/**
 * tor as a bridge authority on 127.0.0.1: it runs the directory
 * authorities' upload code (dirserv_add_descriptor). Its only other
 * authority is a stand-in on 127.0.0.1:1, so it reaches nothing outside.
 */
const authority = (() => {
  let ready: Promise<number> | undefined;
  let stop = () => {};
  const freePort = () =>
    new Promise<number>((resolve) => {
      const server = createServer();
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as { port: number };
        server.close(() => resolve(port));
      });
    });
  async function start(): Promise<number> {
    const dir = privateTmpDir("authority");
    mkdirSync(join(dir, "data"), { mode: 0o700 });
    const [orPort, dirPort] = [await freePort(), await freePort()];
    const torrc = [
      "Nickname SizeAuthority", "ContactInfo authority@example.net", "Address 127.0.0.1", `ORPort 127.0.0.1:${orPort}`, `DirPort 127.0.0.1:${dirPort}`,
      "AuthoritativeDirectory 1", "BridgeAuthoritativeDir 1", "AssumeReachable 1", "ExitRelay 0", "SocksPort 0", `DataDirectory ${join(dir, "data")}`, "Log notice stdout",
      `DirAuthority nowhere orport=1 no-v2 v3ident=${"0".repeat(40)} 127.0.0.1:1 ${"0".repeat(40)}`,
    ];
    writeFileSync(join(dir, "torrc"), torrc.join("\n") + "\n", { mode: 0o600 });
    const tor = spawn("tor", ["-f", join(dir, "torrc"), "--defaults-torrc", "/dev/null"], { stdio: ["ignore", "pipe", "pipe"] });
    stop = () => void tor.kill("SIGTERM");
    let log = "";
    await new Promise<void>((resolve, reject) => {
      tor.stdout.on("data", (chunk: Buffer) => {
        log += chunk.toString();
        if (/Opened Directory listener/.test(log)) resolve();
      });
      tor.on("exit", () => reject(new Error(`the authority stopped:\n${log}`)));
    });
    return dirPort;
  }
  afterAll(() => stop());
  return {
    /** Uploads a descriptor as a relay does; "200", or the status and tor's reason. */
    async upload(descriptor: string): Promise<string> {
      const port = await (ready ??= start());
      return new Promise((resolve, reject) => {
        const post = request({ host: "127.0.0.1", port, method: "POST", path: "/tor/", headers: { "Content-Length": Buffer.byteLength(descriptor) } }, (res) => {
          res.resume();
          resolve(res.statusCode === 200 ? "200" : `${res.statusCode} ${res.statusMessage}`);
        });
        post.on("error", reject);
        post.end(descriptor);
      });
    },
  };
})();
