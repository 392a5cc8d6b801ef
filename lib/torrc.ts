/**
 * torrc as a pure function of one relay's validated config and what the fleet
 * knows about its family.
 */
import type { RelayConfig } from "./config";

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
}

const addressOf = (cidr: string) => cidr.split("/")[0]!;

export function renderTorrc(relay: RelayConfig, context: TorrcContext): string {
  const lines: string[] = [
    `# ${relay.name}: rendered by diskless-relays from the stack config. The image is immutable; change the config instead.`,
    `Nickname ${relay.nickname}`,
    `ContactInfo ${relay.contactInfo}`,
    `Address ${addressOf(relay.ipv4.address)}`,
  ];
  if (relay.ipv6) lines.push(`Address ${addressOf(relay.ipv6.address)}`);
  lines.push(`ORPort ${addressOf(relay.ipv4.address)}:${relay.orPort}`);
  if (relay.ipv6) lines.push(`ORPort [${addressOf(relay.ipv6.address)}]:${relay.orPort}`);
  if (relay.dirPort !== undefined) lines.push(`DirPort ${addressOf(relay.ipv4.address)}:${relay.dirPort}`);
  lines.push(
    `DataDirectory ${context.dataDirectory}`,
    // The master secret key never leaves the key-generation host; tor runs on the signing key alone.
    "OfflineMasterKey 1",
    "SocksPort 0",
    "Log notice stdout",
    "NoExec 1",
  );
  if (context.user) lines.push(`User ${context.user}`);
  if (context.sandbox) lines.push("Sandbox 1");

  if (relay.exit.enabled) {
    lines.push("ExitRelay 1");
    for (const rule of relay.exit.policy ?? REDUCED_EXIT_POLICY) lines.push(`ExitPolicy ${rule}`);
    lines.push(`IPv6Exit ${relay.exit.ipv6Exit && relay.ipv6 ? 1 : 0}`);
  } else {
    lines.push("ExitRelay 0");
  }

  if (relay.bandwidth) lines.push(`RelayBandwidthRate ${relay.bandwidth.rate}`, `RelayBandwidthBurst ${relay.bandwidth.burst}`);
  if (relay.metricsPort !== undefined) {
    lines.push(`MetricsPort 127.0.0.1:${relay.metricsPort}`, "MetricsPortPolicy accept 127.0.0.1");
  }

  const family = [...new Set(context.familyFingerprints.map((fp) => fp.toUpperCase()))].sort();
  if (family.length > 0) lines.push(`MyFamily ${family.map((fp) => `$${fp}`).join(",")}`);
  for (const id of [...context.familyIds].sort()) lines.push(`FamilyId ${id}`);

  return lines.join("\n") + "\n";
}
