/**
 * Exit hardening as data: the per-source connection limits on the ORPort and
 * on the exit notice's port 80 (an nftables ruleset), the conntrack table's
 * size and the kernel settings a busy relay needs, and tor's open-file limit.
 * Rendered here from the relay's validated `limits`; the image applies them
 * at boot before tor starts (images/rootfs/files/usr/local/sbin/relay-hardening).
 * Pure.
 *
 * Where the rules and numbers come from:
 * - toralf/torutils (README "Block DDoS", ipv4-rules.sh and ipv6-rules.sh,
 *   @c2e3de9, Aug 2026): a source is one IPv4 address or one IPv6 /64; no
 *   more than 8 concurrent connections from a source to the ORPort ("up to 8
 *   relays are allowed per ip address"), no more than 8 new connections a
 *   minute (burst 8) from it, values discussed in tor#40636; established
 *   connections are never touched; a NEW TCP packet must be a SYN and
 *   conntrack's INVALID packets are dropped; conntrack and the hash tables
 *   are sized by RAM (256 Ki entries up to 1 GiB, 512 Ki up to 4 GiB, 1 Mi
 *   above: "40 MiB per hash, 75 MiB for conntrack" at 256 Ki), with
 *   nf_conntrack_buckets, tcp_max_syn_backlog and somaxconn raised to the
 *   same size and tcp_syncookies on (setSysctlValues).
 *   Like torutils, the directory authorities are exempt from every limit
 *   (its "trusted" set): a limited authority cannot test the relay's
 *   reachability, and the relay leaves the consensus. Their addresses are
 *   in the image (lib/tor/tor-authorities.ts, tor's own list), not fetched at
 *   run time. Unlike torutils, an excess connection is dropped but its
 *   source is not put on a 24-hour block list that would outlive the flood.
 * - Tor's relay requirements (community.torproject.org/relay/relays-requirements):
 *   a non-exit handles at least 7000 concurrent connections, a fast exit more
 *   than 100k, which is what the conntrack table and the open-file limit are
 *   for.
 * - Since February 2023 the directory authorities accept up to 4 relays per
 *   IPv4 address (forum.torproject.net t/6431): a per-source limit below 4
 *   would cut off operators who run several relays behind one address, so
 *   the config refuses it (MIN_CONNECTIONS_PER_SOURCE).
 * - tor's doc/TUNING ("use ulimit -n to raise the number of file
 *   descriptors") and Debian's tor@default.service (LimitNOFILE=65536): tor
 *   under busybox init would otherwise get the kernel's default of 1024.
 * - Enkidu-6/tor-ddos (update scripts): ip_local_port_range 10000–65000, so
 *   that an exit's many outgoing connections to one destination do not run
 *   out of source ports (the kernel's default range has 28 232); ours ends
 *   at 65001, as the kernel asks for a start and end of different parity.
 */

import { isIP, isIPv4, isIPv6 } from "node:net";
import { EXIT_NOTICE_PORT, type PerSourceLimit } from "../config/limits";

/** The nftables table the image loads; its counters are what the health report shows. */
const NFT_TABLE = "diskless_relay";

/** The named counters of the ruleset, by what they count. */
export const LIMIT_COUNTERS = {
  invalid: "invalid_dropped",
  notSyn: "not_syn_reset",
  orPortConnections: "orport_over_connections",
  orPortRate: "orport_over_rate",
  noticeConnections: "notice_over_connections",
  noticeRate: "notice_over_rate",
} as const;

export interface HardeningInput {
  orPort: number;
  /** Per-source limits; none: no filter at all (limits.enabled false). */
  perSource?: {
    orPort: PerSourceLimit;
    /** Only for an exit that serves its notice. */
    notice?: PerSourceLimit;
    ipv6SourcePrefix: number;
    /**
     * Sources the limits never apply to: the directory authorities the relay
     * reports to (lib/tor/tor-authorities.ts, or the testnet's). torutils exempts
     * them too: a limited authority cannot test reachability, and the relay
     * leaves the consensus.
     */
    exempt: string[];
  };
  conntrackMax: number;
  openFiles: number;
  exit: boolean;
}

export interface Hardening {
  /** nft -f input; absent when the per-source limits are off. */
  ruleset?: string;
  /** "key value" lines: /proc/sys/KEY (dots as slashes) gets VALUE. */
  sysctls: string;
  /** tor's RLIMIT_NOFILE. */
  openFiles: number;
}

/** The mask that keeps an IPv6 address's first `prefix` bits, in nft's notation (64 → ffff:ffff:ffff:ffff::). */
export function ipv6PrefixMask(prefix: number): string {
  if (!Number.isInteger(prefix) || prefix < 1 || prefix > 128) throw new Error(`an IPv6 prefix length is 1–128, not ${prefix}`);
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) {
    const bits = Math.max(0, Math.min(16, prefix - i * 16));
    groups.push(((0xffff << (16 - bits)) & 0xffff).toString(16));
  }
  // Trailing zero groups collapse to "::"; a full mask has none.
  const firstZero = groups.indexOf("0");
  return firstZero < 0 ? groups.join(":") : `${groups.slice(0, firstZero).join(":")}::`;
}

function portRules(lines: string[], what: "orport" | "notice", port: number, limit: PerSourceLimit, ipv6Mask: string, setSize: number, counters: { rate: string; connections: string }) {
  const sources = [
    { family: "v4", type: "ipv4_addr", key: "ip saddr" },
    { family: "v6", type: "ipv6_addr", key: `ip6 saddr & ${ipv6Mask}` },
  ];
  const sets: string[] = [];
  const rules: string[] = [];
  for (const source of sources) {
    // Rate: one token bucket per source, forgotten two minutes after its last new connection (torutils' 2-minute window).
    sets.push(`\tset ${what}_rate_${source.family} {`, `\t\ttype ${source.type}`, `\t\tsize ${setSize}`, "\t\tflags dynamic,timeout", "\t\ttimeout 2m", "\t}");
    // Connections: the kernel counts each source's tracked connections (nf_conncount); no timeout, it forgets closed ones.
    sets.push(`\tset ${what}_connections_${source.family} {`, `\t\ttype ${source.type}`, `\t\tsize ${setSize}`, "\t\tflags dynamic", "\t}");
    rules.push(
      `\t\ttcp dport ${port} ct state new update @${what}_rate_${source.family} { ${source.key} limit rate over ${limit.newPerMinute}/minute burst ${limit.newPerMinute} packets } counter name "${counters.rate}" drop`,
      `\t\ttcp dport ${port} ct state new add @${what}_connections_${source.family} { ${source.key} ct count over ${limit.connections} } counter name "${counters.connections}" drop`,
    );
  }
  lines.push(...sets);
  return rules;
}

/** The authorities' addresses pass before any limit is looked at. */
function exemptRules(addresses: string[]): string[] {
  // Addresses only, as nft reads them: anything else would be ruleset text.
  for (const address of addresses) if (!isIP(address)) throw new Error(`an exempt source must be an IPv4 or IPv6 address, not ${JSON.stringify(address)}`);
  const v4 = addresses.filter((address) => isIPv4(address));
  const v6 = addresses.filter((address) => isIPv6(address));
  return [
    ...(v4.length > 0 ? [`\t\tip saddr { ${v4.join(", ")} } accept`] : []),
    ...(v6.length > 0 ? [`\t\tip6 saddr { ${v6.join(", ")} } accept`] : []),
  ];
}

/** The nftables ruleset: loaded atomically, replacing an older copy of the table (nft -f). */
export function renderNftRuleset(input: HardeningInput): string | undefined {
  const perSource = input.perSource;
  if (!perSource) return undefined;
  const mask = ipv6PrefixMask(perSource.ipv6SourcePrefix);
  const lines = [
    "# The relay's per-source connection limits: rendered by diskless-relays (lib/render/hardening.ts) from the stack config.",
    "# After toralf/torutils' ipv4-rules.sh and ipv6-rules.sh; the reasons are in lib/render/hardening.ts.",
    `add table inet ${NFT_TABLE}`,
    `delete table inet ${NFT_TABLE}`,
    `table inet ${NFT_TABLE} {`,
  ];
  const counters: string[] = [LIMIT_COUNTERS.invalid, LIMIT_COUNTERS.notSyn, LIMIT_COUNTERS.orPortRate, LIMIT_COUNTERS.orPortConnections];
  if (perSource.notice) counters.push(LIMIT_COUNTERS.noticeRate, LIMIT_COUNTERS.noticeConnections);
  for (const counter of counters) lines.push(`\tcounter ${counter} {`, "\t}");
  const rules = portRules(lines, "orport", input.orPort, perSource.orPort, mask, input.conntrackMax, { rate: LIMIT_COUNTERS.orPortRate, connections: LIMIT_COUNTERS.orPortConnections });
  if (perSource.notice) {
    rules.push(...portRules(lines, "notice", EXIT_NOTICE_PORT, perSource.notice, mask, input.conntrackMax, { rate: LIMIT_COUNTERS.noticeRate, connections: LIMIT_COUNTERS.noticeConnections }));
  }
  lines.push(
    "\tchain input {",
    // Accept by default: the limits drop what is over them and nothing else (the relay's ports are its config's).
    "\t\ttype filter hook input priority filter; policy accept;",
    '\t\tiif "lo" accept',
    // torutils: never touch established connections.
    "\t\tct state established,related accept",
    `\t\tct state invalid counter name "${LIMIT_COUNTERS.invalid}" drop`,
    // torutils: a NEW TCP connection starts with a SYN. Unlike torutils, the
    // rest is answered with a reset, as the kernel would answer it without a
    // filter: it is mostly a peer's packet of a connection this VM never had,
    // such as a channel to the relay's last VM stopped hard. Dropped, that
    // peer waits minutes for TCP to give up, and its circuits through the
    // relay hang; reset, it reconnects at once. A reset is never larger
    // than the packet it answers, and none answers a reset.
    `\t\ttcp flags & (fin|syn|rst|ack) != syn ct state new counter name "${LIMIT_COUNTERS.notSyn}" reject with tcp reset`,
    ...exemptRules(perSource.exempt),
    ...rules,
    "\t}",
    "}",
  );
  return lines.join("\n") + "\n";
}

/** The kernel settings, as "key value" lines. */
function renderSysctls(input: HardeningInput): string {
  const size = input.conntrackMax;
  const settings: [string, string][] = [
    // torutils setSysctlValues: conntrack's table, its hash and the SYN backlog sized alike; SYN cookies on.
    ["net.netfilter.nf_conntrack_max", String(size)],
    ["net.netfilter.nf_conntrack_buckets", String(size)],
    ["net.ipv4.tcp_syncookies", "1"],
    ["net.ipv4.tcp_max_syn_backlog", String(size)],
    ["net.core.somaxconn", String(size)],
  ];
  // An exit opens a connection per stream: more source ports (Enkidu-6/tor-ddos).
  if (input.exit) settings.push(["net.ipv4.ip_local_port_range", "10000 65001"]);
  return settings.map(([key, value]) => `${key} ${value}`).join("\n") + "\n";
}

export function renderHardening(input: HardeningInput): Hardening {
  const ruleset = renderNftRuleset(input);
  return { ...(ruleset ? { ruleset } : {}), sysctls: renderSysctls(input), openFiles: input.openFiles };
}

/** One named counter of the loaded ruleset, as the relay's health answer reports it. */
export interface LimitCounter {
  name: string;
  packets: number;
  bytes: number;
}

/** Reads `nft -j list counters table inet diskless_relay`; undefined when it is not that. */
export function parseNftCounters(json: string): LimitCounter[] | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return undefined;
  }
  const items = (parsed as { nftables?: unknown })?.nftables;
  if (!Array.isArray(items)) return undefined;
  const counters: LimitCounter[] = [];
  for (const item of items) {
    const counter = (item as { counter?: { name?: unknown; table?: unknown; packets?: unknown; bytes?: unknown } }).counter;
    if (!counter || counter.table !== NFT_TABLE || typeof counter.name !== "string") continue;
    if (typeof counter.packets !== "number" || typeof counter.bytes !== "number") continue;
    counters.push({ name: counter.name, packets: counter.packets, bytes: counter.bytes });
  }
  return counters;
}

/** Connection attempts dropped for being over a per-source limit (invalid packets are not attempts). */
export function droppedOverLimits(counters: LimitCounter[]): number {
  const over = new Set<string>([LIMIT_COUNTERS.orPortConnections, LIMIT_COUNTERS.orPortRate, LIMIT_COUNTERS.noticeConnections, LIMIT_COUNTERS.noticeRate]);
  return counters.filter((counter) => over.has(counter.name)).reduce((sum, counter) => sum + counter.packets, 0);
}
