/**
 * The private Tor network on this machine: what it is made of and the torrc
 * of each of its parts, as data. Everything lives in one network namespace
 * the testnet creates itself: a bridge (the local stand-in for Proxmox's
 * vmbr0) with the testnet host's addresses, three directory authorities and
 * a client run by the host's tor, a web server and an authoritative DNS
 * zone. Relays join the bridge through tap devices. Nothing here ever
 * addresses anything outside the namespace. Pure: no I/O.
 */
import { z } from "zod";

/** Where a testnet is and how it is laid out; defaults for `npm run testnet`. */
export const TESTNET = {
  netns: "diskless-relays",
  bridge: "br0",
  hostIPv4: "10.77.0.1",
  ipv4Prefix: 24,
  hostIPv6: "fd77:77::1",
  ipv6Prefix: 64,
  zone: "testnet",
  /** The names the testnet's DNS answers, all with the testnet host's addresses. */
  names: ["web.testnet"],
  httpPort: 80,
  /** A port the web server also serves, outside every relay's exit policy (it is SMTP's). */
  refusedPort: 25,
  authorityOrPorts: [5001, 5002, 5003],
  authorityDirPorts: [7001, 7002, 7003],
  /**
   * Voting: the first consensus within seconds, then one every 20 s, so a
   * relay that boots is in the consensus about a minute later. Tests that
   * need "before any new consensus" pause the authorities instead of
   * relying on a long interval (see test/vm/local-e2e.test.ts).
   */
  initialVotingInterval: 5,
  votingInterval: 20,
  voteDelay: 4,
  distDelay: 4,
} as const;

const name = z.string().regex(/^[A-Za-z0-9]{1,19}$/);
const hex40 = z.string().regex(/^[0-9A-F]{40}$/);

const authoritySchema = z
  .object({ nickname: name, address: z.string(), orPort: z.number().int(), dirPort: z.number().int(), v3ident: hex40, fingerprint: hex40 })
  .strict();
export type Authority = z.infer<typeof authoritySchema>;

/**
 * The testnet's key broker (lib/testnet/testnet-broker.ts): what a broker-mode local
 * stack pins and where its build host reaches the admin API. It trusts the
 * simulated secure processor's test-only chain kept in simulatorDir.
 */
const testnetBrokerSchema = z
  .object({
    url: z.string().url(),
    signingPublicKey: z.string(),
    pushRecipient: z.string(),
    caFile: z.string(),
    adminSocket: z.string(),
    tokenFile: z.string(),
    simulatorDir: z.string(),
  })
  .strict();
export type TestnetBroker = z.infer<typeof testnetBrokerSchema>;

/** network.json in the testnet's directory: written by `npm run testnet`, read by the program and the tests. */
export const networkSchema = z
  .object({
    netns: z.string().regex(/^[a-z0-9][a-z0-9-]{0,30}$/),
    bridge: z.string().regex(/^[a-z0-9]{1,15}$/),
    hostIPv4: z.string(),
    hostIPv6: z.string(),
    zone: z.string(),
    authorities: z.array(authoritySchema).min(1),
    /** The client's control and SOCKS sockets (unix sockets: reachable from outside the namespace). */
    controlSocket: z.string(),
    socksSocket: z.string(),
    broker: testnetBrokerSchema,
  })
  .strict();
export type TestnetNetwork = z.infer<typeof networkSchema>;

/** The DirAuthority line every member of the testnet carries. */
function dirAuthorityLine(authority: Authority): string {
  return `DirAuthority ${authority.nickname} orport=${authority.orPort} no-v2 v3ident=${authority.v3ident} ${authority.address}:${authority.dirPort} ${authority.fingerprint}`;
}

/** Lines a relay's torrc gains in the testnet: the network's authorities, and exits that may reach its private addresses. */
export function relayTestnetLines(network: Pick<TestnetNetwork, "authorities">, exit: boolean): string[] {
  return [
    // Relaxes address and timing rules for a private network (tor(1), TestingTorNetwork).
    "TestingTorNetwork 1",
    ...network.authorities.map(dirAuthorityLine),
    // A network of five relays cannot build the self-test circuits a relay
    // waits for before it publishes; chutney assumes reachability too.
    "AssumeReachable 1",
    "PathsNeededToBuildCircuits 0.25",
    // The testnet's web server and DNS live on private addresses.
    ...(exit ? ["ExitPolicyRejectPrivate 0"] : []),
  ];
}

const common = (dataDirectory: string, network: Pick<TestnetNetwork, "authorities">) => [
  "TestingTorNetwork 1",
  `DataDirectory ${dataDirectory}`,
  "RunAsDaemon 1",
  `PidFile ${dataDirectory}/pid`,
  `Log notice file ${dataDirectory}/notice.log`,
  "SafeLogging 0",
  "ShutdownWaitLength 0",
  // The relays are reachable on the bridge; no self-test delay.
  "AssumeReachable 1",
  "PathsNeededToBuildCircuits 0.25",
  ...network.authorities.map(dirAuthorityLine),
];

/** A directory authority of the testnet (chutney's settings: fast voting, flags assigned). */
export function authorityTorrc(authority: Authority, dataDirectory: string, network: Pick<TestnetNetwork, "authorities">): string {
  return (
    [
      ...common(dataDirectory, network),
      `Nickname ${authority.nickname}`,
      `Address ${authority.address}`,
      `ORPort ${authority.address}:${authority.orPort}`,
      `DirPort ${authority.address}:${authority.dirPort}`,
      "SocksPort 0",
      "ContactInfo authority@testnet",
      "AuthoritativeDirectory 1",
      "V3AuthoritativeDirectory 1",
      `TestingV3AuthInitialVotingInterval ${TESTNET.initialVotingInterval}`,
      `V3AuthVotingInterval ${TESTNET.votingInterval}`,
      `TestingV3AuthInitialVoteDelay 2`,
      `TestingV3AuthInitialDistDelay 2`,
      `V3AuthVoteDelay ${TESTNET.voteDelay}`,
      `V3AuthDistDelay ${TESTNET.distDelay}`,
      "V3AuthNIntervalsValid 2",
      // A new relay is a Guard at once (as chutney does); Exit goes by each relay's own policy, without a bandwidth threshold.
      "TestingDirAuthVoteGuard *",
      "TestingMinExitFlagThreshold 0",
      "ExitRelay 0",
      "ExitPolicy reject *:*",
    ].join("\n") + "\n"
  );
}

/** The testnet's client: no listening TCP port at all, control and SOCKS on unix sockets. */
export function clientTorrc(dataDirectory: string, network: Pick<TestnetNetwork, "authorities" | "controlSocket" | "socksSocket">): string {
  return (
    [
      ...common(dataDirectory, network),
      "Nickname testclient",
      `SocksPort unix:${network.socksSocket}`,
      `ControlSocket ${network.controlSocket}`,
      "ControlSocketsGroupWritable 0",
      "CookieAuthentication 0",
      // Streams wait until the test attaches them to the circuit it built.
      "__LeaveStreamsUnattached 1",
      "__DisablePredictedCircuits 1",
      "UseEntryGuards 0",
      "ClientUseIPv6 0",
    ].join("\n") + "\n"
  );
}

/** The tap device of a relay's VM on the bridge: derived from its vmId, at most 15 characters. */
export const tapName = (vmId: number) => `dr${vmId}`;
