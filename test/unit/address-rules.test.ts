/**
 * Addresses judged by what they reach. Oracles: Python's ipaddress module
 * (network and broadcast addresses, union sizes, the IPv4 address inside
 * IPv4-mapped, 6to4 and Teredo addresses, and its special-purpose flags)
 * and real tor: a bridge authority running tor's own directory-authority
 * code says which relay addresses it refuses to list.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseAddress, parsePrefix, unionSize, type ParsedPrefix } from "../../lib/tor/addresses";
import { documentationRange, embeddedIPv4, specialRange, unpublishableReason } from "../../lib/tor/address-rules";
import { ConfigError, parseStackConfig } from "../../lib/config/config";
import { FleetError, planFleet } from "../../lib/plan/fleet";
import { initRelayKeys } from "../../lib/tor/key-store";
import { checkPublication } from "../../lib/plan/publication";
import { readStackConfigFile } from "../../lib/config/stack-file";
import { probeTorAsync } from "../../lib/tor/tor-probe";
import { renderTorrcLines, type TorrcContext } from "../../lib/render/torrc";
import { renderUnboundConf } from "../../lib/render/unbound";
import { validRelayConfig } from "../support/fleet";
import { privateTmpDir } from "../support/tmp";
import { repoRoot } from "../support/pulumi";

const CONTEXT: TorrcContext = { dataDirectory: "/var/lib/tor", familyFingerprints: [], familyIds: [], sandbox: false };

function python(script: string, input: unknown): unknown {
  return JSON.parse(execFileSync("/usr/bin/python3", ["-c", `import ipaddress,json,sys\n${script}`], { input: JSON.stringify(input), encoding: "utf8" }));
}

/** The config's problems, as "path: message" lines; none when it parses. */
function problemsOf(raw: Record<string, unknown>): string[] {
  try {
    parseStackConfig(raw);
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.problems.map((p) => `${p.path}: ${p.message}`);
  }
}

function stack(relay: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  return {
    proxmox: { endpoint: "https://pve.example.net:8006", nodes: ["pve1"], datastore: "local", bridge: "vmbr0" },
    proxmoxApiToken: "a@pve!b=c",
    stateCollection: { privateKeyFile: "k" },
    relays: [
      {
        name: "r1",
        nickname: "R1",
        node: "pve1",
        vmId: 9101,
        mac: "BC:24:11:00:00:01",
        ipv4: { address: "198.51.100.11/24", gateway: "198.51.100.1" },
        ipv6: { address: "2001:db8::11/64", gateway: "2001:db8::1" },
        contactInfo: "x@example.net",
        ...relay,
      },
    ],
    ...extra,
  };
}

const prefixOf = (text: string): ParsedPrefix => parsePrefix(text.includes("/") ? text : `${text}/${text.includes(":") ? 128 : 32}`)!;

describe("metrics.allowFrom, judged by its union", () => {
  const metrics = (allowFrom: string | string[], more: Record<string, unknown> = {}) => problemsOf(stack({}, { metrics: { allowFrom, ...more } }));

  it("refuses the issue's examples: two halves of IPv4, and 2000::/3", () => {
    expect(metrics(["0.0.0.0/1", "128.0.0.0/1"])).toContainEqual(expect.stringMatching(/^metrics\.allowFrom: together cover 4294967296 IPv4 addresses, more than a \/8 holds \(16777216\)/));
    expect(metrics("2000::/3")).toContainEqual(expect.stringMatching(/^metrics\.allowFrom: together cover 2\^125 IPv6 addresses, more than a \/32 holds \(2\^96\)/));
    expect(metrics("2000::/3")).toContainEqual(expect.stringMatching(/^metrics\.allowFrom: "2000::\/3" is a range of public addresses/));
  });

  it("adds many narrow entries up: 32 /13s of private space are two /8s", () => {
    const slices = Array.from({ length: 32 }, (_, i) => `10.${i * 8}.0.0/13`).concat(Array.from({ length: 16 }, (_, i) => `172.${16 + (i >> 4)}.${(i & 15) * 16}.0/20`));
    expect(metrics(slices.slice(0, 32))).toEqual([]);
    expect(metrics([...slices.slice(0, 32), "192.168.0.0/16"])).toEqual([expect.stringMatching(/^metrics\.allowFrom: together cover 16842752 IPv4 addresses/)]);
    // Even with public ranges allowed, the union stays capped: many public /9s.
    const ninths = Array.from({ length: 4 }, (_, i) => `${64 + i * 2}.${i % 2 === 0 ? 0 : 128}.0.0/9`);
    expect(metrics(ninths, { allowPublicRanges: true })).toEqual([expect.stringMatching(/^metrics\.allowFrom: together cover 33554432 IPv4 addresses/)]);
  });

  it("counts overlapping entries once, as Python's collapse_addresses does", () => {
    const sets = [
      ["10.0.0.0/8", "10.1.0.0/16", "10.2.3.0/24", "10.0.0.1"],
      ["10.0.0.0/9", "10.64.0.0/10", "10.128.0.0/9", "192.168.0.0/24"],
      ["fd00::/16", "fd00:1::/32", "fd00:1:2::/48", "fd12::/16"],
      ["198.51.100.0/25", "198.51.100.128/25", "198.51.100.7"],
    ];
    const expected = python("print(json.dumps([str(sum(n.num_addresses for n in ipaddress.collapse_addresses([ipaddress.ip_network(s) for s in set_]))) for set_ in json.load(sys.stdin)]))", sets) as string[];
    expect(sets.map((set) => String(unionSize(set.map(prefixOf))))).toEqual(expected);
    // 10/8 with parts of itself is still one /8: allowed.
    expect(metrics(sets[0]!)).toEqual([]);
    expect(metrics(sets[1]!)).toEqual([expect.stringMatching(/together cover 16777472 IPv4 addresses/)]);
  });

  it("counts the IPv4 space that IPv6 translation prefixes stand for", () => {
    for (const all of ["::ffff:0:0/96", "::/1", "2002::/16", "64:ff9b::/96", "::/96"]) {
      expect(metrics(all, { allowPublicRanges: true }), all).toContainEqual(expect.stringMatching(/^metrics\.allowFrom: together cover 4294967296 IPv4 addresses \(counting the IPv4 space its IPv6 translation prefixes stand for\)/));
    }
    // 10/8 written IPv4-mapped is 10/8.
    expect(metrics("::ffff:10.0.0.0/104")).toEqual([]);
  });

  it("takes one public address (a server), and a public range only when the operator says it is theirs", () => {
    expect(metrics("93.184.216.34")).toEqual([]);
    expect(metrics(["93.184.216.34", "2a01:4f8::5"])).toEqual([]);
    expect(metrics("93.184.216.0/24")).toEqual([expect.stringMatching(/^metrics\.allowFrom: "93\.184\.216\.0\/24" is a range of public addresses: everyone in it could read the port\. .*set allowPublicRanges: true$/)]);
    expect(metrics(["10.0.0.0/16", "93.184.216.0/24"])).toEqual([expect.stringMatching(/^metrics\.allowFrom\[1\]: "93\.184\.216\.0\/24" is a range of public addresses/)]);
    expect(metrics("93.184.216.0/24", { allowPublicRanges: true })).toEqual([]);
    // Private and documentation networks are nobody's public range.
    expect(metrics(["192.168.0.0/16", "fd00:1:2::/48", "203.0.113.0/24"])).toEqual([]);
    // A relay's own metrics setting is judged the same way.
    expect(problemsOf(stack({ metrics: { allowFrom: ["0.0.0.0/1", "128.0.0.0/1"], allowPublicRanges: true } }))).toEqual([expect.stringMatching(/^relays\[0\]\.metrics\.allowFrom: together cover 4294967296 IPv4 addresses/)]);
  });
});

describe("exit resolvers, judged by what they reach", () => {
  const exitWith = (nameservers: string[]) => problemsOf(stack({ exit: { enabled: true }, nameservers }));

  it("refuses the issue's examples: loopback, unspecified, and Google written IPv4-mapped", () => {
    expect(exitWith(["127.0.0.1"])).toEqual([expect.stringMatching(/^relays\[0\]\.nameservers\[0\]: 127\.0\.0\.1 is a loopback address: it is the exit's own resolver .*answer SERVFAIL/)]);
    expect(exitWith(["0.0.0.0"])).toEqual([expect.stringMatching(/^relays\[0\]\.nameservers\[0\]: 0\.0\.0\.0 is an unspecified address: no resolver answers there/)]);
    expect(exitWith(["::ffff:8.8.8.8"])).toEqual([expect.stringMatching(/^relays\[0\]\.nameservers\[0\]: ::ffff:8\.8\.8\.8 \(8\.8\.8\.8, written IPv4-mapped\) is Google's public resolver/)]);
  });

  it("reads every spelling that carries an IPv4 address, as Python does", () => {
    const spellings = ["::ffff:8.8.8.8", "2002:808:808::1", "2001:0:4136:e378:8000:63bf:f7f7:f7f7"];
    const expected = python(
      "out=[]\nfor s in json.load(sys.stdin):\n  a=ipaddress.ip_address(s)\n  out.append(str(a.ipv4_mapped or a.sixtofour or a.teredo[1]))\nprint(json.dumps(out))",
      spellings,
    ) as string[];
    expect(spellings.map((s) => embeddedIPv4(parseAddress(s)!).map((e) => [24n, 16n, 8n, 0n].map((b) => String((e.ipv4.value >> b) & 0xffn)).join("."))[0])).toEqual(expected);
  });

  it("refuses a big resolver however it is written, and loopback or unspecified in any family or spelling", () => {
    const cases: [string, RegExp][] = [
      ["64:ff9b::8.8.4.4", /\(8\.8\.4\.4, written NAT64 \(64:ff9b::\/96\)\) is Google's/],
      ["64:ff9b:1::9.9.9.9", /\(9\.9\.9\.9, written NAT64 \(64:ff9b:1::\/48, as a \/96\)\) is Quad9's/],
      ["64:ff9b:1:808:8:800::", /\(8\.8\.8\.8, written NAT64 \(64:ff9b:1::\/48, as a \/48\)\) is Google's/],
      ["2002:101:101::1", /\(1\.1\.1\.1, written 6to4\) is Cloudflare's/],
      ["::1.1.1.1", /\(1\.1\.1\.1, written IPv4-compatible\) is Cloudflare's/],
      ["2001:4860:4860:0:0:0:0:8888", /is Google's public resolver/],
      ["::ffff:127.0.0.1", /\(127\.0\.0\.1, written IPv4-mapped\) is a loopback address/],
      ["127.53.0.1", /is a loopback address/],
      ["::1", /is a loopback address/],
      ["::", /is an unspecified address/],
      ["0.1.2.3", /is an unspecified address/],
      ["224.0.0.251", /is a multicast address \(224\.0\.0\.0\/4, RFC 5771\), not a resolver's unicast address/],
      ["fe80::53", /is a link-local address, which needs an interface/],
      ["198.51.100.11", /is the relay's own address, where no resolver listens/],
    ];
    for (const [nameserver, pattern] of cases) expect(exitWith([nameserver]), nameserver).toEqual([expect.stringMatching(new RegExp(`^relays\\[0\\]\\.nameservers\\[0\\]: .*${pattern.source}`))]);
    // Own resolvers, private or public, and a link-local IPv4 one (a cloud's) are fine.
    expect(exitWith(["198.51.100.53", "10.0.0.53", "169.254.169.253", "2001:db8::53", "fd77:77::1"])).toEqual([]);
  });

  it("hands unbound an IPv4-mapped upstream as the IPv4 address it is, in a configuration unbound accepts", () => {
    const dir = privateTmpDir("unbound-upstreams");
    const conf = renderUnboundConf({ upstreams: ["::ffff:198.51.100.53", "2001:0DB8:0:0::53"], rootTrustAnchor: "/usr/share/dns/root.key" });
    expect(conf.match(/forward-addr: .*/g)).toEqual(["forward-addr: 198.51.100.53", "forward-addr: 2001:db8::53"]);
    writeFileSync(join(dir, "unbound.conf"), conf);
    const check = spawnSync("unbound-checkconf", [join(dir, "unbound.conf")], { encoding: "utf8" });
    expect(check.status, check.stdout + check.stderr).toBe(0);
  });

  it("refuses loopback on a non-exit too: only exits run a resolver of their own", () => {
    expect(problemsOf(stack({ nameservers: ["127.0.0.1"] }))).toEqual([expect.stringMatching(/^relays\[0\]\.nameservers\[0\]: 127\.0\.0\.1 is a loopback address, and only exits run a resolver of their own/)]);
    // A non-exit's lookups are not its users': the big resolvers are its operator's choice.
    expect(problemsOf(stack({ nameservers: ["8.8.8.8"] }))).toEqual([]);
  });
});

describe("addresses tor will never publish", () => {
  const INTERNAL_V4 = ["10.0.0.5", "100.64.0.1", "127.0.0.2", "169.254.1.1", "0.1.2.3", "172.16.5.4", "192.168.1.1"];
  const INTERNAL_V6 = ["fd00::1", "fe80::1", "fec0::1", "::1"];
  const BEYOND_TOR_V4 = ["224.1.2.3", "240.0.0.1", "198.18.0.1", "192.0.0.8", "192.88.99.1"];
  const BEYOND_TOR_V6 = ["ff02::1", "::ffff:198.51.100.7", "64:ff9b::808:808", "2001::1", "2002:808:808::1", "4000::1", "100::1"];
  const PUBLIC_V4 = ["93.184.216.34", "1.1.1.1"];
  const PUBLIC_V6 = ["2a01:4f8::1", "2600::1"];
  const verdicts = new Map<string, string>();

  beforeAll(async () => {
    // Each relay's descriptor, as tor builds it for that address (AssumeReachable: tor builds it whatever the address)...
    // Every internal range tor knows; of the others, a few (each probe is a tor).
    const relays: [string, string | undefined][] = [
      ...[...INTERNAL_V4, ...BEYOND_TOR_V4.slice(0, 2), ...PUBLIC_V4].map((v4): [string, undefined] => [v4, undefined]),
      ...[...INTERNAL_V6, ...BEYOND_TOR_V6.slice(0, 2), "2002:808:808::1", ...PUBLIC_V6].map((v6): [string, string] => ["93.184.216.34", v6]),
    ];
    const built = await probeTorAsync(
      relays.map(([v4, v6]) => ({
        lines: ["Nickname AddressTest", "ContactInfo x@example.net", `Address ${v4}`, `ORPort ${v4}:443`, ...(v6 ? [`Address ${v6}`, `ORPort [${v6}]:443`] : []), "ExitRelay 0", "AssumeReachable 1"],
        queries: ["dir/server/authority"],
      })),
    );
    const descriptors = built.map((result, i) => {
      if ("error" in result) throw new Error(`tor built no descriptor for ${relays[i]!.join(" ")}: ${result.error}`);
      return result.answers["dir/server/authority"]!;
    });
    // ...posted to a bridge authority, whose directory-authority code (dirserv_router_has_valid_address) takes or refuses each.
    const authority = (await probeTorAsync([
      {
        lines: ["Nickname BridgeAuthority", "ContactInfo x@example.net", "Address 93.184.216.35", "ORPort 93.184.216.35:443", "DirPort 93.184.216.35:80", "AuthoritativeDirectory 1", "BridgeAuthoritativeDir 1", "ExitRelay 0", "AssumeReachable 1"],
        queries: [],
        commands: descriptors.map((descriptor) => `+POSTDESCRIPTOR purpose=bridge cache=no\r\n${descriptor}\r\n.`),
      },
    ]))[0]!;
    if ("error" in authority) throw new Error(`the bridge authority did not run: ${authority.error}\n${authority.log}`);
    relays.forEach(([v4, v6], i) => verdicts.set(v6 ?? v4, authority.replies[i]!));
  }, 120_000);

  it("refuses exactly what tor's directory authorities refuse as internal (tor_addr_is_internal), both families", () => {
    for (const address of [...INTERNAL_V4, ...INTERNAL_V6]) {
      expect(verdicts.get(address), address).toBe("251 Rejected: Address is a private address.");
      const reason = unpublishableReason(parseAddress(address)!);
      expect(reason, address).toMatch(/; tor with the default directory authorities never publishes a relay there \(tor_addr_is_internal/);
      expect(specialRange(parseAddress(address)!)!.torInternal, address).toBe(true);
    }
    for (const address of [...PUBLIC_V4, ...PUBLIC_V6]) {
      expect(verdicts.get(address), address).toBe("250 OK");
      expect(unpublishableReason(parseAddress(address)!), address).toBeUndefined();
    }
  });

  it("also refuses what the authorities list but nobody can reach: multicast, reserved, benchmarking, translation and tunnel ranges", () => {
    for (const address of [...BEYOND_TOR_V4, ...BEYOND_TOR_V6]) {
      // tor's authorities take these (those asked)...
      if (verdicts.has(address)) expect(verdicts.get(address), address).toBe("250 OK");
      // ...and the config refuses them, saying why.
      expect(unpublishableReason(parseAddress(address)!), address).toMatch(/: .*; tor's directory authorities would list a relay nobody can reach/);
    }
    expect(verdicts.size).toBe(INTERNAL_V4.length + INTERNAL_V6.length + PUBLIC_V4.length + PUBLIC_V6.length + 5);
  });

  it("agrees with Python's special-purpose flags: whatever ipaddress calls loopback, link-local, multicast, private or reserved is refused or a documentation address", () => {
    const sample = [...INTERNAL_V4, ...INTERNAL_V6, ...BEYOND_TOR_V4, ...BEYOND_TOR_V6, ...PUBLIC_V4, ...PUBLIC_V6, "192.0.2.7", "198.51.100.7", "203.0.113.7", "2001:db8::7", "255.255.255.255", "::"];
    const special = python(
      "print(json.dumps([any(getattr(ipaddress.ip_address(s), f) for f in ('is_loopback','is_link_local','is_multicast','is_private','is_reserved','is_unspecified')) for s in json.load(sys.stdin)]))",
      sample,
    ) as boolean[];
    sample.forEach((address, i) => {
      const parsed = parseAddress(address)!;
      const ours = unpublishableReason(parsed) !== undefined || documentationRange(parsed) !== undefined;
      if (special[i]) expect(ours, address).toBe(true);
    });
    for (const address of [...PUBLIC_V4, ...PUBLIC_V6]) expect(special[sample.indexOf(address)], address).toBe(false);
  });

  it("refuses them on Proxmox VE, naming the field; keeps them on the local testnet and in local boots; warns about documentation addresses", () => {
    const relay = validRelayConfig({ ipv4: { address: "10.0.0.5/24", gateway: "10.0.0.1" }, ipv6: { address: "fd00::5/64", gateway: "fd00::1" } });
    const torrcLines = renderTorrcLines(relay, CONTEXT);
    const proxmox = checkPublication([{ index: 2, config: relay, torrcLines }], { target: "proxmox" });
    expect(proxmox.problems).toEqual([
      expect.stringMatching(/^relays\[2\]\.ipv4\.address: 10\.0\.0\.5 is a private address \(10\.0\.0\.0\/8, RFC 1918\); tor with the default directory authorities never publishes a relay there/),
      expect.stringMatching(/^relays\[2\]\.ipv6\.address: fd00::5 is a unique local address \(fc00::\/7, RFC 4193\); tor with the default directory authorities/),
    ]);
    expect(checkPublication([{ index: 2, config: relay, torrcLines }], { target: "qemu" }).problems).toEqual([]);
    expect(checkPublication([{ index: 2, config: relay, torrcLines }], { target: "proxmox", localBoot: true }).problems).toEqual([]);
    const documented = validRelayConfig();
    expect(checkPublication([{ index: 0, config: documented, torrcLines: renderTorrcLines(documented, CONTEXT) }], { target: "proxmox" })).toEqual({
      problems: [],
      warnings: [
        "relay r1: relays[0].ipv4.address 198.51.100.11 is a documentation address (198.51.100.0/24, RFC 5737); relays[0].ipv6.address 2001:db8::11 is a documentation address (2001:db8::/32, RFC 3849). Fine for an example, but nothing on the internet reaches a relay there: replace them with the relay's public addresses before deploying",
      ],
      notes: [],
    });
  });

  it("stops planFleet before anything is registered, naming the field", () => {
    const projectDir = privateTmpDir("address-rules");
    initRelayKeys(join(projectDir, "keys"), "r1", { nickname: "R1" });
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(projectDir, "collector")]);
    const config = parseStackConfig({ ...stack({ ipv4: { address: "192.168.7.20/24", gateway: "192.168.7.1" }, ipv6: undefined }), stateCollection: { privateKeyFile: "collector" } });
    expect(() => planFleet(config, { projectDir, now: new Date() })).toThrow(FleetError);
    expect(() => planFleet(config, { projectDir, now: new Date() })).toThrow(/relays\[0\]\.ipv4\.address: 192\.168\.7\.20 is a private address \(192\.168\.0\.0\/16, RFC 1918\)/);
  });

  it("still plans the repository's stacks: fremont's documentation addresses warn, the local testnet's private ones pass", () => {
    const fremont = readStackConfigFile(repoRoot, "fremont");
    const planned = fremont.relays.map((config, index) => ({ index, config, torrcLines: renderTorrcLines(config, CONTEXT) }));
    const report = checkPublication(planned, { target: fremont.target });
    expect(report.problems).toEqual([]);
    expect(report.warnings).toHaveLength(4);
    expect(report.notes).toEqual([expect.stringMatching(/^relay fmt-exit-1 \(relays\[0\]\) exits to IPv4 and IPv6 ports 20-23, 43, 53, /), "relay fmt-exit-2 (relays[1]) exits to IPv4 and IPv6 ports 80, 443 (tor " + report.notes[1]!.split("(tor ")[1]]);
    const local = readStackConfigFile(repoRoot, "local");
    const localReport = checkPublication(local.relays.map((config, index) => ({ index, config, torrcLines: renderTorrcLines(config, CONTEXT) })), { target: local.target });
    expect(localReport.problems).toEqual([]);
    expect(localReport.warnings).toEqual([]);
  }, 60_000);
});

describe("gateways and the relay's place on its subnet", () => {
  const onSubnet = (ipv4: Record<string, unknown>, ipv6?: Record<string, unknown>) => problemsOf(stack({ ipv4, ...(ipv6 ? { ipv6 } : {}) }));

  it("refuses a gateway at the subnet's network or broadcast address, as Python computes them", () => {
    const [network, broadcast] = python("n=ipaddress.ip_network(json.load(sys.stdin));print(json.dumps([str(n.network_address),str(n.broadcast_address)]))", "198.51.100.0/26") as string[];
    expect(onSubnet({ address: "198.51.100.11/26", gateway: network })).toEqual([`relays[0].ipv4.gateway: ${network} is the network address of the relay's subnet 198.51.100.0/26, not a router's: name the router's own address`]);
    expect(onSubnet({ address: "198.51.100.11/26", gateway: broadcast })).toEqual([`relays[0].ipv4.gateway: ${broadcast} is the broadcast address of the relay's subnet 198.51.100.0/26, not a router's: name the router's own address`]);
  });

  it("refuses a relay at its subnet's network or broadcast address, or at IPv6's Subnet-Router anycast address", () => {
    expect(onSubnet({ address: "198.51.100.0/24", gateway: "198.51.100.1" })).toEqual([expect.stringMatching(/^relays\[0\]\.ipv4\.address: 198\.51\.100\.0\/24 is the network address of 198\.51\.100\.0\/24/)]);
    expect(onSubnet({ address: "198.51.100.255/24", gateway: "198.51.100.1" })).toEqual([expect.stringMatching(/^relays\[0\]\.ipv4\.address: 198\.51\.100\.255\/24 is the broadcast address/)]);
    expect(onSubnet({ address: "198.51.100.11/24", gateway: "198.51.100.1" }, { address: "2001:db8::/64", gateway: "fe80::1" })).toEqual([expect.stringMatching(/^relays\[0\]\.ipv6\.address: 2001:db8::\/64 is the Subnet-Router anycast address/)]);
  });

  it("takes the point-to-point and on-link cases: /31 (RFC 3021), /32 with onLink, IPv6 /127, and an IPv6 gateway at the Subnet-Router anycast address", () => {
    expect(onSubnet({ address: "198.51.100.10/31", gateway: "198.51.100.11" })).toEqual([]);
    expect(onSubnet({ address: "198.51.100.11/31", gateway: "198.51.100.10" })).toEqual([]);
    expect(onSubnet({ address: "198.51.100.11/32", gateway: "198.51.100.1", onLink: true })).toEqual([]);
    expect(onSubnet({ address: "198.51.100.11/24", gateway: "198.51.100.1" }, { address: "2001:db8::1/127", gateway: "2001:db8::" })).toEqual([]);
    expect(onSubnet({ address: "198.51.100.11/24", gateway: "198.51.100.1" }, { address: "2001:db8::11/64", gateway: "2001:db8::" })).toEqual([]);
  });

  it("refuses a gateway that is no router's unicast address", () => {
    for (const [gateway, what] of [
      ["0.0.0.0", "an unspecified address"],
      ["0.1.2.3", "an unspecified address"],
      ["127.0.0.1", "a loopback address"],
      ["224.0.0.1", "a multicast address"],
      ["255.255.255.255", "the limited broadcast address"],
    ]) {
      expect(onSubnet({ address: "198.51.100.11/24", gateway, onLink: true }), gateway).toEqual([expect.stringMatching(new RegExp(`^relays\\[0\\]\\.ipv4\\.gateway: ${gateway!.replaceAll(".", "\\.")} is ${what} .*not a router's address on the relay's link$`))]);
    }
    expect(onSubnet({ address: "198.51.100.11/24", gateway: "198.51.100.1" }, { address: "2001:db8::11/64", gateway: "::1", onLink: true })).toEqual([expect.stringMatching(/^relays\[0\]\.ipv6\.gateway: ::1 is the loopback address/)]);
  });
});
