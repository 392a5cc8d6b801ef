/**
 * Holds the testnet's consensus where it is, for tests that need "before any
 * new consensus": an nftables rule in the testnet's namespace drops what the
 * directory authorities send each other, so no authority sees a majority of
 * votes and none can make a consensus (tor's dir-spec: a consensus needs more
 * than half of the authorities' votes). Everything else still flows, above
 * all a relay's descriptor upload to the authorities' DirPorts.
 *
 * Why not SIGSTOP the authorities: a relay that starts while they are stopped
 * uploads its descriptor into a socket nobody reads; tor gives up on it after
 * TestingDirConnectionMaxStall (30 s in a test network), and a relay whose old
 * descriptor is still listed waits long before it uploads again. A consensus
 * made after the pause then still lists the relay's old keys.
 *
 * I/O: runs `nft` in the namespace.
 */
import { runTool } from "../../lib/core/run";
import { inNetns } from "../../lib/local/netns";
import { TESTNET } from "../../lib/config/testnet";

const TABLE = "diskless_relays_consensus_hold";

/** Authority to authority, on any authority port: votes, signatures and their fetches. */
const RULESET = [
  `table inet ${TABLE} {`,
  "  chain output {",
  "    type filter hook output priority 0; policy accept;",
  `    ip saddr ${TESTNET.hostIPv4} ip daddr ${TESTNET.hostIPv4} tcp dport { ${[...TESTNET.authorityOrPorts, ...TESTNET.authorityDirPorts].join(", ")} } drop`,
  "  }",
  "}",
  "",
].join("\n");

function nft(netns: string, args: string[], input?: string): void {
  const [command, ...rest] = inNetns(netns, ["nft", ...args]);
  runTool(command!, rest, { what: `nft ${args.join(" ")} in ${netns}`, input });
}

/** From now on, no new consensus. */
export function holdConsensus(netns: string): void {
  nft(netns, ["-f", "-"], RULESET);
}

/** The authorities vote again; a consensus follows within a voting interval or two. */
export function releaseConsensus(netns: string): void {
  nft(netns, ["delete", "table", "inet", TABLE]);
}
