/**
 * What an address is for, and the rules the stack config builds on that:
 * where a relay may stand so that tor publishes it, which resolvers an exit
 * may forward its users' lookups to, and how much of the internet an
 * allow-list may open a port to. An address is judged by what it reaches,
 * not by how it is written: the IPv6 spellings that carry an IPv4 address
 * (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) are read as that IPv4
 * address too. Pure: no I/O.
 */
import { canonicalAddress, familyBits, formatPrefix, parsePrefix, prefixBounds, unionSize, type ParsedAddress, type ParsedPrefix } from "./addresses";

type RangeKind =
  | "unspecified"
  | "loopback"
  | "private"
  | "shared"
  | "link-local"
  | "site-local"
  | "unique-local"
  | "multicast"
  | "reserved"
  | "broadcast"
  | "benchmarking"
  | "protocol"
  | "anycast"
  | "documentation"
  | "ipv4-mapped"
  | "ipv4-compatible"
  | "nat64"
  | "discard"
  | "teredo"
  | "6to4"
  | "not-global";

export interface SpecialRange {
  prefix: ParsedPrefix;
  kind: RangeKind;
  /** What the range is, for messages: "a private address (10.0.0.0/8, RFC 1918)". */
  description: string;
  /**
   * tor's tor_addr_is_internal() (src/lib/net/address.c) holds it internal:
   * directory authorities refuse a descriptor with such an address
   * (dirserv_router_has_valid_address, src/feature/dirauth/process_descs.c:
   * "Rejected: Address is a private address."), and a relay using the
   * default authorities does not even build a descriptor for such an IPv4
   * address (address_can_be_used, src/app/config/resolve_addr.c).
   */
  torInternal: boolean;
}

/** `what` ends in ", RFC n": the description reads "a private address (10.0.0.0/8, RFC 1918)". */
const range = (prefix: string, kind: RangeKind, what: string, torInternal = false): SpecialRange => {
  const parsed = parsePrefix(prefix)!;
  const [, name, rfc] = /^(.*), (RFC \d+)$/.exec(what)!;
  return { prefix: parsed, kind, description: `${name} (${formatPrefix(parsed)}, ${rfc})`, torInternal };
};

/**
 * IANA's IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and
 * the RFCs named), plus multicast and the IPv6 space outside global
 * unicast. The most specific range that holds an address describes it.
 */
const SPECIAL_RANGES: readonly SpecialRange[] = [
  range("0.0.0.0/8", "unspecified", "an unspecified address, RFC 1122", true),
  range("10.0.0.0/8", "private", "a private address, RFC 1918", true),
  range("100.64.0.0/10", "shared", "a carrier-grade NAT (shared) address, RFC 6598", true),
  range("127.0.0.0/8", "loopback", "a loopback address, RFC 1122", true),
  range("169.254.0.0/16", "link-local", "a link-local address, RFC 3927", true),
  range("172.16.0.0/12", "private", "a private address, RFC 1918", true),
  range("192.0.0.0/24", "protocol", "an IETF protocol assignment, RFC 6890"),
  range("192.0.2.0/24", "documentation", "a documentation address, RFC 5737"),
  range("192.88.99.0/24", "anycast", "the deprecated 6to4 relay anycast range, RFC 7526"),
  range("192.168.0.0/16", "private", "a private address, RFC 1918", true),
  range("198.18.0.0/15", "benchmarking", "a benchmarking address, RFC 2544"),
  range("198.51.100.0/24", "documentation", "a documentation address, RFC 5737"),
  range("203.0.113.0/24", "documentation", "a documentation address, RFC 5737"),
  range("224.0.0.0/4", "multicast", "a multicast address, RFC 5771"),
  range("240.0.0.0/4", "reserved", "a reserved address, RFC 1112"),
  range("255.255.255.255/32", "broadcast", "the limited broadcast address, RFC 919"),
  // Outside 2000::/3 nothing is handed out as a host's global address.
  { ...range("::/0", "not-global", "outside global unicast space, RFC 4291"), description: "outside IPv6's global unicast space (2000::/3, RFC 4291)" },
  range("::/128", "unspecified", "the unspecified address, RFC 4291", true),
  range("::1/128", "loopback", "the loopback address, RFC 4291", true),
  range("::/96", "ipv4-compatible", "a deprecated IPv4-compatible address, RFC 4291"),
  range("::ffff:0:0/96", "ipv4-mapped", "an IPv4-mapped address, RFC 4291"),
  range("64:ff9b::/96", "nat64", "a NAT64 address of the well-known prefix, RFC 6052"),
  range("64:ff9b:1::/48", "nat64", "a NAT64 address of the local-use prefix, RFC 8215"),
  range("100::/64", "discard", "a discard-only address, RFC 6666"),
  range("2001::/32", "teredo", "a Teredo tunnel address, RFC 4380"),
  range("2001:2::/48", "benchmarking", "a benchmarking address, RFC 5180"),
  range("2001:db8::/32", "documentation", "a documentation address, RFC 3849"),
  range("2002::/16", "6to4", "a 6to4 address, RFC 3056"),
  range("3fff::/20", "documentation", "a documentation address, RFC 9637"),
  range("fc00::/7", "unique-local", "a unique local address, RFC 4193", true),
  range("fe80::/10", "link-local", "a link-local address, RFC 4291", true),
  range("fec0::/10", "site-local", "a deprecated site-local address, RFC 3879", true),
  range("ff00::/8", "multicast", "a multicast address, RFC 4291"),
];

const GLOBAL_UNICAST_V6 = parsePrefix("2000::/3")!;

function holds(prefix: ParsedPrefix, address: ParsedAddress): boolean {
  if (prefix.family !== address.family) return false;
  const { first, last } = prefixBounds(prefix);
  return address.value >= first && address.value <= last;
}

/** The most specific special-purpose range holding the address; undefined for an ordinary global address. */
export function specialRange(address: ParsedAddress): SpecialRange | undefined {
  if (address.family === 6 && holds(GLOBAL_UNICAST_V6, address)) {
    // Inside 2000::/3 only the listed sub-ranges are special.
    return SPECIAL_RANGES.filter((entry) => entry.prefix.family === 6 && entry.prefix.prefixLength > 0 && holds(entry.prefix, address)).sort((a, b) => b.prefix.prefixLength - a.prefix.prefixLength)[0];
  }
  return SPECIAL_RANGES.filter((entry) => holds(entry.prefix, address)).sort((a, b) => b.prefix.prefixLength - a.prefix.prefixLength)[0];
}

/** The IPv4 address an IPv6 address carries, and the spelling that carries it. */
export interface EmbeddedIPv4 {
  how: string;
  ipv4: ParsedAddress;
  /** One of several readings of the same address (a NAT64 local-use prefix, whose length its operator chooses). */
  ambiguous?: boolean;
}

const v4 = (value: bigint): ParsedAddress => ({ family: 4, value: value & 0xffffffffn });
const bitsAt = (value: bigint, from: number, length: number) => (value >> BigInt(128 - from - length)) & ((1n << BigInt(length)) - 1n);
const TRANSLATIONS: { prefix: ParsedPrefix; how: string; extract: (value: bigint) => bigint; ambiguous?: boolean }[] = [
  { prefix: parsePrefix("::ffff:0:0/96")!, how: "IPv4-mapped", extract: (value) => value },
  { prefix: parsePrefix("64:ff9b::/96")!, how: "NAT64 (64:ff9b::/96)", extract: (value) => value },
  // The local-use prefix is cut by its operator: /96 (the IPv4 address last) is usual, /48 keeps it in bits 48–63 and 72–87 (RFC 6052 §2.2).
  { prefix: parsePrefix("64:ff9b:1::/48")!, how: "NAT64 (64:ff9b:1::/48, as a /96)", extract: (value) => value, ambiguous: true },
  { prefix: parsePrefix("64:ff9b:1::/48")!, how: "NAT64 (64:ff9b:1::/48, as a /48)", extract: (value) => (bitsAt(value, 48, 16) << 16n) | bitsAt(value, 72, 16), ambiguous: true },
  { prefix: parsePrefix("2002::/16")!, how: "6to4", extract: (value) => bitsAt(value, 16, 32) },
  // A Teredo address ends in its client's IPv4 address, every bit inverted (RFC 4380 §4).
  { prefix: parsePrefix("2001::/32")!, how: "Teredo", extract: (value) => ~value },
];

/**
 * The IPv4 addresses an IPv6 address stands for: IPv4-mapped
 * (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64, 6to4 and Teredo.
 * Empty for an IPv4 address and for other IPv6 addresses.
 */
export function embeddedIPv4(address: ParsedAddress): EmbeddedIPv4[] {
  if (address.family !== 6) return [];
  const found: EmbeddedIPv4[] = TRANSLATIONS.filter((t) => holds(t.prefix, address)).map((t) => ({ how: t.how, ipv4: v4(t.extract(address.value)), ...(t.ambiguous ? { ambiguous: true } : {}) }));
  // ::a.b.c.d, except :: and ::1, which are IPv6's own unspecified and loopback addresses.
  if (address.value >> 32n === 0n && address.value > 1n) found.push({ how: "IPv4-compatible", ipv4: v4(address.value) });
  return found;
}

/**
 * The address and every IPv4 address it stands for, each with how it was
 * written. `certain`: only the readings that do not depend on a prefix
 * length the address does not tell.
 */
function readings(address: ParsedAddress, certain = false): { how?: string; address: ParsedAddress }[] {
  const embedded = embeddedIPv4(address).filter((e) => !(certain && e.ambiguous));
  return [{ address }, ...embedded.map((e) => ({ how: e.how, address: e.ipv4 }))];
}

const spelled = (how: string | undefined, address: ParsedAddress) => (how ? ` (${canonicalAddress(address)}, written ${how})` : "");

/**
 * Why tor would never publish a relay at this address, or undefined if it
 * would. Documentation addresses are not refused here (examples use them);
 * see documentationRange.
 */
export function unpublishableReason(address: ParsedAddress): string | undefined {
  const special = specialRange(address);
  if (!special || special.kind === "documentation") return undefined;
  const shown = canonicalAddress(address);
  if (special.torInternal) {
    return `${shown} is ${special.description}; tor with the default directory authorities never publishes a relay there (tor_addr_is_internal: the authorities refuse its descriptor as "a private address"). Give the relay its public address`;
  }
  const why: Partial<Record<RangeKind, string>> = {
    multicast: "no TCP connection reaches it, and tor clients never extend a circuit to one (extend_info_addr_is_allowed)",
    reserved: "it is not routed on the internet",
    broadcast: "it is not one host's address",
    benchmarking: "it is not routed on the internet",
    protocol: "it is not routed as a host's public address",
    anycast: "many routers share it; it is not one relay's address",
    "ipv4-mapped": "an IPv6 socket's spelling of an IPv4 address, never a host's IPv6 address",
    "ipv4-compatible": "no longer routed",
    nat64: "a translator's range: traffic to it goes to an IPv4 host, not to the relay",
    discard: "everything sent there is dropped",
    teredo: "a tunnel address derived from a NAT mapping, which changes; clients could not reach the relay reliably",
    "6to4": "reachable only through the public 6to4 relays, which RFC 7526 retired; clients could not reach the relay reliably",
    "not-global": "no registry hands out addresses there",
  };
  return `${shown} is ${special.description}: ${why[special.kind] ?? "not a public address"}; tor's directory authorities would list a relay nobody can reach. Give the relay its public address`;
}

/** The documentation range holding the address, if any: fine in an example, unreachable in a deployment. */
export function documentationRange(address: ParsedAddress): SpecialRange | undefined {
  const special = specialRange(address);
  return special?.kind === "documentation" ? special : undefined;
}

/**
 * Why a resolver at this address cannot serve a relay, or undefined. `exit`:
 * the address is an upstream of the exit's own resolver (unbound on
 * 127.0.0.1 and ::1); otherwise it is a line of a non-exit's resolv.conf,
 * and a non-exit runs no resolver of its own.
 */
export function resolverProblem(address: ParsedAddress, exit: boolean): string | undefined {
  // Refusals stand on certain readings only; the big-resolver rule below takes every reading.
  for (const { how, address: reached } of readings(address, true)) {
    const kind = specialRange(reached)?.kind;
    const at = `${canonicalAddress(address)}${spelled(how, reached)}`;
    if (kind === "loopback") {
      return exit
        ? `${at} is a loopback address: it is the exit's own resolver (unbound listens on 127.0.0.1 and ::1), which would forward every lookup to itself and answer SERVFAIL. Name a resolver on another host, or none: unbound then resolves from the root itself`
        : `${at} is a loopback address, and only exits run a resolver of their own: nothing would answer this relay's lookups. Name a resolver on another host`;
    }
    if (kind === "unspecified") return `${at} is an unspecified address: no resolver answers there. Name a resolver's own address${exit ? ", or none: unbound then resolves from the root itself" : ""}`;
    if (kind === "multicast" || kind === "broadcast" || kind === "reserved" || kind === "discard") {
      return `${at} is ${specialRange(reached)!.description}, not a resolver's unicast address`;
    }
  }
  if (address.family === 6 && specialRange(address)?.kind === "link-local") {
    return `${canonicalAddress(address)} is a link-local address, which needs an interface (a zone id) that a relay's config cannot name; use the resolver's global or unique local address`;
  }
  return undefined;
}

/**
 * The big public resolver operator an address reaches, however written
 * (8.8.8.8, ::ffff:8.8.8.8, 64:ff9b::808:808, 2002:808:808::1 ...).
 */
export function resolverOperator(address: ParsedAddress, operators: ReadonlyMap<string, string>): { operator: string; reached: string; how?: string } | undefined {
  for (const { how, address: reached } of readings(address)) {
    const operator = operators.get(canonicalAddress(reached));
    if (operator) return { operator, reached: canonicalAddress(reached), ...(how ? { how } : {}) };
  }
  return undefined;
}

/**
 * How wide an allow-list of source networks may be: the widest network an
 * operator can call their own. IPv4: a /8 (an old class A; a whole RFC 1918
 * 10/8 still fits). IPv6: a /32, a registry's smallest allocation to an
 * ISP; an operator's own site is a /48. Anything wider opens the port to
 * other people's networks.
 */
const ALLOW_LIST_LIMIT = { 4: 8, 6: 32 } as const;

/** Ranges that are nobody's public network: RFC 1918, CGNAT, loopback, link-local, ULA, documentation. */
const OWN_NETWORK_KINDS: ReadonlySet<RangeKind> = new Set(["private", "shared", "loopback", "link-local", "unique-local", "site-local", "documentation"]);
const OWN_NETWORKS = SPECIAL_RANGES.filter((entry) => OWN_NETWORK_KINDS.has(entry.kind)).map((entry) => entry.prefix);

/** The part of a prefix outside the own-network ranges, as a count of addresses (0: wholly private or documentation). */
function publicPart(prefix: ParsedPrefix): bigint {
  // An IPv4-mapped network is the IPv4 network it spells.
  const mapped = parsePrefix("::ffff:0:0/96")!;
  if (prefix.family === 6 && prefix.prefixLength >= 96 && holds(mapped, prefix)) return publicPart({ family: 4, value: prefix.value & 0xffffffffn, prefixLength: prefix.prefixLength - 96 });
  const inside = OWN_NETWORKS.filter((own) => own.family === prefix.family).flatMap((own) => {
    const a = prefixBounds(own);
    const b = prefixBounds(prefix);
    const first = a.first > b.first ? a.first : b.first;
    const last = a.last < b.last ? a.last : b.last;
    if (first > last) return [];
    // Prefixes nest or are disjoint: the overlap is the smaller one.
    return [own.prefixLength >= prefix.prefixLength ? own : prefix];
  });
  const { first, last } = prefixBounds(prefix);
  return last - first + 1n - unionSize(inside);
}

/**
 * The IPv4 networks an IPv6 prefix stands for (an IPv4-mapped /96 is all of
 * IPv4, 2002::/16 is 6to4 for all of IPv4, 64:ff9b::/96 is what a NAT64
 * gateway translates for all of IPv4 ...): a source list is judged by the
 * IPv4 space it admits through each translation, too.
 */
function embeddedIPv4Networks(prefix: ParsedPrefix): ParsedPrefix[] {
  if (prefix.family !== 6) return [];
  const schemes: { base: string; offset: number; invert?: boolean }[] = [
    { base: "::ffff:0:0/96", offset: 96 },
    { base: "::/96", offset: 96 },
    { base: "64:ff9b::/96", offset: 96 },
    { base: "64:ff9b:1::/48", offset: 96 },
    { base: "2002::/16", offset: 16 },
    { base: "2001::/32", offset: 96, invert: true },
  ];
  const out: ParsedPrefix[] = [];
  for (const scheme of schemes) {
    const base = parsePrefix(scheme.base)!;
    const b = prefixBounds(base);
    const p = prefixBounds(prefix);
    if (p.last < b.first || p.first > b.last) continue;
    if (prefix.prefixLength <= base.prefixLength) {
      // The prefix holds the whole translation range: every IPv4 address.
      out.push({ family: 4, value: 0n, prefixLength: 0 });
      continue;
    }
    const known = Math.max(0, Math.min(32, prefix.prefixLength - scheme.offset));
    let value = bitsAt(p.first, scheme.offset, 32);
    if (scheme.invert) value = ~value & 0xffffffffn;
    out.push({ family: 4, value, prefixLength: known });
  }
  return out;
}

/** 16777216, or 2^96 when the decimal would be unreadable. */
function addressCount(count: bigint): string {
  if (count < 1n << 40n) return String(count);
  const log = count.toString(2).length - 1;
  return count === 1n << BigInt(log) ? `2^${log}` : `more than 2^${log}`;
}

export interface AllowListProblem {
  /** Index of the entry at fault; undefined when the list as a whole is. */
  index?: number;
  message: string;
}

/**
 * The rule for every list of source networks a relay answers (MetricsPort's
 * allowFrom, and any later allow-list): judged by the union of its entries,
 * overlaps counted once, IPv4 reached through IPv6 translations included.
 *   1. The union is at most ALLOW_LIST_LIMIT wide per family.
 *   2. A network (more than one address) that reaches public space needs
 *      `allowPublicRanges`: one public address is a server, a public range
 *      is other people unless the operator says it is theirs.
 */
export function allowListProblems(entries: { text: string; prefix: ParsedPrefix }[], options: { allowPublicRanges: boolean; flag: string }): AllowListProblem[] {
  const problems: AllowListProblem[] = [];
  if (!options.allowPublicRanges) {
    entries.forEach(({ text, prefix }, index) => {
      if (prefix.prefixLength === familyBits(prefix.family)) return;
      if (publicPart(prefix) > 0n) {
        problems.push({
          index,
          message: `"${text}" is a range of public addresses: everyone in it could read the port. Name your server's own address (one address is not a range), or, if the whole range is your own network, set ${options.flag}: true`,
        });
      }
    });
  }
  for (const family of [4, 6] as const) {
    const own = entries.filter((entry) => entry.prefix.family === family).map((entry) => entry.prefix);
    const translated = family === 4 ? entries.flatMap((entry) => embeddedIPv4Networks(entry.prefix)) : [];
    const union = unionSize([...own, ...translated]);
    const limit = ALLOW_LIST_LIMIT[family];
    if (union > 1n << BigInt(familyBits(family) - limit)) {
      const via = translated.length > 0 ? " (counting the IPv4 space its IPv6 translation prefixes stand for)" : "";
      problems.push({
        message: `together cover ${addressCount(union)} IPv${family} addresses${via}, more than a /${limit} holds (${addressCount(1n << BigInt(familyBits(family) - limit))}): wider than any operator's own networks. List only the networks your server scrapes from`,
      });
    }
  }
  return problems;
}

/**
 * A relay's own address that no host may hold on its subnet. IPv4: the
 * network and broadcast addresses of a /30 or wider (a /31 has neither,
 * RFC 3021; a /32 is the one address). IPv6: the Subnet-Router anycast
 * address (host part all zero, RFC 4291 §2.6.1), which every router on the
 * link answers, on a /126 or wider (a /127 point-to-point link uses both
 * addresses, RFC 6164).
 */
export function subnetAddressProblem(prefix: ParsedPrefix): string | undefined {
  const bits = familyBits(prefix.family);
  const { first, last } = prefixBounds(prefix);
  const shown = `${canonicalAddress(prefix)}/${prefix.prefixLength}`;
  if (prefix.family === 4 && prefix.prefixLength <= 30) {
    if (prefix.value === first) return `${shown} is the network address of ${formatPrefix(prefix)}, not a host's: give the relay an address between its network and broadcast addresses`;
    if (prefix.value === last) return `${shown} is the broadcast address of ${formatPrefix(prefix)}, not a host's: give the relay an address between its network and broadcast addresses`;
  }
  if (prefix.family === 6 && prefix.prefixLength <= bits - 2 && prefix.value === first) {
    return `${shown} is the Subnet-Router anycast address of ${formatPrefix(prefix)} (host part all zero, RFC 4291 §2.6.1), which the link's routers answer: give the relay another address`;
  }
  return undefined;
}

/**
 * Why a relay's gateway cannot route its traffic, or undefined. Off the
 * relay's subnet (onLink) it must be one router's unicast address: not
 * unspecified, loopback, multicast, reserved or broadcast, nor an
 * IPv4-mapped spelling. On the relay's own subnet, an IPv4 gateway must not
 * be the network or broadcast address (a /31 or /32 has none). An IPv6 gateway at the subnet's all-zero host
 * address is allowed: that is the Subnet-Router anycast address, which
 * every router on the link must answer (RFC 4291 §2.6.1), so it does reach
 * a router, and some providers hand it out.
 */
export function gatewayProblem(gateway: ParsedAddress, subnet: ParsedPrefix): string | undefined {
  const shown = canonicalAddress(gateway);
  const special = specialRange(gateway);
  const refused: RangeKind[] = ["unspecified", "loopback", "multicast", "reserved", "broadcast", "ipv4-mapped", "ipv4-compatible", "discard"];
  // On the relay's own subnet the gateway shares the relay's range, whatever that is (where the relay may
  // stand is judged on its own address); off it (onLink), it must be a router's unicast address.
  const onSubnet = gateway.family === subnet.family && holds({ ...subnet, value: prefixBounds(subnet).first }, gateway);
  if (!onSubnet && special && refused.includes(special.kind)) return `${shown} is ${special.description}, not a router's address on the relay's link`;
  if (gateway.family === 4 && subnet.family === 4 && subnet.prefixLength <= 30) {
    const { first, last } = prefixBounds(subnet);
    if (gateway.value === first) return `${shown} is the network address of the relay's subnet ${formatPrefix(subnet)}, not a router's: name the router's own address`;
    if (gateway.value === last) return `${shown} is the broadcast address of the relay's subnet ${formatPrefix(subnet)}, not a router's: name the router's own address`;
  }
  return undefined;
}
