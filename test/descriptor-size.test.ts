/**
 * The descriptor size bound, held against the descriptors real tor builds
 * from the same torrc (offline, lib/tor-probe.ts: GETINFO
 * dir/server/authority returns the relay's own signed descriptor). The
 * bound must never be below tor's size, and not far above it.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { descriptorSizeBound, MAX_DESCRIPTOR_UPLOAD_SIZE } from "../lib/descriptor-size";
import { initFamilyKey } from "../lib/key-store";
import { checkPublication, probeLines } from "../lib/publication";
import { probeTor } from "../lib/tor-probe";
import { renderTorrcLines, type TorrcContext, type TorrcLine } from "../lib/torrc";
import { validRelayConfig } from "./support/fleet";
import { privateTmpDir } from "./support/tmp";

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

  beforeAll(() => {
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
          dirPort: 80,
          contactInfo: `email:abuse[]example.net ${"x".repeat(5000)}`,
        }),
      },
      { name: "a family of nine with a family key", torrc: torrcOf({ family: "sizes" }, { familyFingerprints: members, familyIds: [familyId] }), family: true },
      { name: "a contact of multi-byte characters", torrc: torrcOf({ contactInfo: `email:abuse[]example.net ${"é€".repeat(2000)}` }) },
      { name: "the issue's 25 kB contact", torrc: torrcOf({ contactInfo: `email:abuse[]example.net ${"x".repeat(25_000)}` }) },
    );
    const results = probeTor(
      cases.map((c) => ({
        // The probe runs without the family key unless given one; this one has it, so tor writes the family-cert.
        lines: [...probeLines(c.torrc), ...(c.family ? [`FamilyId ${familyId}`] : [])],
        queries: ["dir/server/authority"],
        ...(c.family ? { files: { "keys/sizes.secret_family_key": familyKey } } : {}),
      })),
    );
    results.forEach((result, i) => {
      if ("error" in result) throw new Error(`tor built no descriptor for ${cases[i]!.name}: ${result.error}\n${result.log}`);
      // The control protocol's data block drops the descriptor's final newline.
      const descriptor = `${result.answers["dir/server/authority"]!}\n`;
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

  it("passes the longest contact whose bound fits, and tor's descriptor for it fits too", () => {
    const fill = (n: number) => torrcOf({ contactInfo: `email:abuse[]example.net x${"x".repeat(n)}` });
    const base = descriptorSizeBound(fill(0).map((line) => line.text)).bytes;
    const torrc = fill(MAX_DESCRIPTOR_UPLOAD_SIZE - base);
    expect(descriptorSizeBound(torrc.map((line) => line.text)).bytes).toBe(MAX_DESCRIPTOR_UPLOAD_SIZE);
    expect(checkPublication([{ index: 0, config: validRelayConfig(), torrcLines: torrc }], { target: "proxmox" }).problems).toEqual([]);
    expect(checkPublication([{ index: 0, config: validRelayConfig(), torrcLines: fill(MAX_DESCRIPTOR_UPLOAD_SIZE - base + 1) }], { target: "proxmox" }).problems).toHaveLength(1);
    const result = probeTor([{ lines: probeLines(torrc), queries: ["dir/server/authority"] }])[0]!;
    if ("error" in result) throw new Error(result.error);
    const size = Buffer.byteLength(result.answers["dir/server/authority"]!, "utf8") + 1;
    expect(size).toBeLessThanOrEqual(MAX_DESCRIPTOR_UPLOAD_SIZE);
    expect(size).toBeGreaterThan(MAX_DESCRIPTOR_UPLOAD_SIZE - SLACK);
  }, 60_000);
});
