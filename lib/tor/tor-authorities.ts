/**
 * The public Tor network's directory authorities, by address: the relays
 * every exit must always let in, whatever its per-source limits say. An
 * authority that is rate-limited cannot test the relay's reachability, and
 * the relay drops out of the consensus (torutils exempts them for the same
 * reason, fetching the list at run time; an immutable image carries it).
 *
 * Source: tor's built-in list (src/app/config/auth_dirs.inc), as compiled
 * into Debian's tor 0.4.9.11: the nine v3 authorities, without the bridge
 * authority, which never connects to a public relay. test/unit/tor-authorities
 * reads the same list out of this machine's tor binary and compares.
 * Pure.
 */

export interface DirectoryAuthority {
  nickname: string;
  ipv4: string;
  ipv6?: string;
}

export const PUBLIC_AUTHORITIES: readonly DirectoryAuthority[] = [
  { nickname: "moria1", ipv4: "128.31.0.39" },
  { nickname: "tor26", ipv4: "217.196.147.77", ipv6: "2a02:16a8:662:2203::1" },
  { nickname: "dizum", ipv4: "45.66.35.11" },
  { nickname: "gabelmoo", ipv4: "131.188.40.189", ipv6: "2001:638:a000:4140::ffff:189" },
  { nickname: "dannenberg", ipv4: "193.23.244.244", ipv6: "2001:678:558:1000::244" },
  { nickname: "maatuska", ipv4: "171.25.193.9", ipv6: "2001:67c:289c::9" },
  { nickname: "longclaw", ipv4: "199.58.81.140" },
  { nickname: "bastet", ipv4: "204.13.164.118", ipv6: "2620:13:4000:6000::1000:118" },
  { nickname: "faravahar", ipv4: "216.218.219.41" },
];

/** Every address of these authorities, IPv4 and IPv6, each once. */
export function authorityAddresses(authorities: readonly { ipv4?: string; ipv6?: string; address?: string }[]): string[] {
  const addresses = authorities.flatMap((authority) => [authority.ipv4, authority.address, authority.ipv6].filter((address): address is string => Boolean(address)));
  return [...new Set(addresses)];
}
