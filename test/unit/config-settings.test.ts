/**
 * Settings as Pulumi hands them over, judged by lib/config/config.ts: text stays
 * text, memory has Proxmox VE's ceiling, the broker is never reached on
 * loopback outside the local stack, credentials are secrets, and a port clash
 * names the field that holds the port.
 */
import { copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loopbackHostOf, parseStackConfig, projectConfigObject } from "../../lib/config/config";
import { readStackConfigFile } from "../../lib/config/stack-file";
import { privateTmpDir } from "../support/tmp";
import { repoRoot } from "../support/pulumi";
import { validProxmoxConfig } from "../support/fleet";

const TOKEN = "pulumi@pve!ci=0a1b2c3d-0000-4000-8000-000000000000";


/** The problems of a config, as "path: message" lines; [] when it parses. */
function problemsOf(raw: unknown, options: Parameters<typeof parseStackConfig>[1] = {}): string[] {
  try {
    parseStackConfig(raw, options);
    return [];
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems.map((p) => `${p.path}: ${p.message}`);
  }
}

/** The config as Pulumi hands it to the program: every value as text, objects as JSON. */
const asPulumiGivesIt = (config: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(config).map(([key, value]) => [`diskless-relays:${key}`, typeof value === "string" ? value : JSON.stringify(value)]));

describe("text settings stay text, whatever they look like", () => {
  it.each([
    ["keyStore", "1234"],
    ["buildDir", "true"],
    ["keyStore", "1e3"],
    ["buildDir", "null"],
    ["proxmoxApiToken", TOKEN],
  ])("%s: %s", (key, value) => {
    const raw = projectConfigObject(asPulumiGivesIt({ ...validProxmoxConfig(), [key]: value }), "diskless-relays");
    expect(raw[key]).toBe(value);
    expect(parseStackConfig(raw)[key as "keyStore"]).toBe(value);
  });

  it("keeps a numeric-looking nickname and release text inside objects", () => {
    const config = validProxmoxConfig();
    config.relays[0].nickname = "12345";
    config.image = { release: "12" };
    const parsed = parseStackConfig(projectConfigObject(asPulumiGivesIt(config), "diskless-relays"));
    expect(parsed.relays[0]!.nickname).toBe("12345");
    expect(parsed.image.release).toBe("12");
  });

  it("asks for quotes where the YAML made a number of text", () => {
    const config = validProxmoxConfig();
    config.relays[0].nickname = 12345;
    config.image = { release: 12 };
    expect(problemsOf(projectConfigObject(asPulumiGivesIt(config), "diskless-relays"))).toEqual([
      'image.release: must be text, got a number: quote the value in the stack\'s YAML (e.g. "12") so that it stays text',
      'relays[0].nickname: must be text, got a number: quote the value in the stack\'s YAML (e.g. "12") so that it stays text',
    ]);
  });

  it("still reads objects, lists, numbers and booleans of the other settings", () => {
    const raw = projectConfigObject(asPulumiGivesIt({ ...validProxmoxConfig(), rollout: { maxParallel: 2, rollback: false } }), "diskless-relays");
    expect(parseStackConfig(raw).rollout).toMatchObject({ maxParallel: 2, rollback: false });
  });
});

describe("memoryMiB", () => {
  it.each([[1e12], [4_194_305], [2 ** 53]])("refuses %d MiB, more than Proxmox VE gives a VM", (memoryMiB) => {
    const config = validProxmoxConfig();
    config.relays[0].memoryMiB = memoryMiB;
    expect(problemsOf(config)).toEqual(["relays[0].memoryMiB: must be at most 4194304 MiB (4 TiB), the most Proxmox VE gives a VM"]);
  });

  it("takes Proxmox VE's maximum itself", () => {
    const config = validProxmoxConfig();
    config.relays[0].memoryMiB = 4_194_304;
    expect(problemsOf(config)).toEqual([]);
  });
});

describe("image.compressLevel", () => {
  it("is 19 unless set: the smallest image", () => {
    expect(parseStackConfig(validProxmoxConfig()).image.compressLevel).toBe(19);
  });

  it.each([[0], [20], [22], [-3]])("refuses %s, which is no level zstd takes without --ultra", (compressLevel) => {
    const config = { ...validProxmoxConfig(), image: { flavour: "debian", compressLevel } };
    expect(problemsOf(config)).toEqual(["image.compressLevel: must be a zstd level from 1 to 19 (19, the default, makes the smallest image)"]);
  });

  it.each([
    [2.5, "must be integer, got float"],
    ["-19 --ultra", "must be number, got string"],
  ])("refuses %j, which is no level (text could reach zstd as an option)", (compressLevel, message) => {
    const config = { ...validProxmoxConfig(), image: { flavour: "debian", compressLevel } };
    expect(problemsOf(config)).toEqual([`image.compressLevel: ${message}`]);
  });
});

describe("identity.broker.url on loopback", () => {
  const BROKER = {
    admin: { url: "https://broker.example.net:8444", tokenFile: "keys/broker-admin.token" },
    signingPublicKey: Buffer.alloc(32, 7).toString("base64"),
    pushRecipient: "age1" + "q".repeat(58),
    attestation: "none",
  };
  const withBroker = (url: string, target: "proxmox" | "qemu" = "proxmox") => {
    const config = { ...validProxmoxConfig(), identity: { mode: "broker", broker: { ...BROKER, url } } };
    return target === "qemu" ? { ...config, target, testnet: {}, proxmox: undefined, proxmoxApiToken: undefined } : config;
  };

  it.each([
    "https://127.0.0.1:8443",
    "http://127.0.0.1:8443",
    "https://127.8.9.10/",
    "https://127.1:8443",
    "https://0x7f.0.0.1:8443",
    "https://2130706433:8443",
    "https://localhost:8443",
    "https://LOCALHOST.:8443",
    "https://broker.localhost:8443",
    "https://[::1]:8443",
    "https://[0:0:0:0:0:0:0:1]:8443",
    "https://[::ffff:127.0.0.1]:8443",
    "https://[::ffff:7f00:2]:8443",
    "https://0.0.0.0:8443",
    "https://0:8443",
    "https://[::]:8443",
  ])("refuses %s on a Proxmox VE stack, naming the field", (url) => {
    const problems = problemsOf(withBroker(url));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^identity\.broker\.url: is on \S+, which every relay reads as itself: .*local stack \(target qemu\) only/);
  });

  it.each(["https://broker.example.net:8443", "https://198.51.100.7:8443", "https://[2001:db8::7]:8443", "https://128.0.0.1:8443", "https://[::ffff:198.51.100.7]:8443", "https://localhost.example.net:8443"])(
    "takes %s",
    (url) => {
      expect(loopbackHostOf(url)).toBeUndefined();
      expect(problemsOf(withBroker(url))).toEqual([]);
    },
  );

  it("lets the local stack reach its broker on loopback", () => {
    expect(problemsOf(withBroker("http://127.0.0.1:8443", "qemu"))).toEqual([]);
  });
});

describe("credentials are Pulumi secrets", () => {
  const withPassword = () => {
    const config = validProxmoxConfig();
    config.proxmoxRootPassword = "a root password";
    return config;
  };

  it("refuses a plaintext API token and root password, saying how to make them secrets and never showing them", () => {
    const problems = problemsOf(withPassword(), { secretKeys: new Set() });
    expect(problems).toEqual([
      expect.stringMatching(/^proxmoxApiToken: is stored in plain text, .*run `pulumi config set --secret proxmoxApiToken`; it asks for the value/),
      expect.stringMatching(/^proxmoxRootPassword: is stored in plain text, .*run `pulumi config set --secret proxmoxRootPassword`; it asks for the value/),
    ]);
    expect(problems.join("\n")).not.toContain(TOKEN.split("=")[1]);
    expect(problems.join("\n")).not.toContain("a root password");
  });

  it("takes them as secrets", () => {
    expect(problemsOf(withPassword(), { secretKeys: new Set(["proxmoxApiToken", "proxmoxRootPassword"]) })).toEqual([]);
    expect(problemsOf(withPassword(), { secretKeys: new Set(["proxmoxApiToken"]) })).toEqual([expect.stringMatching(/^proxmoxRootPassword: is stored in plain text/)]);
  });

  it("reports a plaintext credential with the config's other problems", () => {
    const config = validProxmoxConfig();
    config.relays[0].nickname = "not a nickname";
    expect(problemsOf(config, { secretKeys: new Set() })).toEqual([expect.stringMatching(/^proxmoxApiToken: is stored in plain text/), expect.stringMatching(/^relays\[0\]\.nickname: /)]);
  });
});

describe("a port clash names the field that holds the port", () => {
  const withRelay = (change: (relay: Record<string, any>) => void, fleet: Record<string, unknown> = {}) => {
    const config = { ...validProxmoxConfig(), ...fleet };
    change(config.relays[0]);
    return problemsOf(config);
  };

  it("reports a DirPort on the fleet's SSH port at the DirPort, naming stateCollection.port", () => {
    expect(withRelay((relay) => (relay.dirPort = 22))).toEqual(["relays[0].dirPort: 22 is already stateCollection.port (the fleet's SSH port); each service needs its own port"]);
    expect(withRelay((relay) => (relay.dirPort = 2222), { stateCollection: { privateKeyFile: "keys/collector", port: 2222 } })).toEqual([
      "relays[0].dirPort: 2222 is already stateCollection.port (the fleet's SSH port); each service needs its own port",
    ]);
  });

  it("reports on the relay's own sshPort when it set one", () => {
    expect(withRelay((relay) => Object.assign(relay, { dirPort: 2200, sshPort: 2200 }))).toEqual(["relays[0].sshPort: 2200 is already the relay's dirPort; each service needs its own port"]);
  });

  it("reports an ORPort on the fleet's MetricsPort at the ORPort, naming metrics.port", () => {
    expect(withRelay((relay) => (relay.orPort = 9035), { metrics: { allowFrom: "203.0.113.5", port: 9035 } })).toEqual([
      "relays[0].orPort: 9035 is already metrics.port (the fleet's MetricsPort); each service needs its own port",
    ]);
  });
});

describe("a stack's config read from its files (keys -- export-shipped)", () => {
  const dir = privateTmpDir("stack-file");
  copyFileSync(join(repoRoot, "Pulumi.yaml"), join(dir, "Pulumi.yaml"));
  /** Pulumi.s.yaml with `config` as YAML (JSON is YAML) and the API token as Pulumi writes a secret, or in plain text. */
  const write = (config: Record<string, unknown>, token: "secure" | "plain") => {
    const { proxmoxApiToken, ...rest } = config;
    const entries: Record<string, unknown> = Object.fromEntries(Object.entries(rest).map(([key, value]) => [`diskless-relays:${key}`, value]));
    entries["diskless-relays:proxmoxApiToken"] = token === "secure" ? { secure: "v1:AAAA:BBBB" } : proxmoxApiToken;
    writeFileSync(join(dir, "Pulumi.s.yaml"), `config: ${JSON.stringify(entries)}\n`);
  };

  it("takes the project's text defaults as text and a text keyStore as written", () => {
    write({ ...validProxmoxConfig(), keyStore: "1234" }, "secure");
    const config = readStackConfigFile(dir, "s");
    expect(config.target).toBe("proxmox");
    expect(config.buildDir).toBe("build");
    expect(config.keyStore).toBe("1234");
  });

  it("refuses an API token stored in plain text", () => {
    write(validProxmoxConfig(), "plain");
    expect(() => readStackConfigFile(dir, "s")).toThrow(/proxmoxApiToken: is stored in plain text/);
  });
});
