import { describe, expect, it } from "vitest";
import { ConfigError, formatConfigPath, parseStackConfig } from "../lib/config";

function validConfig() {
  return {
    proxmox: {
      endpoint: "https://pve.example.net:8006",
      nodes: ["pve1", "pve2"],
      datastore: "local",
      bridge: "vmbr0",
    },
    proxmoxApiToken: "pulumi@pve!ci=0a1b2c3d-0000-4000-8000-000000000000",
    stateCollection: { privateKeyFile: "keys/collector/id_ed25519" },
    relays: [
      {
        name: "exit-1",
        nickname: "ExitOne",
        node: "pve1",
        vmId: 9101,
        mac: "BC:24:11:00:00:01",
        ipv4: { address: "198.51.100.11/24", gateway: "198.51.100.1" },
        ipv6: { address: "2001:db8::11/64", gateway: "2001:db8::1" },
        exit: { enabled: true },
        nameservers: ["198.51.100.53"],
        contactInfo: "abuse@example.net",
      },
      {
        name: "guard-1",
        nickname: "GuardOne",
        node: "pve2",
        vmId: 9102,
        mac: "BC:24:11:00:00:02",
        ipv4: { address: "198.51.100.12/24", gateway: "198.51.100.1" },
        orPort: 9001,
        contactInfo: "abuse@example.net",
      },
    ],
  };
}

// Loosely typed on purpose: the cases write values the schema must reject.
type Config = { [key: string]: any; relays: any[]; proxmox: any };

/** Parses a mutated valid config and returns the problems it reports. */
function problemsOf(mutate: (config: Config) => void) {
  const config = validConfig() as Config;
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
    const config = parseStackConfig(validConfig());
    expect(config.image.flavour).toBe("alpine");
    expect(config.proxmox!.verifyTls).toBe(true);
    expect(config.target).toBe("proxmox");
    expect(config.relays[0]!.orPort).toBe(443);
    expect(config.relays[1]!.exit.enabled).toBe(false);
    expect(config.relays[0]!.allowFreshOnionKeys).toBe(false);
    expect(config.stateCollection.user).toBe("root");
    expect(config.certificate).toEqual({ errorDays: 2, warnDays: 10 });
    expect(config.rollout.maxParallel).toBe(1);
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
    ["bad exit policy line", (c) => (c.relays[0].exit = { enabled: true, policy: ["allow *:80"] }), "relays[0].exit.policy[0]", /ExitPolicy line/],
    ["bandwidth without a unit", (c) => (c.relays[0].bandwidth = { rate: "100", burst: "200 MBytes" }), "relays[0].bandwidth.rate", /tor bandwidth/],
    ["plain-http endpoint", (c) => (c.proxmox.endpoint = "http://pve.example.net:8006"), "proxmox.endpoint", /https/],
    ["malformed API token", (c) => (c.proxmoxApiToken = "root:hunter2"), "proxmoxApiToken", /USER@REALM!TOKENID=SECRET/],
    ["unknown flavour", (c) => (c.image = { flavour: "arch" }), "image.flavour", /alpine.*debian/],
    ["typo in a relay key", (c) => ((c.relays[0] as any).nickName = "x"), "relays[0].nickName", /not a known setting/],
    ["no relays", (c) => (c.relays = []), "relays", /at least one relay/],
    ["SNP with debugging allowed", (c) => ((c.relays[0] as any).sev = { enabled: true, noDebug: false }), "relays[0].sev.noDebug", /debugging/],
    ["warn window shorter than error window", (c) => (c.certificate = { errorDays: 5, warnDays: 3 }), "certificate.warnDays", /at least errorDays/],
    ["exit without a resolver", (c) => (c.relays[0].nameservers = []), "relays[0].nameservers", /at least one resolver/],
    ["bad resolver address", (c) => (c.relays[1].nameservers = ["dns.example"]), "relays[1].nameservers[0]", /IP address/],
    ["maxParallel zero", (c) => (c.rollout = { maxParallel: 0 }), "rollout.maxParallel", /at least 1/],
    ["proxmox target without its token", (c) => delete (c as any).proxmoxApiToken, "proxmoxApiToken", /required when target is proxmox/],
    ["qemu target without forwarded ports", (c) => (c.target = "qemu"), "relays[0].sshPort", /required when target is qemu/],
    [
      "qemu target with a port forwarded twice",
      (c) => {
        c.target = "qemu";
        Object.assign(c.relays[0], { sshPort: 2201, localOrPort: 9101 });
        Object.assign(c.relays[1], { sshPort: 9101, localOrPort: 9102 });
      },
      "relays[1].sshPort",
      /duplicate local port "9101"/,
    ],
    ["missing collection key", (c) => (c.stateCollection = {}), "stateCollection.privateKeyFile", /is required/],
  ];

  it.each(cases)("rejects %s, naming the field", (_what, mutate, path, rule) => {
    const problems = problemsOf(mutate);
    const problem = problems.find((p) => p.path === path);
    expect(problem, `no problem reported at ${path}; got ${JSON.stringify(problems)}`).toBeDefined();
    expect(problem!.message).toMatch(rule);
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
    try {
      parseStackConfig({ ...validConfig(), proxmoxApiToken: token });
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).not.toContain("not a valid secret");
    }
  });
});

describe("formatConfigPath", () => {
  it("writes paths the way `pulumi config set --path` takes them", () => {
    expect(formatConfigPath(["relays", 2, "ipv4", "address"])).toBe("relays[2].ipv4.address");
    expect(formatConfigPath(["proxmox", "nodes", 0])).toBe("proxmox.nodes[0]");
  });
});
