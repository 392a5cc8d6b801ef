/**
 * Exit policies judged by their effect, with real tor as the oracle: each
 * policy runs through a real tor (offline, lib/tor/tor-probe.ts), whose
 * GETINFO exit-policy/full says what the exit would accept. A policy the
 * config refuses is one where tor opens something the author did not list;
 * one it takes is one where every accept tor keeps is the author's own.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { ConfigError, parseStackConfig, type RelayConfig } from "../../lib/config/config";
import { acceptedBeyondListed, catchAllProblems, parseTorPolicy } from "../../lib/tor/exit-policy";
import { checkPublication, listedEntries, probeLines } from "../../lib/plan/publication";
import { probeTorAsync } from "../../lib/tor/tor-probe";
import { REDUCED_EXIT_POLICY, renderTorrcLines, type TorrcContext, type TorrcLine } from "../../lib/render/torrc";
import { validRelayConfig } from "../support/fleet";

const CONTEXT: TorrcContext = { dataDirectory: "/var/lib/tor", familyFingerprints: [], familyIds: [], sandbox: false };

/** An exit's torrc as the program renders it, with `policy` as its ExitPolicy lines whatever the config would say of them. */
function exitTorrc(policy: string[] | undefined, extra: string[] = []): TorrcLine[] {
  const lines = [...renderTorrcLines(validRelayConfig({ exit: { enabled: true } }), CONTEXT), ...extra.map((text) => ({ text }))];
  if (!policy) return lines;
  const first = lines.findIndex((line) => line.text.startsWith("ExitPolicy "));
  const rest = lines.filter((line) => !line.text.startsWith("ExitPolicy "));
  return [...rest.slice(0, first), ...policy.map((rule, i) => ({ text: `ExitPolicy ${rule}`, field: `exit.policy[${i}]` })), ...rest.slice(first)];
}

/** The config's verdict: the problems reported under relays[0].exit.policy, or none. */
function configVerdict(policy: string[]): string[] {
  try {
    validRelayConfig({ exit: { enabled: true, policy } });
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.problems.filter((p) => p.path.startsWith("relays[0].exit.policy")).map((p) => `${p.path}: ${p.message}`);
  }
}

/** How tor writes a config entry in its own dump: one line per family it applies to (policy_write_item). */
function torSpelling(rule: string): string[] {
  const [, action, six, host, rest] = /^(accept|reject)(6?) (\*4|\*6|\*|\[[^\]]+\]|[^:/]+)(.*)$/.exec(rule)!;
  if (host === "*") return six ? [`${action}6 *${rest}`] : [`${action} *${rest}`, `${action}6 *${rest}`];
  if (host === "*4") return [`${action} *${rest}`];
  if (host === "*6") return [`${action}6 *${rest}`];
  return [`${action}${host!.startsWith("[") ? "6" : ""} ${host}${rest}`];
}

/**
 * Policies of the kind, with what the config says of each. Every
 * one also runs through tor below, whose verdict must agree.
 */
const CASES: { name: string; policy: string[] | undefined; extra?: string[]; refused: boolean }[] = [
  { name: "the issue's example: one accept, no catch-all", policy: ["accept *:443"], refused: true },
  { name: "a list that ends in an accept", policy: ["reject *:25", "accept *:80"], refused: true },
  { name: "an IPv4 catch-all only (IPv6Exit 1)", policy: ["accept *:443", "reject *4:*"], refused: true },
  { name: "a catch-all written as 0.0.0.0/0 only", policy: ["accept *:80", "reject 0.0.0.0/0:*"], refused: true },
  { name: "accept6 and reject6 only", policy: ["accept6 *:443", "reject6 *:*"], refused: true },
  { name: "private networks only, no catch-all", policy: ["accept private:*"], refused: true },
  { name: "the reduced policy (the default)", policy: undefined, refused: false },
  { name: "reject *4:* and reject6 *:* together", policy: ["accept *:80", "reject *4:*", "reject6 *:*"], refused: false },
  { name: "reject *4:* and reject *6:* together", policy: ["accept *:80", "reject *4:*", "reject *6:*"], refused: false },
  { name: "0.0.0.0/0 and [::]/0", policy: ["accept *:443", "reject 0.0.0.0/0:*", "reject [::]/0:*"], refused: false },
  { name: "a port range 1-65535 as the catch-all", policy: ["accept *:443", "reject *:1-65535"], refused: false },
  { name: "an accept of private networks (tor rejects them first anyway)", policy: ["accept private:*", "accept *:443", "reject *:*"], refused: false },
  { name: "one network, all ports", policy: ["accept 198.51.100.0/24:*", "reject *:*"], refused: false },
  { name: "an open exit, said explicitly", policy: ["accept *:*"], refused: false },
  // The local testnet's exits (ExitPolicyRejectPrivate 0): tor lets private networks through, as far as the entries say.
  { name: "ExitPolicyRejectPrivate 0 and a port for everyone", policy: ["accept *:80", "reject *:*"], extra: ["ExitPolicyRejectPrivate 0"], refused: false },
  { name: "ExitPolicyRejectPrivate 0 and one private network", policy: ["accept 10.0.0.0/8:*", "reject *:*"], extra: ["ExitPolicyRejectPrivate 0"], refused: false },
  { name: "ExitPolicyRejectPrivate 0 and no catch-all", policy: ["accept private:*"], extra: ["ExitPolicyRejectPrivate 0"], refused: true },
];

describe("exit policies", () => {
  const effective = new Map<string, string>();
  beforeAll(async () => {
    const results = await probeTorAsync(CASES.map((c) => ({ lines: probeLines(exitTorrc(c.policy, c.extra)), queries: ["exit-policy/full"] })));
    results.forEach((result, i) => {
      if ("error" in result) throw new Error(`tor could not compute ${CASES[i]!.name}: ${result.error}\n${result.log}`);
      effective.set(CASES[i]!.name, result.answers["exit-policy/full"]!);
    });
  }, 120_000);

  it.each(CASES)("$name: the config's verdict is tor's", ({ name, policy, extra, refused }) => {
    const tor = effective.get(name)!;
    const lines = tor.split("\n");
    const listed = (policy ?? REDUCED_EXIT_POLICY).flatMap(torSpelling);
    // tor's own words: an accept line the author never wrote is tor's default policy, appended.
    const foreignAccepts = lines.filter((line) => line.startsWith("accept") && !listed.includes(line));
    expect(foreignAccepts.length > 0, `tor's effective policy:\n${tor}`).toBe(refused);
    if (policy) expect(configVerdict(policy).length > 0, configVerdict(policy).join("\n")).toBe(refused);
    // The effect check, which preview runs on whatever reaches tor, reaches the same verdict.
    expect(acceptedBeyondListed(parseTorPolicy(tor), listedEntries(exitTorrc(policy, extra))).length > 0).toBe(refused);
  });

  it("refuses the issue's example at parse time, naming the field and asking for a catch-all", () => {
    expect(() =>
      parseStackConfig({
        proxmox: { endpoint: "https://pve.example.net:8006", nodes: ["pve1"], datastore: "local", bridge: "vmbr0" },
        proxmoxApiToken: "a@pve!b=c",
        stateCollection: { privateKeyFile: "k" },
        relays: [
          { name: "r1", nickname: "R1", node: "pve1", vmId: 9101, mac: "BC:24:11:00:00:01", ipv4: { address: "198.51.100.11/24", gateway: "198.51.100.1" }, contactInfo: "x@example.net", exit: { enabled: true, policy: ["accept *:443"] } },
        ],
      }),
    ).toThrow(/relays\[0\]\.exit\.policy: does not end with a catch-all for every address: tor appends its default exit policy/);
  });

  it("says which family a one-sided catch-all leaves open", () => {
    expect(configVerdict(["accept *:443", "reject *4:*"])).toEqual([expect.stringMatching(/^relays\[0\]\.exit\.policy: does not end with a catch-all for IPv6 \("reject6 \*:\*" would catch it\)/)]);
    expect(configVerdict(["accept6 *:443", "reject6 *:*"])).toEqual([expect.stringMatching(/^relays\[0\]\.exit\.policy: does not end with a catch-all for IPv4/)]);
  });

  it("refuses an entry after the catch-all, which tor drops without a word", () => {
    expect(configVerdict(["accept *:443", "reject *:*", "accept *:80"])).toEqual([expect.stringMatching(/^relays\[0\]\.exit\.policy\[2\]: "accept \*:80" is never reached: "reject \*:\*" \(exit\.policy\[1\]\)/)]);
    // After an IPv4-only catch-all, an IPv4 entry is dead but an IPv6 one still applies.
    expect(catchAllProblems(["reject *4:*", "accept 198.51.100.1:80", "accept6 *:80", "reject6 *:*"]).map((p) => p.index)).toEqual([1]);
  });

  it("refuses what tor opens beyond the list even when the text reaches tor unchecked, showing tor's effective policy", () => {
    const relay = validRelayConfig({ exit: { enabled: true } });
    const { problems, notes } = checkPublication([{ index: 3, config: relay, torrcLines: exitTorrc(["accept *:443"]) }], { target: "proxmox" });
    expect(problems).toHaveLength(1);
    // Everything but tor's default rejects (25, 119, 135-139 ...) and the listed 443.
    const opened = "1-24, 26-118, 120-134, 140-442, 444, 446-562, 564-1213, 1215-4660, 4667-6345, 6430-6698, 6700-6880, 7000-65535";
    expect(problems[0]).toContain(`relays[3].exit.policy (relay r1): tor 0.4.`);
    expect(problems[0]).toContain(`'s effective exit policy accepts more than the list does: IPv4 ports ${opened} (e.g. to 1.0.0.0); IPv6 ports ${opened} (e.g. to 100::), which no "accept" entry lists.`);
    expect(problems[0]).toContain(`tor's effective policy: ${effective.get(CASES[0]!.name)!.split("\n").join(", ")}`);
    expect(problems[0]).toMatch(/accept \*:\*, accept6 \*:\*$/);
    expect(notes).toHaveLength(1);
  });

  it("shows each exit's open ports in one line, the ports tor's own summary lists", async () => {
    const relay = validRelayConfig({ exit: { enabled: true } });
    const torrc = exitTorrc(undefined);
    const { problems, notes } = checkPublication([{ index: 0, config: relay, torrcLines: torrc }], { target: "proxmox" });
    expect(problems).toEqual([]);
    // tor's summary of its IPv6 policy (policy_summarize), from the descriptor it builds.
    const described = (await probeTorAsync([{ lines: probeLines(torrc), queries: ["dir/server/authority"] }]))[0]!;
    if ("error" in described) throw new Error(described.error);
    const summary = /^ipv6-policy accept (.*)$/m.exec(described.answers["dir/server/authority"]!)![1]!;
    expect(notes).toEqual([`relay r1 (relays[0]) exits to IPv4 and IPv6 ports ${summary.split(",").join(", ")} (tor ${/^platform Tor (\S+)/m.exec(described.answers["dir/server/authority"]!)![1]}'s effective exit policy)`]);
  }, 60_000);

  it("tells the families apart when IPv6 exiting is off", () => {
    const relay: RelayConfig = validRelayConfig({ exit: { enabled: true, ipv6Exit: false, policy: ["accept *:80", "accept *:443", "reject *:*"] } });
    const torrc = renderTorrcLines(relay, CONTEXT);
    const { problems, notes } = checkPublication([{ index: 0, config: relay, torrcLines: torrc }], { target: "proxmox" });
    expect(problems).toEqual([]);
    expect(notes[0]).toMatch(/exits to IPv4 ports 80, 443; IPv6 ports none \(tor /);
  }, 60_000);
});
