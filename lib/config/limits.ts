/**
 * The defaults and bounds of a relay's \`limits\` (config), which the exit
 * hardening renders into its ruleset (lib/render/hardening.ts, where the
 * sources of these numbers are named: toralf/torutils, tor's relay
 * requirements, Debian's tor unit). Pure.
 */

/** The limit on one port, per source address (an IPv4 address or an IPv6 prefix). */
export interface PerSourceLimit {
  /** Concurrent connections from one source; the next one is dropped. */
  connections: number;
  /** New connections a minute from one source, with a burst of as many. */
  newPerMinute: number;
}

/** torutils' values for the ORPort (ipv4-rules.sh: connlimit above 8, hashlimit above 8/minute burst 8). */
export const DEFAULT_ORPORT_LIMIT: PerSourceLimit = { connections: 8, newPerMinute: 8 };
/**
 * The exit notice is read by people who got an abuse report: a browser opens
 * up to 6 connections to one host at once, and reloads. No source for this
 * one in torutils (it limits the ORPort only): it is ours.
 */
export const DEFAULT_NOTICE_LIMIT: PerSourceLimit = { connections: 8, newPerMinute: 60 };
/** tor allows up to 4 relays per IPv4 address (forum.torproject.net t/6431): a source may be 4 relays. */
export const MIN_CONNECTIONS_PER_SOURCE = 4;
/** torutils' IPv6 source: a /64 (TORUTILS_NETMASK_V6 default), what one customer usually gets. */
export const DEFAULT_IPV6_SOURCE_PREFIX = 64;
/** Debian's tor@default.service LimitNOFILE. */
export const DEFAULT_OPEN_FILES = 65_536;
/** fs.nr_open's default: the kernel refuses a higher RLIMIT_NOFILE. */
export const MAX_OPEN_FILES = 1_048_576;
/** The port the exit notice is served on: the one a person types no port for. */
export const EXIT_NOTICE_PORT = 80;
/** A conntrack entry's size in the kernel's slab, rounded up (torutils: 75 MiB for 256 Ki entries). */
export const CONNTRACK_ENTRY_BYTES = 320;
/** The conntrack table may take at most this share of a relay's RAM: its root filesystem lives there too. */
export const CONNTRACK_MAX_RAM_SHARE = 0.25;

/** torutils' sizing by RAM (ipv4-rules.sh: "hashes and ipsets are sized with respect to RAM in GiB"). */
export function defaultConntrackMax(memoryMiB: number): number {
  const gib = Math.floor(memoryMiB / 1024);
  if (gib > 4) return 2 ** 20;
  if (gib > 1) return 2 ** 19;
  return 2 ** 18;
}
