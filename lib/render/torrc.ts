/**
 * torrc as a pure function of one relay's validated config and what the fleet
 * knows about its family.
 */
import { addressOf } from "../tor/addresses";
import type { RelayConfig } from "../config/config";
import { relayTestnetLines, type TestnetNetwork } from "../config/testnet";
import { parseMetricsSource } from "../tor/tor-values";

/**
 * The Tor Project's reduced exit policy (community-team/relay wiki): the ports
 * of common interactive services, without the ones that draw most abuse
 * complaints (SMTP, file sharing).
 */
export const REDUCED_EXIT_POLICY: readonly string[] = [
  ...[
    "20-21", "22", "23", "43", "53", "79", "80-81", "88", "110", "143", "194", "220", "389", "443", "464", "465",
    "531", "543-544", "554", "563", "587", "636", "706", "749", "853", "873", "902-904", "981", "989-990", "991",
    "992", "993", "994", "995", "1194", "1220", "1293", "1500", "1533", "1677", "1723", "1755", "1863", "2082",
    "2083", "2086-2087", "2095-2096", "2102-2104", "3128", "3389", "3690", "4321", "4643", "5050", "5190",
    "5222-5223", "5228", "5900", "6660-6669", "6679", "6697", "8000", "8008", "8074", "8080", "8082", "8087-8088",
    "8232-8233", "8332-8333", "8443", "8888", "9418", "9999", "10000", "11371", "19294", "19638", "50002", "64738",
  ].map((ports) => `accept *:${ports}`),
  "reject *:*",
];

export interface TorrcContext {
  /** Where tor keeps keys and state inside the image. */
  dataDirectory: string;
  /** The unprivileged user tor drops to after binding its ports (root starts it so it can bind 443). */
  user?: string;
  /** RSA fingerprints of the other relays of this relay's family, for MyFamily. */
  familyFingerprints: string[];
  /** FamilyId lines for happy families (tor ≥ 0.4.9), when a family key ships. */
  familyIds: string[];
  /** Sandbox 1 is only enabled where it has been proven (glibc builds). */
  sandbox: boolean;
  /** The local stack's private Tor network, whose authorities the relay joins. Never on Proxmox VE (the config refuses it). */
  testnet?: Pick<TestnetNetwork, "authorities">;
}

/** One torrc line and the relay config field it comes from (none for the lines the program fixes). */
export interface TorrcLine {
  text: string;
  /** Path below relays[i], e.g. "contactInfo" or "exit.policy[2]". */
  field?: string;
}

/** The torrc as lines that know their config field, so that tor's refusals can be traced back. */
export function renderTorrcLines(relay: RelayConfig, context: TorrcContext): TorrcLine[] {
  const lines: TorrcLine[] = [
    { text: `# ${relay.name}: rendered by diskless-relays from the stack config. The image is immutable; change the config instead.` },
    { text: `Nickname ${relay.nickname}`, field: "nickname" },
    { text: `ContactInfo ${relay.contactInfo}`, field: "contactInfo" },
    { text: `Address ${addressOf(relay.ipv4.address)}`, field: "ipv4.address" },
  ];
  const add = (text: string, field?: string) => lines.push(field ? { text, field } : { text });
  if (relay.ipv6) add(`Address ${addressOf(relay.ipv6.address)}`, "ipv6.address");
  add(`ORPort ${addressOf(relay.ipv4.address)}:${relay.orPort}`, "orPort");
  if (relay.ipv6) add(`ORPort [${addressOf(relay.ipv6.address)}]:${relay.orPort}`, "orPort");
  if (relay.dirPort !== undefined) add(`DirPort ${addressOf(relay.ipv4.address)}:${relay.dirPort}`, "dirPort");
  add(`DataDirectory ${context.dataDirectory}`);
  // The master secret key never leaves the key-generation host; tor runs on the signing key alone.
  add("OfflineMasterKey 1");
  add("SocksPort 0");
  add("Log notice stdout");
  add("NoExec 1");
  if (context.user) add(`User ${context.user}`);
  if (context.sandbox) add("Sandbox 1");

  if (relay.exit.enabled) {
    add("ExitRelay 1", "exit.enabled");
    if (relay.exit.policy) relay.exit.policy.forEach((rule, i) => add(`ExitPolicy ${rule}`, `exit.policy[${i}]`));
    else for (const rule of REDUCED_EXIT_POLICY) add(`ExitPolicy ${rule}`, "exit.policy");
    add(`IPv6Exit ${relay.exit.ipv6Exit && relay.ipv6 ? 1 : 0}`, "exit.ipv6Exit");
  } else {
    // An explicit reject-all as well: a non-exit must stay one even if ExitRelay's default changes.
    add("ExitRelay 0", "exit.enabled");
    add("ExitPolicy reject *:*", "exit.enabled");
  }

  if (relay.bandwidth) {
    add(`RelayBandwidthRate ${relay.bandwidth.rate}`, "bandwidth.rate");
    add(`RelayBandwidthBurst ${relay.bandwidth.burst}`, "bandwidth.burst");
  }
  if (relay.metrics) {
    // The config checked every source; tor's --verify-config does not read MetricsPortPolicy at all.
    const sources = relay.metrics.allowFrom.map((value) => {
      const parsed = parseMetricsSource(value);
      if ("problem" in parsed) throw new Error(`relay ${relay.name}: metrics.allowFrom: ${parsed.problem}`);
      return parsed.source;
    });
    // Listen only on the families the scraper comes from, on the relay's own address (never a wildcard).
    if (sources.some((source) => source.family === 4)) add(`MetricsPort ${addressOf(relay.ipv4.address)}:${relay.metrics.port}`, "metrics.port");
    if (relay.ipv6 && sources.some((source) => source.family === 6)) add(`MetricsPort [${addressOf(relay.ipv6.address)}]:${relay.metrics.port}`, "metrics.port");
    sources.forEach((source, i) => add(`MetricsPortPolicy accept ${source.policy}`, `metrics.allowFrom[${i}]`));
    // tor's default is already reject-all; said explicitly so that no later default can widen it.
    add("MetricsPortPolicy reject *:*", "metrics.allowFrom");
  }

  const family = [...new Set(context.familyFingerprints.map((fp) => fp.toUpperCase()))].sort();
  if (family.length > 0) add(`MyFamily ${family.map((fp) => `$${fp}`).join(",")}`, "family");
  for (const id of [...context.familyIds].sort()) add(`FamilyId ${id}`, "family");
  if (context.testnet) for (const line of relayTestnetLines(context.testnet, relay.exit.enabled)) add(line, "testnet");
  return lines;
}

export function renderTorrc(relay: RelayConfig, context: TorrcContext): string {
  return renderTorrcLines(relay, context).map((line) => line.text).join("\n") + "\n";
}
