/**
 * Exit policies as sets of (address, port), per address family, so that a
 * policy is judged by what it lets through rather than by its text: the
 * config's entries must end every family's list explicitly (else tor
 * appends its default policy, which accepts nearly everything), and tor's
 * effective policy (GETINFO exit-policy/full, lib/plan/publication.ts) must
 * accept nothing that no `accept` entry of the config lists. Pure: no I/O.
 */
import { canonicalAddress, familyBits, parseAddress, parsePrefix, prefixBounds, type ParsedPrefix } from "./addresses";
import { parsePolicyRule, type PolicyRule } from "./tor-values";

/**
 * What `private` means in an ExitPolicy entry: tor's private_nets
 * (src/core/or/policies.c), which ExitPolicyRejectPrivate also rejects.
 */
export const TOR_PRIVATE_NETS: readonly string[] = [
  "0.0.0.0/8", "169.254.0.0/16", "127.0.0.0/8", "192.168.0.0/16", "10.0.0.0/8", "172.16.0.0/12",
  "::/8", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8", "::/127",
];

/** tor's DEFAULT_EXIT_POLICY (src/core/or/policies.c): what tor appends after the last entry of ExitPolicy. */
export const TOR_DEFAULT_EXIT_POLICY: readonly string[] = [
  "reject *:25", "reject *:119", "reject *:135-139", "reject *:445", "reject *:563", "reject *:1214",
  "reject *:4661-4666", "reject *:6346-6429", "reject *:6699", "reject *:6881-6999", "accept *:*",
];

/** One entry of a policy for one address family: tor's addr_policy_t. */
export interface PolicyEntry {
  accept: boolean;
  network: ParsedPrefix;
  from: number;
  to: number;
}

export type Family = 4 | 6;
export const FAMILIES: readonly Family[] = [4, 6];

const everything = (family: Family): ParsedPrefix => ({ family, value: 0n, prefixLength: 0 });

/** The entries one config rule stands for: `accept *:80` is one IPv4 and one IPv6 entry, `private` is tor's private_nets. */
export function ruleEntries(rule: PolicyRule): PolicyEntry[] {
  const accept = rule.action === "accept";
  const { from, to } = rule.ports;
  const families: Family[] = rule.ipv6Only ? [6] : [4, 6];
  const host = rule.address.split("/")[0]!;
  let networks: ParsedPrefix[];
  if (host === "*") networks = families.map(everything);
  else if (host === "*4") networks = [everything(4)];
  else if (host === "*6") networks = [everything(6)];
  else if (host === "private") networks = TOR_PRIVATE_NETS.map((net) => parsePrefix(net)!).filter((net) => families.includes(net.family));
  else {
    const address = parseAddress(host.replace(/^\[|\]$/g, ""))!;
    const mask = rule.address.includes("/") ? Number(rule.address.split("/")[1]) : familyBits(address.family);
    networks = [{ ...address, prefixLength: mask }];
  }
  return networks.map((network) => ({ accept, network, from, to }));
}

/**
 * One line of tor's own policy dump (GETINFO exit-policy/full, or a
 * descriptor): `accept 198.51.100.0/24:80-81`, `reject6 [fc00::]/7:*`,
 * `accept *:443` (IPv4), `accept6 *:443` (IPv6). tor prints every entry
 * for one family, with `6` marking IPv6 (policy_write_item).
 */
export function parseTorPolicyLine(line: string): PolicyEntry | undefined {
  const match = /^(accept|reject)(6?) (\*|\[[0-9a-fA-F:.]+\]|[0-9.]+)(?:\/(\d{1,3}))?:(\*|\d{1,5}(?:-\d{1,5})?)$/.exec(line.trim());
  if (!match) return undefined;
  const [, action, six, host, mask, ports] = match as unknown as [string, string, string, string, string | undefined, string];
  const family: Family = six ? 6 : 4;
  let network: ParsedPrefix;
  if (host === "*") network = everything(family);
  else {
    const address = parseAddress(host.replace(/^\[|\]$/g, ""));
    if (!address || address.family !== family) return undefined;
    network = { ...address, prefixLength: mask === undefined ? familyBits(family) : Number(mask) };
  }
  const [from, to] = ports === "*" ? [1, 65535] : ports.split("-").map(Number).concat(ports.includes("-") ? [] : [Number(ports)]);
  return { accept: action === "accept", network, from: from!, to: to! };
}

/** tor's effective policy text (one entry a line), as entries; throws on a line this reader does not know. */
export function parseTorPolicy(text: string): PolicyEntry[] {
  return text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => {
      const entry = parseTorPolicyLine(line);
      if (!entry) throw new Error(`cannot read tor's exit policy line "${line}"`);
      return entry;
    });
}

const matches = (entry: PolicyEntry, family: Family, address: bigint, port: number) => {
  if (entry.network.family !== family || port < entry.from || port > entry.to) return false;
  const { first, last } = prefixBounds(entry.network);
  return address >= first && address <= last;
};

/** First match wins, as in tor; nothing matching is an accept (tor's fallback: ADDR_POLICY_PROBABLY_ACCEPTED). */
function accepts(policy: PolicyEntry[], family: Family, address: bigint, port: number): boolean {
  const entry = policy.find((e) => matches(e, family, address, port));
  return entry ? entry.accept : true;
}

/**
 * One address of each region the networks cut a family's space into: the
 * networks nest or are disjoint, so a region is a network minus the smaller
 * networks inside it, and every address of a region meets every entry alike.
 */
function regionRepresentatives(family: Family, networks: ParsedPrefix[]): bigint[] {
  const bounds = [...networks.filter((n) => n.family === family), everything(family)].map(prefixBounds);
  const out = new Set<bigint>();
  for (const outer of bounds) {
    const inner = bounds.filter((b) => b.first >= outer.first && b.last <= outer.last && !(b.first === outer.first && b.last === outer.last));
    // Just past an inner network first: a readable example (1.0.0.0 rather than 255.255.255.255).
    const candidates = [...inner.flatMap((b) => [b.last + 1n, b.first - 1n]), outer.first, outer.last];
    const free = candidates.find((c) => c >= outer.first && c <= outer.last && !inner.some((b) => c >= b.first && c <= b.last));
    if (free !== undefined) out.add(free);
  }
  return [...out];
}

/** One port of each run of ports that every entry treats alike. */
function portRepresentatives(entries: PolicyEntry[]): number[] {
  const starts = new Set<number>([1]);
  for (const e of entries) {
    starts.add(e.from);
    if (e.to < 65535) starts.add(e.to + 1);
  }
  return [...starts].sort((a, b) => a - b);
}

export interface PortRange {
  from: number;
  to: number;
}

/** Runs of ports from a sorted list of run starts and a predicate on each run. */
function runs(starts: number[], open: (port: number) => boolean): PortRange[] {
  const out: PortRange[] = [];
  starts.forEach((start, i) => {
    if (!open(start)) return;
    const to = i + 1 < starts.length ? starts[i + 1]! - 1 : 65535;
    const last = out[out.length - 1];
    if (last && last.to + 1 === start) last.to = to;
    else out.push({ from: start, to });
  });
  return out;
}

/** The ports a policy accepts for at least one address of the family. */
export function openPorts(policy: PolicyEntry[], family: Family): PortRange[] {
  const addresses = regionRepresentatives(family, policy.map((e) => e.network));
  return runs(portRepresentatives(policy), (port) => addresses.some((address) => accepts(policy, family, address, port)));
}

export interface Excess {
  family: Family;
  ports: PortRange[];
  /** An address tor lets through there, that no `accept` entry names. */
  example: string;
}

/**
 * What tor's effective policy accepts beyond the `accept` entries of the
 * config: every (address, port) of a family that tor accepts and that no
 * accept entry of the config holds, wherever in the list that entry stands.
 * Empty when the policy opens exactly what its author listed, or less
 * (tor's own rejects of private networks and the relay's own addresses only
 * take away).
 */
export function acceptedBeyondListed(effective: PolicyEntry[], listed: PolicyEntry[]): Excess[] {
  const granted = listed.filter((e) => e.accept);
  const out: Excess[] = [];
  for (const family of FAMILIES) {
    const addresses = regionRepresentatives(family, [...effective, ...listed].map((e) => e.network));
    const starts = portRepresentatives([...effective, ...listed]);
    let example: bigint | undefined;
    const ports = runs(starts, (port) => {
      const loose = addresses.find((address) => accepts(effective, family, address, port) && !granted.some((e) => matches(e, family, address, port)));
      if (loose !== undefined) example ??= loose;
      return loose !== undefined;
    });
    if (ports.length > 0) out.push({ family, ports, example: canonicalAddress({ family, value: example! }) });
  }
  return out;
}

/** "20-23, 43, 53, 80-81": ports as tor's summaries write them. */
export function formatPorts(ports: PortRange[]): string {
  if (ports.length === 0) return "none";
  return ports.map((p) => (p.from === p.to ? String(p.from) : p.from === 1 && p.to === 65535 ? "all" : `${p.from}-${p.to}`)).join(", ");
}

/** Whether an entry holds every address and every port of the family. */
const catchesAll = (entry: PolicyEntry, family: Family) => entry.network.family === family && entry.network.prefixLength === 0 && entry.from <= 1 && entry.to === 65535;

export interface CatchAllProblem {
  /** The entry at fault, or undefined for the list as a whole. */
  index?: number;
  message: string;
}

/**
 * A policy must decide every address and port itself. tor appends its
 * default policy (TOR_DEFAULT_EXIT_POLICY: a few rejects, then accept *:*)
 * after the last entry, so a family that no entry catches entirely
 * (`reject *:*`, `accept *:*`, or the per-family `reject *4:*`/`reject6
 * *:*` and `*6` forms, or 0.0.0.0/0 and [::]/0) falls through to nearly
 * open. Both families need one, whatever IPv6Exit says: the text must not
 * change meaning when IPv6 is turned on. An entry after its families'
 * catch-alls never applies (tor drops it), so it is refused too.
 */
export function catchAllProblems(policy: string[]): CatchAllProblem[] {
  // Entries tor would not read are reported on their own (parsePolicyRule); here they decide nothing.
  const entries = policy.map((text) => {
    const parsed = parsePolicyRule(text);
    return "rule" in parsed ? ruleEntries(parsed.rule) : [];
  });
  const caughtAt = (family: Family) => entries.findIndex((list) => list.some((entry) => catchesAll(entry, family)));
  const caught = { 4: caughtAt(4), 6: caughtAt(6) };
  const problems: CatchAllProblem[] = [];
  const missing = FAMILIES.filter((family) => caught[family] < 0);
  if (missing.length > 0) {
    const which = missing.length === 2 ? "every address" : `IPv${missing[0]} (${missing[0] === 4 ? '"reject *4:*"' : '"reject6 *:*"'} would catch it)`;
    problems.push({
      message: `does not end with a catch-all for ${which}: tor appends its default exit policy after the last entry, which accepts every port but a few (${TOR_DEFAULT_EXIT_POLICY.join(", ")}). End the list with "reject *:*", or "accept *:*" for an open exit`,
    });
  }
  entries.forEach((list, index) => {
    if (list.length === 0) return;
    const live = list.some((entry) => {
      const at = caught[entry.network.family];
      return at < 0 || at >= index;
    });
    if (!live) {
      const by = [...new Set(list.map((entry) => caught[entry.network.family]))].map((at) => `"${policy[at]}" (exit.policy[${at}])`).join(" and ");
      problems.push({ index, message: `"${policy[index]}" is never reached: ${by} already decided every address it names, and tor drops it. Move it before the catch-all, or remove it` });
    }
  });
  return problems;
}
