/**
 * How large the server descriptor of a relay with a given torrc can get,
 * so that a relay whose descriptor the directory authorities would drop is
 * refused before it is built. The bound is the descriptor tor writes
 * (router_dump_router_to_string, src/feature/relay/router.c), line by line:
 * the keys, certificates and signatures at their real sizes, the lines the
 * torrc decides (contact, family, exit policy, addresses) as tor would
 * print them, and the values tor fills in at run time (uptime, bandwidth,
 * platform and protocol versions) at their longest. test/unit/descriptor-size
 * holds it against descriptors real tor builds from the same torrc. Pure.
 */
import { canonicalAddress, parseAddress } from "./addresses";
import { parseTorPolicyLine, ruleEntries, TOR_DEFAULT_EXIT_POLICY, TOR_PRIVATE_NETS, type PolicyEntry } from "./exit-policy";
import { parsePolicyRule } from "./tor-values";

/**
 * The largest descriptor a directory authority accepts
 * (MAX_DESCRIPTOR_UPLOAD_SIZE, src/core/or/or.h): a bigger one is refused
 * in dirserv_add_descriptor (src/feature/dirauth/process_descs.c) with
 * "Router descriptor was too large", and the relay never appears in the
 * consensus.
 */
export const MAX_DESCRIPTOR_UPLOAD_SIZE = 20_000;

/** tor's MAX_EXITPOLICY_SUMMARY_LEN (src/core/or/policies.c): the ipv6-policy summary's limit. */
const MAX_EXITPOLICY_SUMMARY_LEN = 1000;

/** A PEM-armoured block of `bytes` bytes, base64 in 64-column lines, as tor writes keys, certificates and signatures. */
function armoured(label: string, bytes: number): number {
  const chars = Math.ceil(bytes / 3) * 4;
  return `-----BEGIN ${label}-----\n`.length + chars + Math.ceil(chars / 64) + `-----END ${label}-----\n`.length;
}

const line = (text: string) => Buffer.byteLength(text, "utf8") + 1;

/**
 * The parts of a descriptor that do not depend on the torrc, at their
 * sizes in tor 0.4.9: an ed25519 certificate with its signing-key extension
 * is 140 bytes, a 1024-bit RSA public key 140 bytes in DER, an RSA
 * signature 128 bytes, the ntor cross-certificate 104 bytes; ed25519 keys
 * and curve25519 keys are 43 base64 characters, an ed25519 signature 86.
 */
const FIXED =
  line("identity-ed25519") + armoured("ED25519 CERT", 140) +
  line(`master-key-ed25519 ${"k".repeat(43)}`) +
  line("published 2026-01-01 00:00:00") +
  line(`fingerprint ${Array(10).fill("FFFF").join(" ")}`) +
  line(`extra-info-digest ${"F".repeat(40)} ${"d".repeat(43)}`) +
  line("onion-key") + armoured("RSA PUBLIC KEY", 140) +
  line("signing-key") + armoured("RSA PUBLIC KEY", 140) +
  line("onion-key-crosscert") + armoured("CROSSCERT", 128) +
  line("ntor-onion-key-crosscert 0") + armoured("ED25519 CERT", 104) +
  line("hidden-service-dir") +
  line(`ntor-onion-key ${"k".repeat(43)}`) +
  line(`router-sig-ed25519 ${"s".repeat(86)}`) +
  line("router-signature") + armoured("SIGNATURE", 128);

/**
 * What tor fills in at run time, at its longest: uptime and the three
 * bandwidth figures as 10-digit numbers (tor prints them from 32-bit
 * values), the platform and protocol lines of a later tor than the build
 * host's (today "Tor 0.4.9.11 on Linux", 21 bytes, and a 141-byte protocol
 * list), and the lines tor adds only sometimes (caches-extra-info,
 * hibernating, tunnelled-dir-server, overload-general).
 */
const RUN_TIME =
  line(`uptime ${"9".repeat(10)}`) +
  line(`bandwidth ${"9".repeat(10)} ${"9".repeat(10)} ${"9".repeat(10)}`) +
  line(`platform ${"v".repeat(64)}`) +
  line(`proto ${"p".repeat(256)}`) +
  line("caches-extra-info") +
  line("hibernating 1") +
  line("tunnelled-dir-server") +
  line("overload-general 1 2026-01-01 00:00:00");

/** One policy entry as tor prints it in a descriptor (policy_write_item, format_for_desc). */
function policyText(entry: PolicyEntry): string {
  const { network } = entry;
  const bits = network.family === 4 ? 32 : 128;
  const host = network.prefixLength === 0 ? "*" : network.family === 4 ? addressText(network) : `[${addressText(network)}]`;
  const mask = network.prefixLength > 0 && network.prefixLength < bits ? `/${network.prefixLength}` : "";
  const ports = entry.from <= 1 && entry.to === 65535 ? "*" : entry.from === entry.to ? String(entry.from) : `${entry.from}-${entry.to}`;
  return `${entry.accept ? "accept" : "reject"}${network.family === 6 ? "6" : ""} ${host}${mask}:${ports}`;
}

function addressText(network: PolicyEntry["network"]): string {
  // The longest spelling tor could choose is the uncompressed one; the bound takes it for IPv6.
  if (network.family === 6) return "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  return [24n, 16n, 8n, 0n].map((shift) => String((network.value >> shift) & 0xffn)).join(".");
}

export interface DescriptorEstimate {
  /** An upper bound on the descriptor's size in bytes. */
  bytes: number;
  /** Bytes of that bound due to ContactInfo, the exit policy and the family lines. */
  contact: number;
  exitPolicy: number;
  family: number;
}

/** The value of every line of an option, in order. */
const values = (lines: string[], option: string) =>
  lines.flatMap((text) => {
    const space = text.indexOf(" ");
    return space > 0 && text.slice(0, space).toLowerCase() === option.toLowerCase() ? [text.slice(space + 1).trim()] : [];
  });

/**
 * The size bound of the descriptor tor would build from these torrc lines
 * (the rendered torrc, one option a line, as lib/render/torrc.ts writes it).
 */
export function descriptorSizeBound(torrc: string[]): DescriptorEstimate {
  const lines = torrc.filter((text) => !text.startsWith("#"));
  const last = (option: string) => values(lines, option).at(-1);
  const nickname = last("Nickname") ?? "Unnamed";

  // router NICK ADDRESS ORPORT 0 DIRPORT, and an or-address line for the IPv6 ORPort.
  const orPorts = values(lines, "ORPort").map((value) => value.split(" ")[0]!);
  const ipv4OrPort = orPorts.find((value) => !value.startsWith("[")) ?? "255.255.255.255:65535";
  const ipv6OrPort = orPorts.find((value) => value.startsWith("["));
  const dirPort = (last("DirPort") ?? "0").split(":").at(-1)!;
  let bytes = FIXED + RUN_TIME + line(`router ${nickname} ${ipv4OrPort.replace(":", " ")} 0 ${dirPort}`);
  if (ipv6OrPort) bytes += line(`or-address ${ipv6OrPort}`);

  const contactInfo = last("ContactInfo");
  const contact = contactInfo ? line(`contact ${contactInfo}`) : 0;

  // MyFamily: tor lists the relay itself too. FamilyId: one family-cert (an ed25519 certificate) each.
  const members = new Set(values(lines, "MyFamily").flatMap((value) => value.split(",").map((member) => member.trim()).filter(Boolean)));
  const family =
    (members.size > 0 ? line(`family ${[...members, `$${"F".repeat(40)}`].join(" ")}`) : 0) +
    values(lines, "FamilyId").length * (line("family-cert") + armoured("FAMILY CERT", 140));

  const exitPolicy = exitPolicyBytes(lines);
  return { bytes: bytes + contact + family + exitPolicy, contact, exitPolicy, family };
}

/**
 * The exit policy part: the IPv4 entries tor prints one a line, and the
 * ipv6-policy summary. tor's own rejects come first (ExitPolicyRejectPrivate:
 * its private networks and the relay's own address), then the config's
 * entries, then tor's default policy if no entry catches every IPv4
 * address; tor only ever drops redundant entries from that.
 */
function exitPolicyBytes(lines: string[]): number {
  const flag = (option: string, otherwise: boolean) => {
    const value = values(lines, option).at(-1);
    return value === undefined ? otherwise : value === "1";
  };
  if (!flag("ExitRelay", false)) return line("reject *:*");
  const entries: PolicyEntry[] = values(lines, "ExitPolicy").flatMap((value) =>
    value.split(",").flatMap((part) => {
      const parsed = parsePolicyRule(part.trim());
      return "rule" in parsed ? ruleEntries(parsed.rule) : [];
    }),
  );
  const caught = (family: 4 | 6) => entries.some((e) => e.network.family === family && e.network.prefixLength === 0 && e.from <= 1 && e.to === 65535);
  const defaults = TOR_DEFAULT_EXIT_POLICY.flatMap((text) => ruleEntries((parsePolicyRule(text) as { rule: Parameters<typeof ruleEntries>[0] }).rule));
  const tail = (family: 4 | 6) => (caught(family) ? [] : defaults.filter((e) => e.network.family === family));

  const own = values(lines, "Address").flatMap((value) => {
    const address = parseAddress(value.replace(/^\[|\]$/g, ""));
    return address ? [parseTorPolicyLine(address.family === 4 ? `reject ${value}:*` : `reject6 [${value.replace(/^\[|\]$/g, "")}]:*`)!] : [];
  });
  const rejectPrivate = flag("ExitPolicyRejectPrivate", true)
    ? [...TOR_PRIVATE_NETS.map((net) => parseTorPolicyLine(net.includes(":") ? `reject6 [${net.split("/")[0]}]/${net.split("/")[1]}:*` : `reject ${net}:*`)!), ...own]
    : [];

  const ipv4 = [...rejectPrivate, ...entries, ...tail(4)].filter((e) => e.network.family === 4);
  let bytes = ipv4.reduce((sum, entry) => sum + line(policyText(entry)), 0);
  if (flag("IPv6Exit", false)) bytes += ipv6SummaryBytes([...rejectPrivate, ...entries, ...tail(6)].filter((e) => e.network.family === 6));
  return bytes;
}

/**
 * The ipv6-policy line: tor's policy_summarize keeps, per port, whether the
 * first whole-address-space entry (maskbits 0) accepts it, writes the
 * accepted or the rejected runs, whichever list is shorter, and cuts it at
 * MAX_EXITPOLICY_SUMMARY_LEN. Narrower rejects can split a run (each adds
 * at most two runs, 24 bytes here); private ones tor leaves out.
 */
function ipv6SummaryBytes(entries: PolicyEntry[]): number {
  const whole = entries.filter((e) => e.network.prefixLength === 0);
  const starts = [...new Set([1, ...whole.flatMap((e) => [e.from, ...(e.to < 65535 ? [e.to + 1] : [])])])].sort((a, b) => a - b);
  // A port no entry decides is not accepted (policy_summary_create starts with everything rejected).
  const accepted = (port: number) => whole.find((e) => port >= e.from && port <= e.to)?.accept ?? false;
  const runs: { from: number; to: number; accept: boolean }[] = [];
  starts.forEach((start, i) => {
    const to = i + 1 < starts.length ? starts[i + 1]! - 1 : 65535;
    const accept = accepted(start);
    const previous = runs.at(-1);
    if (previous && previous.accept === accept) previous.to = to;
    else runs.push({ from: start, to, accept });
  });
  const listed = (accept: boolean) =>
    runs
      .filter((run) => run.accept === accept)
      .map((run) => (run.from === run.to ? String(run.from) : `${run.from}-${run.to}`))
      .join(",").length;
  const privateText = new Set(TOR_PRIVATE_NETS.map((net) => `${net.split("/")[0]}/${net.split("/")[1]}`));
  const narrowRejects = entries.filter((e) => !e.accept && e.network.prefixLength > 0 && !privateText.has(`${canonicalAddress(e.network)}/${e.network.prefixLength}`)).length;
  const text = listed(false) === 0 ? "accept 1-65535".length : "accept ".length + Math.min(listed(true), listed(false));
  const summary = Math.min(MAX_EXITPOLICY_SUMMARY_LEN, text + 24 * narrowRejects);
  return runs.every((run) => !run.accept) ? 0 : line(`ipv6-policy ${"x".repeat(summary)}`);
}

