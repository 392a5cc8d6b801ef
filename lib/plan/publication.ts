/**
 * What the Tor network would see of each relay as rendered, judged before
 * anything is registered: whether tor would publish it at all (its
 * addresses), whether the directory authorities would take its descriptor
 * (its size), and, for an exit, what its exit policy opens once tor has
 * read it (asked of tor itself). I/O: runs tor (lib/tor/tor-probe.ts) for the
 * exits; the rest is pure.
 */
import { addressOf, parseAddress } from "../tor/addresses";
import { documentationRange, unpublishableReason } from "../tor/address-rules";
import type { RelayConfig } from "../config/config";
import { descriptorSizeBound, MAX_DESCRIPTOR_UPLOAD_SIZE } from "../tor/descriptor-size";
import { acceptedBeyondListed, FAMILIES, formatPorts, openPorts, parseTorPolicy, ruleEntries, type PolicyEntry } from "../tor/exit-policy";
import { parsePolicyRule } from "../tor/tor-values";
import { probeTor, TorProbeError, type TorProbeResult } from "../tor/tor-probe";
import type { TorrcLine } from "../render/torrc";

export interface PublicationInput {
  /** Position in relays[], for the error's path. */
  index: number;
  config: RelayConfig;
  torrcLines: TorrcLine[];
}

export interface PublicationReport {
  /** Each stops the plan; each names its config field. */
  problems: string[];
  warnings: string[];
  /** What preview shows: one line per exit with the ports it opens. */
  notes: string[];
}

export interface PublicationOptions {
  target: "proxmox" | "qemu";
  /**
   * The fleet boots under QEMU on this machine and never joins the public
   * Tor network (the image and broker tests and benchmarks): its addresses
   * are those of a test network. Code sets this; no stack config can.
   */
  localBoot?: boolean;
  torBinary?: string;
}

/**
 * torrc options the probe cannot run with or has its own of: keys it does
 * not hold (OfflineMasterKey, FamilyId's family key), the image's paths
 * and user, and logging. None of them changes the exit policy.
 */
const NOT_PROBED = new Set(["datadirectory", "offlinemasterkey", "familyid", "user", "sandbox", "log", "socksport"]);

/** The torrc lines a probe of this relay's exit policy runs with. */
export function probeLines(torrc: TorrcLine[]): string[] {
  const kept = torrc.map((line) => line.text).filter((text) => !text.startsWith("#") && !NOT_PROBED.has(text.split(" ")[0]!.toLowerCase()));
  // tor builds a descriptor only for an address it may publish; the probe publishes nothing
  // (PublishServerDescriptor 0), and with AssumeReachable tor takes any address (address_can_be_used).
  return [...kept, "AssumeReachable 1"];
}

/** The config's own entries, as the torrc lists them. */
export function listedEntries(torrc: TorrcLine[]): PolicyEntry[] {
  return torrc
    .filter((line) => line.text.startsWith("ExitPolicy "))
    .flatMap((line) => {
      const parsed = parsePolicyRule(line.text.slice("ExitPolicy ".length));
      return "rule" in parsed ? ruleEntries(parsed.rule) : [];
    });
}

const torVersionIn = (log: string) => /Tor (\S+) running on/.exec(log)?.[1] ?? "";

/** tor's own warnings from a probe's log, for a failed probe's message. */
const torWarnings = (log: string) =>
  log
    .split("\n")
    .map((line) => /\[(?:warn|err)\] (.*)$/.exec(line)?.[1]?.trim())
    .filter((message): message is string => !!message && !/running Tor as root/.test(message));

export function checkPublication(relays: PublicationInput[], options: PublicationOptions): PublicationReport {
  const problems: string[] = [];
  const warnings: string[] = [];
  const notes: string[] = [];

  for (const { index, config, torrcLines } of relays) {
    const who = `relays[${index}]`;
    // Addresses: with the default directory authorities tor publishes public addresses only. The local
    // testnet runs its own authorities, which take private ones; a local boot never publishes.
    if (options.target === "proxmox" && !options.localBoot) {
      const documentation: string[] = [];
      for (const family of ["ipv4", "ipv6"] as const) {
        const prefix = config[family]?.address;
        const address = prefix ? parseAddress(addressOf(prefix)) : undefined;
        if (!address) continue;
        const reason = unpublishableReason(address);
        if (reason) problems.push(`${who}.${family}.address: ${reason}`);
        const range = documentationRange(address);
        if (range) documentation.push(`${who}.${family}.address ${addressOf(prefix!)} is ${range.description}`);
      }
      if (documentation.length > 0) {
        warnings.push(`relay ${config.name}: ${documentation.join("; ")}. Fine for an example, but nothing on the internet reaches a relay there: replace ${documentation.length === 1 ? "it" : "them"} with the relay's public addresses before deploying`);
      }
    }

    // The descriptor: the authorities drop one over MAX_DESCRIPTOR_UPLOAD_SIZE, and the relay is never listed.
    const estimate = descriptorSizeBound(torrcLines.map((line) => line.text));
    if (estimate.bytes > MAX_DESCRIPTOR_UPLOAD_SIZE) {
      const parts = [
        { field: "contactInfo", what: "ContactInfo", bytes: estimate.contact },
        { field: "exit.policy", what: "the exit policy", bytes: estimate.exitPolicy },
        { field: "family", what: "the family lines", bytes: estimate.family },
      ].sort((a, b) => b.bytes - a.bytes);
      const biggest = parts[0]!;
      const over = estimate.bytes - MAX_DESCRIPTOR_UPLOAD_SIZE;
      problems.push(
        `${who}.${biggest.field} (relay ${config.name}): the relay's descriptor would be up to ${estimate.bytes} bytes, over the ${MAX_DESCRIPTOR_UPLOAD_SIZE} bytes tor's directory authorities accept (MAX_DESCRIPTOR_UPLOAD_SIZE): they would drop it, and the relay would never be listed. ${biggest.what} takes ${biggest.bytes} bytes of it: shorten it by at least ${over} bytes`,
      );
    }
  }

  // Exit policies, as tor itself computes them: all exits at once.
  const exits = relays.filter((relay) => relay.config.exit.enabled);
  let results: TorProbeResult[] = [];
  try {
    results = probeTor(
      exits.map((relay) => ({ lines: probeLines(relay.torrcLines), queries: ["exit-policy/full"] })),
      options.torBinary ? { torBinary: options.torBinary } : {},
    );
  } catch (err) {
    if (!(err instanceof TorProbeError)) throw err;
    problems.push(`relays: tor could not compute the exits' policies (${err.message}); install tor on this build host with the set-up command`);
    return { problems, warnings, notes };
  }
  exits.forEach((relay, i) => {
    const who = `relays[${relay.index}]`;
    const result = results[i]!;
    if ("error" in result) {
      const said = torWarnings(result.log);
      problems.push(`${who}.exit (relay ${relay.config.name}): tor could not compute the relay's exit policy (${result.error})${said.length > 0 ? `; tor said: ${said.join(" ")}` : ""}`);
      return;
    }
    const text = result.answers["exit-policy/full"]!;
    const effective = parseTorPolicy(text);
    const version = torVersionIn(result.log);
    const tor = version ? `tor ${version}` : "tor";
    const excess = acceptedBeyondListed(effective, listedEntries(relay.torrcLines));
    if (excess.length > 0) {
      const opened = excess.map((e) => `IPv${e.family} ports ${formatPorts(e.ports)} (e.g. to ${e.example})`).join("; ");
      problems.push(
        `${who}.exit.policy (relay ${relay.config.name}): ${tor}'s effective exit policy accepts more than the list does: ${opened}, which no "accept" entry lists. End the list with "reject *:*" so that tor appends nothing, or list those ports. tor's effective policy: ${text.split("\n").join(", ")}`,
      );
    }
    const ports = FAMILIES.map((family) => formatPorts(openPorts(effective, family)));
    const summary = ports[0] === ports[1] ? `IPv4 and IPv6 ports ${ports[0]}` : `IPv4 ports ${ports[0]}; IPv6 ports ${ports[1]}`;
    notes.push(`relay ${relay.config.name} (${who}) exits to ${summary} (${tor}'s effective exit policy)`);
  });
  return { problems, warnings, notes };
}
