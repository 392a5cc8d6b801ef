/**
 * The exit's own resolver: unbound on 127.0.0.1, caching and validating
 * (DNSSEC, with Debian's root trust anchor), with QNAME minimisation, as the
 * Tor Project and ansible-relayor recommend for exits. The stack config names
 * only its upstreams: none means unbound resolves from the root itself. On
 * the local testnet, the testnet's zone is resolved through the testnet's
 * DNS and marked insecure (it has no signatures to validate). Pure.
 */
import { canonicalAddress, parseAddress } from "../tor/addresses";
import { embeddedIPv4 } from "../tor/address-rules";

/**
 * An upstream as unbound should dial it: an IPv4-mapped address
 * (::ffff:a.b.c.d) as the IPv4 address it spells, so that unbound reaches
 * it over IPv4 as the operator means (the config judges it as that address
 * too); every other address in its canonical spelling.
 */
function upstreamAddress(text: string): string {
  const parsed = parseAddress(text);
  if (!parsed) return text;
  const mapped = embeddedIPv4(parsed).find((e) => e.how === "IPv4-mapped");
  return canonicalAddress(mapped ? mapped.ipv4 : parsed);
}

export interface ResolverConfig {
  /** Forwarders; empty: full recursion from the root. */
  upstreams: string[];
  /** The image's DNS root trust anchor file (TOR_RUNTIME, per flavour). */
  rootTrustAnchor: string;
  /** The local testnet's zone and its DNS, when the relay is on it. */
  testnet?: { zone: string; dns: string };
}

export function renderUnboundConf(config: ResolverConfig): string {
  const lines = [
    "# The exit's resolver: rendered by diskless-relays from the stack config.",
    "server:",
    "  interface: 127.0.0.1",
    "  interface: ::1",
    "  access-control: 127.0.0.0/8 allow",
    "  access-control: ::1/128 allow",
    "  do-daemonize: no",
    '  username: "unbound"',
    '  chroot: ""',
    '  directory: "/etc/unbound"',
    '  pidfile: ""',
    "  use-syslog: no",
    "  verbosity: 1",
    // Validator and iterator only: the EDNS client-subnet cache has nothing to do for a resolver whose only client is tor.
    '  module-config: "validator iterator"',
    // Read-only and shipped in the image: no auto-update file to write in a RAM root.
    `  trust-anchor-file: "${config.rootTrustAnchor}"`,
    "  qname-minimisation: yes",
    "  hide-identity: yes",
    "  hide-version: yes",
    "  harden-glue: yes",
    "  harden-dnssec-stripped: yes",
    "  prefetch: yes",
  ];
  if (config.testnet) {
    lines.push(`  domain-insecure: "${config.testnet.zone}"`, "forward-zone:", `  name: "${config.testnet.zone}"`, `  forward-addr: ${config.testnet.dns}`);
  }
  if (config.upstreams.length > 0) {
    lines.push("forward-zone:", '  name: "."', ...config.upstreams.map((address) => `  forward-addr: ${upstreamAddress(address)}`));
  }
  return lines.join("\n") + "\n";
}
