import { describe, expect, it } from "vitest";
import { ConfigError, formatConfigPath, parseStackConfig, projectConfigObject } from "../../lib/config/config";
import { TEST_BROKER_SETTINGS, validProxmoxConfig, type LooseConfig } from "../support/fleet";

/** What key-broker init prints, in shape: a 32-byte key in base64 and an age recipient (bech32 charset). */
const BROKER = TEST_BROKER_SETTINGS;
type Config = LooseConfig;

/** Parses a mutated valid config and returns the problems it reports. */
function problemsOf(mutate: (config: Config) => void) {
  const config = validProxmoxConfig() as Config;
  mutate(config);
  try {
    parseStackConfig(config);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error("the config was accepted");
}

describe("parseStackConfig", () => {
  it("accepts a valid config and fills in the defaults", () => {
    const config = parseStackConfig(validProxmoxConfig());
    expect(config.image.flavour).toBe("debian");
    expect(config.proxmox!.verifyTls).toBe(true);
    expect(config.target).toBe("proxmox");
    expect(config.relays[0]!.orPort).toBe(443);
    expect(config.relays[1]!.exit.enabled).toBe(false);
    expect(config.relays[0]!.allowFreshOnionKeys).toBe(false);
    expect(config.stateCollection.user).toBe("root");
    expect(config.certificate).toEqual({ errorDays: 2, warnDays: 10 });
    expect(config.rollout).toEqual({ maxParallel: 1, healthTimeoutSeconds: 600, rollback: true });
    expect(config.identity).toEqual({ mode: "image" });
    // Exits serve their notice, and every relay gets torutils' per-source limits, unless the config says otherwise.
    expect(config.relays[0]!.exit.notice).toEqual({ enabled: true });
    expect(config.relays[1]!.limits).toEqual({
      enabled: true,
      orPort: { connections: 8, newPerMinute: 8 },
      exitNotice: { connections: 8, newPerMinute: 60 },
      ipv6SourcePrefix: 64,
      openFiles: 65536,
    });
  });

  it("takes per-relay limits and turns an exit's notice off", () => {
    const raw = validProxmoxConfig() as Config;
    raw.relays[0].exit = { enabled: true, notice: { enabled: false } };
    raw.relays[0].orPort = 80;
    raw.relays[0].memoryMiB = 4096;
    raw.relays[0].limits = { enabled: false, conntrackMax: 2 ** 21, openFiles: 200_000, orPort: { connections: 16, newPerMinute: 30 } };
    const relay = parseStackConfig(raw).relays[0]!;
    expect(relay.exit.notice.enabled).toBe(false);
    expect(relay.limits).toMatchObject({ enabled: false, conntrackMax: 2 ** 21, openFiles: 200_000, orPort: { connections: 16, newPerMinute: 30 }, exitNotice: { connections: 8, newPerMinute: 60 } });
  });

  it("accepts a broker with token attestation on Proxmox VE, and a loopback broker on the local stack", () => {
    const proxmox = parseStackConfig({ ...validProxmoxConfig(), identity: { mode: "broker", broker: BROKER } });
    expect(proxmox.identity.broker).toEqual({ ...BROKER, allowSimulatedAttestation: false, pushIntervalSeconds: 300 });
    const local = { ...validProxmoxConfig(), target: "qemu", testnet: {}, identity: { mode: "broker", broker: { ...BROKER, url: "http://127.0.0.1:8443", attestation: "snp", allowSimulatedAttestation: true } } };
    delete (local as any).proxmox;
    delete (local as any).proxmoxApiToken;
    for (const relay of (local as any).relays) relay.sev = { enabled: true, ovmf: "ovmf.fd", ovmfSha256: "0".repeat(64), vcpuType: "EPYC-v4" };
    expect(parseStackConfig(local).identity.broker!.allowSimulatedAttestation).toBe(true);
    // The local stack may leave the broker's keys and endpoints to its testnet; elsewhere they are required.
    const fromTestnet = { ...local, identity: { mode: "broker", broker: { attestation: "snp", allowSimulatedAttestation: true } } };
    expect(parseStackConfig(fromTestnet).identity.broker!.url).toBeUndefined();
    const bare = { ...validProxmoxConfig(), identity: { mode: "broker", broker: { attestation: "none" } } };
    expect(() => parseStackConfig(bare)).toThrow(/identity\.broker\.url: is required[\s\S]*identity\.broker\.admin: is required/);
    // Attested release needs a guest that can attest, on the local stack too.
    const noSev = { ...fromTestnet, relays: (local as any).relays.map((relay: any) => ({ ...relay, sev: undefined })) };
    expect(() => parseStackConfig(noSev)).toThrow(/relays\[0\]\.sev\.enabled: must be true/);
  });

  // Each row: what is wrong, how to break a valid config that way, the path
  // the error must name, and a fragment of the rule it must state.
  const cases: [string, (c: Config) => void, string, RegExp][] = [
    ["nickname too long", (c) => (c.relays[0].nickname = "ThisNicknameIsTooLong1"), "relays[0].nickname", /1–19 characters/],
    ["nickname with a dash", (c) => (c.relays[1].nickname = "guard-one"), "relays[1].nickname", /A–Z, a–z and 0–9/],
    ["empty nickname", (c) => (c.relays[0].nickname = ""), "relays[0].nickname", /1–19/],
    ["missing nickname", (c) => delete (c.relays[0] as any).nickname, "relays[0].nickname", /is required/],
    ["bad MAC", (c) => (c.relays[0].mac = "BC:24:11:00:00"), "relays[0].mac", /MAC address/],
    ["IPv4 without prefix", (c) => (c.relays[0].ipv4.address = "198.51.100.11"), "relays[0].ipv4.address", /prefix length/],
    ["IPv6 in the IPv4 field", (c) => (c.relays[1].ipv4.address = "2001:db8::5/64"), "relays[1].ipv4.address", /IPv4 address/],
    ["IPv4 prefix over 32", (c) => (c.relays[0].ipv4.address = "198.51.100.11/33"), "relays[0].ipv4.address", /prefix length/],
    ["bad IPv6 gateway", (c) => (c.relays[0].ipv6!.gateway = "fe80::zz"), "relays[0].ipv6.gateway", /IPv6 address/],
    ["ORPort out of range", (c) => (c.relays[0].orPort = 70000), "relays[0].orPort", /TCP port/],
    ["ORPort as a string", (c) => (c.relays[0].orPort = "443"), "relays[0].orPort", /must be number, got string/],
    ["vmId below 100", (c) => (c.relays[0].vmId = 42), "relays[0].vmId", /VMID/],
    ["node not in the cluster", (c) => (c.relays[1].node = "pve9"), "relays[1].node", /not one of proxmox\.nodes/],
    ["duplicate nickname", (c) => (c.relays[1].nickname = "exitone"), "relays[1].nickname", /duplicate nickname.*relays\[0\]/],
    ["duplicate vmId", (c) => (c.relays[1].vmId = 9101), "relays[1].vmId", /duplicate vmId/],
    ["duplicate MAC", (c) => (c.relays[1].mac = "bc:24:11:00:00:01"), "relays[1].mac", /duplicate MAC/],
    [
      "duplicate IP:ORPort",
      (c) => {
        c.relays[1].ipv4.address = "198.51.100.11/24";
        c.relays[1].orPort = 443;
      },
      "relays[1].ipv4",
      /duplicate IPv4 address and ORPort "198\.51\.100\.11:443"/,
    ],
    ["memory too small for a RAM root", (c) => (c.relays[0].memoryMiB = 256), "relays[0].memoryMiB", /at least 512 MiB/],
    ["bad exit policy line", (c) => (c.relays[0].exit = { enabled: true, policy: ["allow *:80"] }), "relays[0].exit.policy[0]", /ExitPolicy entry/],
    ["bandwidth with a unit tor does not know", (c) => (c.relays[0].bandwidth = { rate: "100 MiB", burst: "200 MBytes" }), "relays[0].bandwidth.rate", /tor bandwidth/],
    ["plain-http endpoint", (c) => (c.proxmox.endpoint = "http://pve.example.net:8006"), "proxmox.endpoint", /https/],
    ["malformed API token", (c) => (c.proxmoxApiToken = "root:hunter2"), "proxmoxApiToken", /USER@REALM!TOKENID=SECRET/],
    ["unknown flavour", (c) => (c.image = { flavour: "arch" }), "image.flavour", /alpine.*debian/],
    ["typo in a relay key", (c) => ((c.relays[0] as any).nickName = "x"), "relays[0].nickName", /not a known setting/],
    ["no relays", (c) => (c.relays = []), "relays", /at least one relay/],
    ["SNP with debugging allowed", (c) => ((c.relays[0] as any).sev = { enabled: true, noDebug: false }), "relays[0].sev.noDebug", /debugging/],
    ["SNP without the OVMF pin", (c) => ((c.relays[0] as any).sev = { enabled: true, ovmf: "ovmf.fd" }), "relays[0].sev.ovmfSha256", /SHA-256 of the OVMF file/],
    ["SNP OVMF pin that is no SHA-256", (c) => ((c.relays[0] as any).sev = { enabled: true, ovmf: "ovmf.fd", ovmfSha256: "abc" }), "relays[0].sev.ovmfSha256", /64 lowercase hex/],
    ["SNP on Proxmox VE without root@pam's password", (c) => ((c.relays[0] as any).sev = { enabled: true, ovmf: "ovmf.fd", ovmfSha256: "0".repeat(64) }), "proxmoxRootPassword", /only root@pam logged in with its password/],
    [
      "SNP measured for another vCPU model than Proxmox VE launches",
      (c) => Object.assign(c, { proxmoxRootPassword: "pw" }) && ((c.relays[0] as any).sev = { enabled: true, ovmf: "ovmf.fd", ovmfSha256: "0".repeat(64), vcpuType: "EPYC-v4" }),
      "relays[0].sev.vcpuType",
      /launches the VM with cpuType x86-64-v2-AES/,
    ],
    ["an ISO directory with a space", (c) => ((c.proxmox as any).isoDir = "/var/lib/vz/template iso"), "proxmox.isoDir", /absolute path/],
    ["warn window shorter than error window", (c) => (c.certificate = { errorDays: 5, warnDays: 3 }), "certificate.warnDays", /at least errorDays/],
    ["bad resolver address", (c) => (c.relays[1].nameservers = ["dns.example"]), "relays[1].nameservers[0]", /IP address/],
    ["maxParallel zero", (c) => (c.rollout = { maxParallel: 0 }), "rollout.maxParallel", /at least 1/],
    ["proxmox target without its token", (c) => delete (c as any).proxmoxApiToken, "proxmoxApiToken", /required when target is proxmox/],
    ["qemu target without the testnet", (c) => (c.target = "qemu"), "testnet", /required when target is qemu/],
    ["a testnet on Proxmox VE", (c) => (c.testnet = {}), "testnet", /local stack only/],
    ["missing collection key", (c) => (c.stateCollection = {}), "stateCollection.privateKeyFile", /is required/],

    // Keys from the broker (Phase 2).
    ["broker mode without a broker", (c) => ((c as any).identity = { mode: "broker" }), "identity.broker", /required when mode is broker/],
    ["a plain-http broker off loopback", (c) => ((c as any).identity = { mode: "broker", broker: { ...BROKER, url: "http://broker.example.net:8080" } }), "identity.broker.url", /https/],
    ["a broker key that is not base64 ed25519", (c) => ((c as any).identity = { mode: "broker", broker: { ...BROKER, signingPublicKey: "abc" } }), "identity.broker.signingPublicKey", /ed25519 public key/],
    ["a push recipient that is not age", (c) => ((c as any).identity = { mode: "broker", broker: { ...BROKER, pushRecipient: "ssh-ed25519 AAAA" } }), "identity.broker.pushRecipient", /age recipient/],
    ["simulated attestation on Proxmox VE", (c) => ((c as any).identity = { mode: "broker", broker: { ...BROKER, attestation: "snp", allowSimulatedAttestation: true } }), "identity.broker.allowSimulatedAttestation", /local stack only/],
    ["SNP attestation for a relay without SEV", (c) => ((c as any).identity = { mode: "broker", broker: { ...BROKER, attestation: "snp" } }), "relays[0].sev.enabled", /only an SEV-SNP guest/],

    // Values that would change the torrc's meaning (issue: torrc injection).
    ["a newline in contactInfo", (c) => (c.relays[0].contactInfo = "ops@example.org\nExitPolicy accept *:*"), "relays[0].contactInfo", /one line/],
    ["a trailing backslash in contactInfo", (c) => (c.relays[0].contactInfo = "ops@example.org \\"), "relays[0].contactInfo", /backslash/],
    ["a # in contactInfo", (c) => (c.relays[0].contactInfo = "ops@example.org #noc"), "relays[0].contactInfo", /comment/],
    ["a tab in contactInfo", (c) => (c.relays[0].contactInfo = "ops@example.org\tx"), "relays[0].contactInfo", /control characters/],
    ["a port out of range in the exit policy", (c) => (c.relays[0].exit = { enabled: true, policy: ["accept *:99999", "reject *:*"] }), "relays[0].exit.policy[0]", /1–65535/],
    ["a backwards port range", (c) => (c.relays[0].exit = { enabled: true, policy: ["accept *:443-80"] }), "relays[0].exit.policy[0]", /backwards/],
    ["two policy entries in one line", (c) => (c.relays[0].exit = { enabled: true, policy: ["accept *:80,accept *:443"] }), "relays[0].exit.policy[0]", /more than one entry/],
    ["a trailing backslash in a policy line", (c) => (c.relays[0].exit = { enabled: true, policy: ["reject *:25\\"] }), "relays[0].exit.policy[0]", /port/],
    ["accept6 with an IPv4 address", (c) => (c.relays[0].exit = { enabled: true, policy: ["accept6 198.51.100.0/24:80"] }), "relays[0].exit.policy[0]", /IPv6 only/],
    ["an IPv4 mask over 32", (c) => (c.relays[0].exit = { enabled: true, policy: ["reject 10.0.0.0/33:*"] }), "relays[0].exit.policy[0]", /prefix length/],
    ["an empty exit policy", (c) => (c.relays[0].exit = { enabled: true, policy: [] }), "relays[0].exit.policy", /at least one entry/],
    ["a burst below the rate", (c) => (c.relays[0].bandwidth = { rate: "100 MBytes", burst: "10 MBytes" }), "relays[0].bandwidth.burst", /less than the rate/],
    ["a burst below the rate in other units", (c) => (c.relays[0].bandwidth = { rate: "1 GBytes", burst: "800 Mbits" }), "relays[0].bandwidth.burst", /less than the rate/],
    ["a bandwidth over tor's cap", (c) => (c.relays[0].bandwidth = { rate: "3 GBytes", burst: "3 GBytes" }), "relays[0].bandwidth.rate", /caps bandwidths/],

    // Addresses as addresses.
    ["an IPv6 zone id in an address", (c) => (c.relays[0].ipv6.address = "fe80::11%eth0/64"), "relays[0].ipv6.address", /zone ids/],
    ["an IPv6 zone id in a gateway", (c) => (c.relays[0].ipv6.gateway = "fe80::1%vmbr0"), "relays[0].ipv6.gateway", /zone ids/],
    ["an IPv4 gateway off the subnet", (c) => (c.relays[0].ipv4.gateway = "198.51.101.1"), "relays[0].ipv4.gateway", /not on the relay's subnet/],
    ["an IPv6 gateway off the subnet", (c) => (c.relays[0].ipv6.gateway = "2001:db9::1"), "relays[0].ipv6.gateway", /not on the relay's subnet/],
    ["the gateway is the relay itself", (c) => (c.relays[0].ipv4.gateway = "198.51.100.11"), "relays[0].ipv4.gateway", /own address/],
    [
      "one IPv6 address spelled two ways",
      (c) => {
        c.relays[1].ipv6 = { address: "2001:0db8:0:0:0:0:0:11/64", gateway: "2001:db8::1" };
        c.relays[1].orPort = 443;
      },
      "relays[1].ipv6",
      /duplicate IPv6 address and ORPort "\[2001:db8::11\]:443"/,
    ],
    ["a multicast MAC", (c) => (c.relays[0].mac = "01:00:5E:00:00:01"), "relays[0].mac", /unicast/],
    ["the broadcast MAC", (c) => (c.relays[0].mac = "FF:FF:FF:FF:FF:FF"), "relays[0].mac", /unicast/],
    ["an ORPort shared with the MetricsPort", (c) => (c.relays[1].metrics = { allowFrom: "203.0.113.5", port: 9001 }), "relays[1].metrics.port", /already the relay's orPort/],
    ["a MetricsPort on the SSH port, from the fleet's default", (c) => (c.metrics = { allowFrom: "203.0.113.5", port: 22 }), "stateCollection.port", /22 is already metrics\.port \(the fleet's MetricsPort\)/],

    // Who may scrape the MetricsPort: tor's MetricsPortPolicy, which tor --verify-config does not check.
    ["the retired metricsPort", (c) => (c.relays[1].metricsPort = 9035), "relays[1].metricsPort", /was replaced by metrics: \{allowFrom/],
    ["a metrics source that is not an address", (c) => (c.relays[0].metrics = { allowFrom: "prometheus.example.net" }), "relays[0].metrics.allowFrom", /scraper's address or network/],
    ["a metrics source with host bits beyond its mask", (c) => (c.relays[0].metrics = { allowFrom: "203.0.113.5/24" }), "relays[0].metrics.allowFrom", /tor would read it as 203\.0\.113\.0\/24/],
    ["an IPv6 metrics source with host bits beyond its mask", (c) => (c.relays[0].metrics = { allowFrom: ["203.0.113.5", "2001:db8::5/64"] }), "relays[0].metrics.allowFrom[1]", /tor would read it as 2001:db8::\/64/],
    ["a metrics source open to everyone", (c) => (c.metrics = { allowFrom: "0.0.0.0/0" }), "metrics.allowFrom", /every address/],
    ["a metrics source with a prefix over 32", (c) => (c.relays[0].metrics = { allowFrom: "203.0.113.0/33" }), "relays[0].metrics.allowFrom", /prefix length for an IPv4 address/],
    ["a bracketed IPv6 metrics source", (c) => (c.relays[0].metrics = { allowFrom: "[2001:db8::5]" }), "relays[0].metrics.allowFrom", /without brackets/],
    ["a metrics source with a zone id", (c) => (c.relays[0].metrics = { allowFrom: "fe80::1%eth0" }), "relays[0].metrics.allowFrom", /zone ids/],
    ["a metrics source that adds a torrc line", (c) => (c.relays[0].metrics = { allowFrom: "203.0.113.5\nExitPolicy accept *:*" }), "relays[0].metrics.allowFrom", /scraper's address/],
    ["an empty list of metrics sources", (c) => (c.relays[0].metrics = { allowFrom: [] }), "relays[0].metrics.allowFrom", /at least one/],
    ["an IPv6 metrics source for a relay without IPv6", (c) => (c.metrics = { allowFrom: ["2001:db8::5"] }), "relays[1].metrics.allowFrom[0]", /from the fleet's metrics\.allowFrom\) is IPv6, but the relay has no ipv6 address/],
    ["a misspelled metrics setting", (c) => (c.relays[0].metrics = { allowFrom: "203.0.113.5", prot: 9035 }), "relays[0].metrics.prot", /not a known setting/],
    ["a DirPort shared with the ORPort", (c) => (c.relays[1].dirPort = 9001), "relays[1].dirPort", /already the relay's orPort/],
    ["an ORPort on the SSH port", (c) => (c.relays[1].orPort = 22), "relays[1].orPort", /22 is already stateCollection\.port \(the fleet's SSH port\)/],

    // The kernel command line cannot take over the relay's boot.
    ["init= on the kernel command line", (c) => (c.image = { kernelCmdline: "console=ttyS0 init=/bin/sh" }), "image.kernelCmdline", /must not set init=/],
    ["rdinit= on the kernel command line", (c) => (c.image = { kernelCmdline: "rdinit=/bin/sh" }), "image.kernelCmdline", /must not set rdinit=/],
    ["a quoted kernel parameter", (c) => (c.image = { kernelCmdline: 'console=ttyS0 "init=/bin/sh"' }), "image.kernelCmdline", /quotes/],
    ["an extra initrd on the kernel command line", (c) => (c.image = { kernelCmdline: "console=ttyS0 initrd=\\EFI\\extra.img" }), "image.kernelCmdline", /initrd=/],
    ["a Unicode line separator in contactInfo", (c) => (c.relays[0].contactInfo = "ops@example.org\u2028ExitPolicy accept *:*"), "relays[0].contactInfo", /one line/],
    ["init arguments on the kernel command line", (c) => (c.image = { kernelCmdline: "console=ttyS0 -- single" }), "image.kernelCmdline", /--/],
    ["a newline on the kernel command line", (c) => (c.image = { kernelCmdline: "console=ttyS0\ninit=/bin/sh" }), "image.kernelCmdline", /one line/],

    // Exits keep their users' lookups away from the big public resolvers.
    ["an exit resolving through Google", (c) => (c.relays[0].nameservers = ["198.51.100.53", "8.8.8.8"]), "relays[0].nameservers[1]", /Google/],
    ["an exit resolving through Cloudflare, spelled long", (c) => (c.relays[0].nameservers = ["2606:4700:4700:0:0:0:0:1111"]), "relays[0].nameservers[0]", /Cloudflare/],
    ["an exit resolving through Quad9", (c) => (c.relays[0].nameservers = ["9.9.9.9"]), "relays[0].nameservers[0]", /Quad9/],
    ["an exit resolving through OpenDNS", (c) => (c.relays[0].nameservers = ["208.67.222.222"]), "relays[0].nameservers[0]", /OpenDNS/],
    ["an exit resolving through Level 3", (c) => (c.relays[0].nameservers = ["4.2.2.2"]), "relays[0].nameservers[0]", /Level3/],

    // Values that once reached a shell.
    ["a shell command in sshHost", (c) => (c.relays[0].sshHost = "127.0.0.1; touch pwned #"), "relays[0].sshHost", /host name or an IP address/],
    ["a shell command in the datastore", (c) => (c.proxmox.datastore = "local;touch pwned"), "proxmox.datastore", /storage id/],
    ["a shell command in the bridge", (c) => (c.relays[0].bridge = "vmbr0 $(id)"), "relays[0].bridge", /bridge name/],
    ["a node name with spaces", (c) => (c.relays[0].node = "pve1 pve2"), "relays[0].node", /node/],
    ["a newline in buildDir", (c) => (c.buildDir = "build\nrm"), "buildDir", /one line/],
    ["a newline in keysDir", (c) => (c.relays[0].keysDir = "keys/x\n"), "relays[0].keysDir", /one line/],
    ["a newline in the collection key path", (c) => (c.stateCollection = { privateKeyFile: "k\n" }), "stateCollection.privateKeyFile", /one line/],
    ["a health timeout too short to boot", (c) => (c.rollout = { healthTimeoutSeconds: 5 }), "rollout.healthTimeoutSeconds", /at least 30/],
    // Exit notice and hardening.
    ["a newline in the exit notice's file", (c) => (c.relays[0].exit.notice = { file: "notice.html\nx" }), "relays[0].exit.notice.file", /one line/],
    ["an exit notice file on a non-exit", (c) => (c.relays[1].exit = { enabled: false, notice: { file: "notice.html" } }), "relays[1].exit.notice.file", /not an exit/],
    ["an exit notice on the ORPort's port", (c) => (c.relays[0].orPort = 80), "relays[0].exit.notice", /80 is already the relay's orPort/],
    ["a per-source ORPort limit below 4 relays", (c) => (c.relays[1].limits = { orPort: { connections: 2, newPerMinute: 8 } }), "relays[1].limits.orPort.connections", /at least 4: tor allows up to 4 relays per IPv4 address/],
    ["a per-source rate below 4 relays", (c) => (c.relays[0].limits = { exitNotice: { connections: 8, newPerMinute: 1 } }), "relays[0].limits.exitNotice.newPerMinute", /at least 4/],
    ["an unknown limit", (c) => (c.relays[0].limits = { orPort: { connections: 8, newPerMinute: 8, burst: 3 } }), "relays[0].limits.orPort.burst", /not a known setting/],
    ["an IPv6 source prefix shorter than /32", (c) => (c.relays[0].limits = { ipv6SourcePrefix: 16 }), "relays[0].limits.ipv6SourcePrefix", /32–128/],
    ["a conntrack table over a quarter of the RAM", (c) => (c.relays[0].limits = { conntrackMax: 2 ** 21 }), "relays[0].limits.conntrackMax", /more than a quarter of the relay's 1024 MiB.*default, 262144/],
    ["an open-file limit over fs.nr_open", (c) => (c.relays[0].limits = { openFiles: 2 ** 21 }), "relays[0].limits.openFiles", /at most 1048576/],
  ];

  it.each(cases)("rejects %s, naming the field", (_what, mutate, path, rule) => {
    const problems = problemsOf(mutate);
    const problem = problems.find((p) => p.path === path);
    expect(problem, `no problem reported at ${path}; got ${JSON.stringify(problems)}`).toBeDefined();
    expect(problem!.message).toMatch(rule);
  });

  it("accepts paths with spaces, quotes and $(…): they reach tools as single arguments", () => {
    const config = parseStackConfig({
      ...validProxmoxConfig(),
      buildDir: "/srv/relay build/$(touch pwned)",
      keyStore: "keys 'store'",
      stateCollection: { privateKeyFile: "keys/coll ector/$(id)" },
    });
    expect(config.buildDir).toBe("/srv/relay build/$(touch pwned)");
  });

  it("exposes no MetricsPort by default; a fleet-wide metrics setting, a relay's own, and false", () => {
    expect(parseStackConfig(validProxmoxConfig()).relays.map((relay) => relay.metrics)).toEqual([undefined, undefined]);
    const fleet = { ...validProxmoxConfig(), metrics: { allowFrom: "203.0.113.5" } } as Config;
    expect(parseStackConfig(fleet).relays.map((relay) => relay.metrics)).toEqual([
      { allowFrom: ["203.0.113.5"], port: 9035 },
      { allowFrom: ["203.0.113.5"], port: 9035 },
    ]);
    fleet.relays[0].metrics = { allowFrom: ["203.0.113.0/28", "2001:db8:1::/48"], port: 9100 };
    fleet.relays[1].metrics = false;
    expect(parseStackConfig(fleet).relays.map((relay) => relay.metrics)).toEqual([{ allowFrom: ["203.0.113.0/28", "2001:db8:1::/48"], port: 9100 }, undefined]);
  });

  it("lets an exit name no resolver: its own resolver then resolves from the root", () => {
    const base = validProxmoxConfig() as Config;
    base.relays[0].nameservers = [];
    expect(parseStackConfig(base).relays[0]!.nameservers).toEqual([]);
  });

  it("accepts an off-subnet gateway marked onLink, and a link-local IPv6 gateway", () => {
    const base = validProxmoxConfig() as Config;
    base.relays[0].ipv4 = { address: "198.51.100.11/32", gateway: "198.51.100.1", onLink: true };
    base.relays[0].ipv6 = { address: "2001:db8::11/64", gateway: "fe80::1" };
    const config = parseStackConfig(base);
    expect(config.relays[0]!.ipv4.onLink).toBe(true);
    expect(config.relays[0]!.ipv6!.onLink).toBe(false);
  });

  it("accepts tor's own spellings of bandwidths and policies", () => {
    const base = validProxmoxConfig() as Config;
    base.relays[0].bandwidth = { rate: "800 Mbits", burst: "100 MBytes" };
    base.relays[0].exit = { enabled: true, policy: ["reject private:*", "accept6 [2001:db8::]/32:6660-6669", "accept *4:443", "reject *:*"] };
    expect(parseStackConfig(base).relays[0]!.exit.policy).toHaveLength(4);
  });

  it("reports a misspelled top-level key of the project's config", () => {
    const all = Object.fromEntries(Object.entries(validProxmoxConfig()).map(([key, value]) => [`diskless-relays:${key}`, JSON.stringify(value)]));
    all["diskless-relays:rolout"] = JSON.stringify({ maxParallel: 2 });
    all["proxmoxve:endpoint"] = "https://other"; // another namespace: not ours to judge
    all["diskless-relays:proxmoxApiToken"] = "pulumi@pve!ci=0a1b2c3d-0000-4000-8000-000000000000";
    // The refusal is asserted outside the catch: a parse that passed fails here, saying so.
    let refusal: unknown;
    try {
      parseStackConfig(projectConfigObject(all, "diskless-relays"));
    } catch (err) {
      refusal = err;
    }
    expect(refusal).toBeInstanceOf(ConfigError);
    expect((refusal as ConfigError).problems).toEqual([{ path: "rolout", message: "is not a known setting (a typo?)" }]);
  });

  it("reports every bad field at once, each with its path", () => {
    const problems = problemsOf((c) => {
      c.relays[0].nickname = "bad nickname";
      c.relays[1].mac = "nope";
      c.proxmox.datastore = "";
    });
    expect(problems.map((p) => p.path).sort()).toEqual(["proxmox.datastore", "relays[0].nickname", "relays[1].mac"]);
  });

  it("never echoes the API token in its message", () => {
    const token = "root@pam!x=not a valid secret";
    // The refusal itself is asserted outside any catch: a parse that passed would fail here.
    let refusal: unknown;
    try {
      parseStackConfig({ ...validProxmoxConfig(), proxmoxApiToken: token });
    } catch (err) {
      refusal = err;
    }
    expect(refusal).toBeInstanceOf(ConfigError);
    expect((refusal as ConfigError).problems.map((p) => p.path)).toEqual(["proxmoxApiToken"]);
    expect((refusal as Error).message).not.toContain("not a valid secret");
  });
});

describe("formatConfigPath", () => {
  it("writes paths the way `pulumi config set --path` takes them", () => {
    expect(formatConfigPath(["relays", 2, "ipv4", "address"])).toBe("relays[2].ipv4.address");
    expect(formatConfigPath(["proxmox", "nodes", 0])).toBe("proxmox.nodes[0]");
  });
});
