/**
 * IP addresses, prefixes and MAC addresses as values, not strings: two
 * spellings of one address are one address, and a gateway is on a subnet or
 * it is not. Pure functions; no zone ids (a relay's addresses are global).
 */

export interface ParsedAddress {
  family: 4 | 6;
  /** The address as an unsigned integer (32 or 128 bits). */
  value: bigint;
}

const IPV4_OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

function parseIPv4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((part) => IPV4_OCTET.test(part))) return undefined;
  return parts.reduce((value, part) => (value << 8n) | BigInt(part), 0n);
}

function parseIPv6(text: string): bigint | undefined {
  // Zone ids (fe80::1%eth0) name an interface of one host: never valid here.
  if (!/^[0-9A-Fa-f:.]+$/.test(text)) return undefined;
  let hex = text;
  // An embedded IPv4 address (::ffff:192.0.2.1) stands for the last two groups.
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    const v4 = parseIPv4(text.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    hex = `${text.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const halves = hex.split("::");
  if (halves.length > 2) return undefined;
  const groups = (half: string) => (half === "" ? [] : half.split(":"));
  const left = groups(halves[0]!);
  const right = halves.length === 2 ? groups(halves[1]!) : [];
  if (![...left, ...right].every((group) => /^[0-9A-Fa-f]{1,4}$/.test(group))) return undefined;
  const explicit = left.length + right.length;
  if (halves.length === 1 ? explicit !== 8 : explicit > 7) return undefined;
  const all = [...left, ...Array<string>(8 - explicit).fill("0"), ...right];
  return all.reduce((value, group) => (value << 16n) | BigInt(`0x${group}`), 0n);
}

/** Parses an IPv4 or IPv6 address (no prefix, no zone id); undefined when it is not one. */
export function parseAddress(text: string): ParsedAddress | undefined {
  const v4 = parseIPv4(text);
  if (v4 !== undefined) return { family: 4, value: v4 };
  const v6 = text.includes(":") ? parseIPv6(text) : undefined;
  return v6 === undefined ? undefined : { family: 6, value: v6 };
}

/** One spelling per address: dotted quad, or RFC 5952 IPv6 (lower case, longest zero run as ::). */
export function canonicalAddress(address: ParsedAddress): string {
  if (address.family === 4) return [24n, 16n, 8n, 0n].map((shift) => String((address.value >> shift) & 0xffn)).join(".");
  const groups = Array.from({ length: 8 }, (_, i) => Number((address.value >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = { start: -1, length: 0 };
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.length && j - i > 1) best = { start: i, length: j - i };
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.start < 0) return hex.join(":");
  return `${hex.slice(0, best.start).join(":")}::${hex.slice(best.start + best.length).join(":")}`;
}

export interface ParsedPrefix extends ParsedAddress {
  prefixLength: number;
}

/** "198.51.100.10/24" or "2001:db8::10/64"; undefined when malformed. */
export function parsePrefix(text: string): ParsedPrefix | undefined {
  const match = /^([^/]+)\/(\d{1,3})$/.exec(text);
  if (!match) return undefined;
  const address = parseAddress(match[1]!);
  const prefixLength = Number(match[2]);
  if (!address || prefixLength > (address.family === 4 ? 32 : 128)) return undefined;
  return { ...address, prefixLength };
}

/** Whether `address` lies in the subnet of `prefix`. */
export function inSubnet(address: ParsedAddress, prefix: ParsedPrefix): boolean {
  if (address.family !== prefix.family) return false;
  const bits = BigInt(address.family === 4 ? 32 : 128);
  const hostBits = bits - BigInt(prefix.prefixLength);
  return address.value >> hostBits === prefix.value >> hostBits;
}

/** fe80::/10: on-link by definition, the usual IPv6 default gateway. */
export function isIPv6LinkLocal(address: ParsedAddress): boolean {
  return address.family === 6 && address.value >> 118n === 0x3fan;
}

/** The address part of "address/prefix", as written. */
export const addressOf = (prefix: string): string => prefix.split("/")[0]!;

const MAC = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/;

/** A MAC a NIC may carry: well-formed, unicast (I/G bit clear) and not all zeros. */
export function macProblem(mac: string): string | undefined {
  if (!MAC.test(mac)) return 'must be a MAC address like "BC:24:11:00:00:01"';
  const first = parseInt(mac.slice(0, 2), 16);
  if (first & 1) return `must be a unicast MAC address: "${mac}" has the multicast bit set (first octet ${mac.slice(0, 2)} is odd)`;
  if (/^(00:){5}00$/.test(mac)) return "must not be all zeros";
  return undefined;
}

/** Address width of a family, in bits. */
export const familyBits = (family: 4 | 6): number => (family === 4 ? 32 : 128);

/** The first and last address of a prefix (host bits of its value ignored). */
export function prefixBounds(prefix: ParsedPrefix): { first: bigint; last: bigint } {
  const hostBits = BigInt(familyBits(prefix.family) - prefix.prefixLength);
  const first = (prefix.value >> hostBits) << hostBits;
  return { first, last: first + (1n << hostBits) - 1n };
}

/** "198.51.100.0/24", "2001:db8::/32": the network with its host bits cleared. */
export function formatPrefix(prefix: ParsedPrefix): string {
  return `${canonicalAddress({ family: prefix.family, value: prefixBounds(prefix).first })}/${prefix.prefixLength}`;
}

/** How many addresses the prefixes cover together, each address counted once however many prefixes hold it. */
export function unionSize(prefixes: ParsedPrefix[]): bigint {
  const ranges = prefixes.map(prefixBounds).sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0));
  let total = 0n;
  let end = -1n;
  for (const { first, last } of ranges) {
    if (last <= end) continue;
    total += last - (first > end ? first : end + 1n) + 1n;
    end = last;
  }
  return total;
}
