/**
 * tor's own rules for the values the stack config puts into a torrc, where
 * they are cheap to know. Each function returns the problem in words, or
 * undefined. `tor --verify-config` (lib/render/torrc-check.ts) stays the final
 * judge; these rules catch what tor would accept but read differently from
 * what the operator wrote (a `#` ends a line, a trailing `\` joins the next).
 * Pure.
 */
import { canonicalAddress, parseAddress } from "./addresses";

/**
 * A free-text value on one torrc line. tor's config reader ends the value at
 * `#` (a comment), joins the next line after a trailing backslash, and takes
 * a newline as the start of a new option: each would change the config.
 */
export function freeTextProblem(value: string): string | undefined {
  // C0 and C1 controls, and Unicode's line and paragraph separators, which other readers of the torrc take as line breaks.
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(value)) return "must be one line of text: no newlines, tabs or other control characters (each would start or change a torrc line)";
  if (value.includes("\\")) return "must not contain a backslash: tor reads a trailing \\ as joining the next torrc line";
  if (value.includes("#")) return "must not contain #: tor reads the rest of the line as a comment and silently drops it";
  if (value !== value.trim()) return "must not start or end with spaces (tor strips them)";
  return undefined;
}

/** tor's memory_units table (src/lib/confmgt/unitparse.c): bytes per unit, matched case-insensitively. */
const TOR_BYTE_UNITS: Record<string, number> = {
  "": 1, b: 1, byte: 1, bytes: 1,
  kb: 2 ** 10, kbyte: 2 ** 10, kbytes: 2 ** 10, kilobyte: 2 ** 10, kilobytes: 2 ** 10,
  kilobits: 2 ** 7, kilobit: 2 ** 7, kbits: 2 ** 7, kbit: 2 ** 7,
  m: 2 ** 20, mb: 2 ** 20, mbyte: 2 ** 20, mbytes: 2 ** 20, megabyte: 2 ** 20, megabytes: 2 ** 20,
  megabits: 2 ** 17, megabit: 2 ** 17, mbits: 2 ** 17, mbit: 2 ** 17,
  gb: 2 ** 30, gbyte: 2 ** 30, gbytes: 2 ** 30, gigabyte: 2 ** 30, gigabytes: 2 ** 30,
  gigabits: 2 ** 27, gigabit: 2 ** 27, gbits: 2 ** 27, gbit: 2 ** 27,
  tb: 2 ** 40, tbyte: 2 ** 40, tbytes: 2 ** 40, terabyte: 2 ** 40, terabytes: 2 ** 40,
  terabits: 2 ** 37, terabit: 2 ** 37, tbits: 2 ** 37, tbit: 2 ** 37,
};

/** tor stores bandwidths as a signed 32-bit byte count (ensure_bandwidth_cap). */
const TOR_MAX_BANDWIDTH = 2 ** 31 - 1;

/** A tor bandwidth such as "100 MBytes" or "800 Mbits", in bytes per second; undefined if tor would not read it. */
export function parseTorBandwidth(value: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?) *([A-Za-z]*)$/.exec(value);
  if (!match) return undefined;
  const unit = TOR_BYTE_UNITS[match[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  return Math.floor(Number(match[1]) * unit);
}

export function bandwidthProblem(value: string): string | undefined {
  const bytes = parseTorBandwidth(value);
  if (bytes === undefined) return `must be a tor bandwidth like "100 MBytes" or "800 Mbits" (units as tor reads them: bytes, KBytes, MBytes, GBytes, TBytes, Kbits, Mbits, Gbits, Tbits); got "${value}"`;
  if (bytes > TOR_MAX_BANDWIDTH) return `is ${bytes} bytes/s; tor caps bandwidths at ${TOR_MAX_BANDWIDTH} bytes/s (about 2 GBytes)`;
  return undefined;
}

export interface PolicyRule {
  action: "accept" | "reject";
  /** accept6/reject6 apply to IPv6 only. */
  ipv6Only: boolean;
  address: string;
  ports: { from: number; to: number };
}

/**
 * One ExitPolicy entry, by the grammar of tor's manual (ExitPolicy):
 * `accept[6]|reject[6] ADDR[/MASK]:PORT[-PORT]`, where ADDR is `*`, `*4`,
 * `*6`, `private`, an IPv4 address or a bracketed IPv6 address, and PORT is
 * `*` or 1–65535. Stricter than tor in one way: the port is required, and one
 * entry per line (no commas), so the rendered line is exactly the config's.
 */
export function parsePolicyRule(rule: string): { rule: PolicyRule } | { problem: string } {
  if (rule.includes(",")) return { problem: "holds more than one entry: give each entry as its own list item" };
  const match = /^(accept|reject)(6?) (\S+)$/.exec(rule);
  if (!match) return { problem: 'must be one ExitPolicy entry like "accept *:443", "reject *:*" or "accept6 [2001:db8::]/32:80"' };
  const [, action, six, addressPort] = match as unknown as [string, "accept" | "reject", string, string];
  const colon = addressPort.lastIndexOf(":");
  if (colon < 0 || (addressPort.startsWith("[") && colon < addressPort.indexOf("]"))) return { problem: `"${addressPort}" has no port: write ADDRESS:PORT, e.g. *:443 or *:*` };
  const addressPart = addressPort.slice(0, colon);
  const portPart = addressPort.slice(colon + 1);

  const ports = parsePortRange(portPart);
  if (typeof ports === "string") return { problem: ports };

  const [host, mask, ...extra] = addressPart.split("/");
  if (extra.length > 0) return { problem: `"${addressPart}" is not an address with an optional /MASK` };
  let family: 4 | 6 | "any";
  if (host === "*" || host === "private") family = "any";
  else if (host === "*4") family = 4;
  else if (host === "*6") family = 6;
  else if (host!.startsWith("[") && host!.endsWith("]")) {
    const parsed = parseAddress(host!.slice(1, -1));
    if (!parsed || parsed.family !== 6) return { problem: `"${host}" is not a bracketed IPv6 address` };
    family = 6;
  } else {
    const parsed = parseAddress(host!);
    if (!parsed || parsed.family !== 4) {
      return { problem: `"${host}" is not an address tor reads here: use *, *4, *6, private, an IPv4 address or a [bracketed] IPv6 address` };
    }
    family = 4;
  }
  if (mask !== undefined) {
    const max = family === 6 ? 128 : 32;
    if (family === "any" || !/^\d{1,3}$/.test(mask) || Number(mask) > max) return { problem: `"/${mask}" is not a prefix length for ${host} (0–${max} bits)` };
  }
  if (six && family === 4) return { problem: `${action}6 applies to IPv6 only; "${host}" is IPv4 (use ${action})` };
  return { rule: { action, ipv6Only: six === "6", address: mask === undefined ? host! : `${host}/${mask}`, ports } };
}

function parsePortRange(text: string): { from: number; to: number } | string {
  if (text === "*") return { from: 1, to: 65535 };
  const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  const from = Number(match?.[1]);
  const to = match?.[2] === undefined ? from : Number(match[2]);
  if (!match || from < 1 || to > 65535 || from > 65535) return `port "${text}" must be *, a port 1–65535 or a range like 6660-6669`;
  if (from > to) return `port range "${text}" runs backwards`;
  return { from, to };
}

/** tor's MetricsPort when the config names none: the port of the manual's own example (MetricsPort 1.2.3.4:9035). */
export const DEFAULT_METRICS_PORT = 9035;

export interface MetricsSource {
  family: 4 | 6;
  /** The entry as MetricsPortPolicy reads it: an address, or a network with its mask; IPv6 in brackets. */
  policy: string;
}

/**
 * One MetricsPortPolicy source, written as an address or ADDRESS/LENGTH.
 * tor reads MetricsPortPolicy as an exit-policy entry (its manual), but
 * `tor --verify-config` does not parse it: a malformed entry passes the
 * check, and tor then dies at start ("Error parsing already-validated
 * policy options"). So this is the only check before a relay boots, and it
 * is strict: no host bits beyond the mask (tor would silently widen the
 * network to NET/LENGTH), no /0 (that is everyone), no zone ids.
 */
export function parseMetricsSource(value: string): { source: MetricsSource } | { problem: string } {
  const example = 'like "203.0.113.5", "203.0.113.0/24" or "2001:db8::5/128"';
  const match = /^([^/]+?)(?:\/(\d{1,3}))?$/.exec(value);
  const address = match ? parseAddress(match[1]!) : undefined;
  if (!match || !address) {
    const hint = value.includes("%") ? "; zone ids (%eth0) name an interface of one host" : value.startsWith("[") ? "; write IPv6 without brackets" : "";
    return { problem: `must be the scraper's address or network, ${example}; got "${value}"${hint}` };
  }
  const bits = address.family === 4 ? 32 : 128;
  const length = match[2] === undefined ? bits : Number(match[2]);
  if (length > bits) return { problem: `"/${match[2]}" is not a prefix length for an IPv${address.family} address (1–${bits}); got "${value}"` };
  if (length === 0) return { problem: `"${value}" is every address: the MetricsPort tells anyone who reads it about the relay's users' traffic, so name your Prometheus server's address or network` };
  const hostBits = BigInt(bits - length);
  const network = (address.value >> hostBits) << hostBits;
  if (network !== address.value) {
    const shown = canonicalAddress({ family: address.family, value: network });
    return { problem: `"${value}" has bits set beyond its /${length} mask; tor would read it as ${shown}/${length}: write that, or the scraper's own address` };
  }
  const text = address.family === 6 ? `[${canonicalAddress(address)}]` : canonicalAddress(address);
  // One host is written as the manual's example writes it: "MetricsPortPolicy accept 5.6.7.8".
  return { source: { family: address.family, policy: length === bits ? text : `${text}/${length}` } };
}
