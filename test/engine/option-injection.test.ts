/**
 * Values stay data all the way: no name or path reaches a tool as an option,
 * what a line-oriented reader gets is printable ASCII, and every command a
 * message shows hands its values over as single shell words. The judges are
 * independent of the code under test: bash itself runs the hints, real tor
 * reads the free text, and Node's UTF-8 encoder says which characters carry
 * the byte 0xA0 the kernel takes for a space. (The tools' own option parsers
 * are run in test/engine/option-injection-up.test.ts.)
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, parseStackConfig } from "../../lib/config/config";
import { FleetError, planFleet } from "../../lib/plan/fleet";
import { renderNetworkEnv } from "../../lib/plan/image-inputs";
import { shellQuote } from "../../lib/core/shell-quote";
import { signFile } from "../../lib/image/signing";
import { parseStepSpec, relayChannelSpec, relayTargetSpec, launchSpec } from "../../lib/steps/steps";
import { renderTorrcLines } from "../../lib/render/torrc";
import { verifyTorrcsWithTor } from "../../lib/render/torrc-check";
import { TEST_BROKER_SETTINGS, validProxmoxConfig, validRelayConfig, type LooseConfig } from "../support/fleet";
import { privateTmpDir } from "../support/tmp";

const BROKER = TEST_BROKER_SETTINGS;
type Config = LooseConfig;

function problemsOf(mutate: (config: Config) => void): { path: string; message: string }[] {
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

const accepts = (mutate: (config: Config) => void) => {
  const config = validProxmoxConfig() as Config;
  mutate(config);
  return parseStackConfig(config);
};

describe("the config refuses every name and path a tool would read as an option", () => {
  const sev = { enabled: true, ovmf: "ovmf.fd", ovmfSha256: "0".repeat(64) };
  it.each<[string, (c: Config) => void, string]>([
    ["the issue's release", (c) => (c.image = { release: "--setup-hook" }), "image.release"],
    ["a dry-run release", (c) => (c.image = { release: "--dry-run" }), "image.release"],
    ["a customize hook as the release", (c) => (c.image = { release: "--customize-hook" }), "image.release"],
    ["a short option as the release", (c) => (c.image = { release: "-v" }), "image.release"],
    ["an apt option as a package", (c) => (c.image = { extraPackages: ["-oAPT::Get::AllowUnauthenticated=true"] }), "image.extraPackages[0]"],
    ["a package apt would remove", (c) => (c.image = { extraPackages: ["tor-"] }), "image.extraPackages[0]"],
    ["a relay name", (c) => (c.relays[0].name = "-exit"), "relays[0].name"],
    ["a nickname", (c) => (c.relays[0].nickname = "-Exit"), "relays[0].nickname"],
    ["a node", (c) => (c.relays[0].node = "-pve1"), "relays[0].node"],
    ["a node of the cluster", (c) => (c.proxmox.nodes = ["-pve1"]), "proxmox.nodes[0]"],
    ["the datastore", (c) => (c.proxmox.datastore = "-local"), "proxmox.datastore"],
    ["the default bridge", (c) => (c.proxmox.bridge = "-vmbr0"), "proxmox.bridge"],
    ["a relay's bridge", (c) => (c.relays[0].bridge = "--help"), "relays[0].bridge"],
    ["a family", (c) => (c.relays[0].family = "-fam"), "relays[0].family"],
    ["a CPU model", (c) => (c.relays[0].cpuType = "-cpu"), "relays[0].cpuType"],
    ["a vCPU model", (c) => Object.assign(c, { proxmoxRootPassword: "pw" }) && (c.relays[0].sev = { ...sev, vcpuType: "-EPYC-v4" }), "relays[0].sev.vcpuType"],
    ["the collection user", (c) => (c.stateCollection.user = "-oProxyCommand=sh"), "stateCollection.user"],
    ["the key store", (c) => (c.keyStore = "-keys"), "keyStore"],
    ["the build directory", (c) => (c.buildDir = "--setup-hook"), "buildDir"],
    ["a build directory that ./ hides", (c) => (c.buildDir = "./-b"), "buildDir"],
    ["a build directory that ../ hides", (c) => (c.buildDir = "b/../-b"), "buildDir"],
    ["a relay's key directory", (c) => (c.relays[0].keysDir = "-keys/exit-1"), "relays[0].keysDir"],
    ["the collection key", (c) => (c.stateCollection.privateKeyFile = "-i"), "stateCollection.privateKeyFile"],
    ["the image signing key", (c) => (c.image = { signingKeyFile: "-signing" }), "image.signingKeyFile"],
    ["the Secure Boot key", (c) => (c.image = { secureBoot: { privateKeyFile: "-db.key", certificateFile: "db.crt" } }), "image.secureBoot.privateKeyFile"],
    ["the Secure Boot certificate", (c) => (c.image = { secureBoot: { privateKeyFile: "db.key", certificateFile: "--db.crt" } }), "image.secureBoot.certificateFile"],
    ["the OVMF file", (c) => Object.assign(c, { proxmoxRootPassword: "pw" }) && (c.relays[0].sev = { ...sev, ovmf: "-ovmf.fd" }), "relays[0].sev.ovmf"],
    ["the broker's CA", (c) => (c.identity = { mode: "broker", broker: { ...BROKER, caFile: "-ca.pem" } }), "identity.broker.caFile"],
    ["the broker's admin token", (c) => (c.identity = { mode: "broker", broker: { ...BROKER, admin: { ...BROKER.admin, tokenFile: "-token" } } }), "identity.broker.admin.tokenFile"],
    ["the testnet's directory", (c) => Object.assign(c, { target: "qemu", testnet: { dir: "-testnet" } }), "testnet.dir"],
  ])("%s", (_label, mutate, path) => {
    const problems = problemsOf(mutate);
    expect(problems.map((p) => p.path)).toContain(path);
    // The message says why; a nickname's is tor's own rule, which has no "-" at all.
    expect(problems.find((p) => p.path === path)!.message).toMatch(/begin|start|option|Nickname rule/);
  });

  it("takes a path whose dash is past its first component, or absolute, and any other character in a path", () => {
    const config = accepts((c) => Object.assign(c, { buildDir: "/srv/-build", keyStore: "keys/-store", stateCollection: { privateKeyFile: "/k/-collector" } }));
    expect([config.buildDir, config.keyStore, config.stateCollection.privateKeyFile]).toEqual(["/srv/-build", "keys/-store", "/k/-collector"]);
    // The build directory is a path like any other: it reaches tools as one argument, never as shell text.
    expect(accepts((c) => (c.buildDir = "b;touch /tmp/x;#")).buildDir).toBe("b;touch /tmp/x;#");
  });

  it("takes real releases, branches and package names", () => {
    expect(accepts((c) => (c.image = { release: "bookworm", extraPackages: ["g++", "libc6.1", "tor-geoipdb"] })).image.extraPackages).toEqual(["g++", "libc6.1", "tor-geoipdb"]);
    expect(accepts((c) => (c.image = { flavour: "alpine", release: "v3.23" })).image.release).toBe("v3.23");
  });
});

describe("the step specs refuse the same, so the step refuses even if the plan's checks were bypassed", () => {
  const base = { flavour: "debian", release: "bookworm", geoip: false, extraPackages: [], torUser: "debian-tor", sourceDateEpoch: 1_767_225_600, compressLevel: 19, dir: "build/base/debian-0" };
  const recipe = {
    relay: "r1",
    nickname: "RelayOne",
    imageDigest: "0".repeat(64),
    baseDir: "build/base",
    keysDir: "keys/r1",
    collectedDir: "build/c",
    outDir: "build/o",
    torrc: "Nickname RelayOne\nContactInfo ops@example.org\n",
    networkEnv: "RELAY_NICKNAME=RelayOne\n",
    kernelCmdline: "console=ttyS0 panic=10",
  };
  const channel = { host: "198.51.100.10", port: 22, user: "root", privateKeyFile: "keys/collector", hostPublicKey: "ssh-ed25519 AAAA", connectTimeoutSeconds: 5 };
  const proxmoxTarget = { kind: "proxmox", endpoint: "https://pve.example.net:8006", verifyTls: true, node: "pve1", vmId: 9101, datastore: "local" };

  it("accepts the valid specs the cases start from", () => {
    expect(() => parseStepSpec("build-base", base)).not.toThrow();
    expect(() => parseStepSpec("build-relay-image", recipe)).not.toThrow();
    expect(relayChannelSpec.safeParse(channel).success).toBe(true);
    expect(relayTargetSpec.safeParse(proxmoxTarget).success).toBe(true);
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ["the issue's release", { release: "--setup-hook" }, /release/],
    ["a dry-run release", { release: "--dry-run" }, /release/],
    ["an apt option as a package", { extraPackages: ["-oDebug::pkgProblemResolver=1"] }, /extraPackages\.0/],
    ["a base directory that is an option", { dir: "--setup-hook" }, /dir: must not begin with "-"/],
    ["a base directory that ./ hides", { dir: "./-base" }, /dir: must not begin with "-"/],
    ["a zstd level that is an option", { compressLevel: "--ultra" }, /compressLevel/],
    ["a zstd level zstd takes only with --ultra", { compressLevel: 22 }, /compressLevel/],
  ])("build-base: %s", (_label, change, message) => {
    expect(() => parseStepSpec("build-base", { ...base, ...change })).toThrow(message);
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ["a kernel command line with U+00A0", { kernelCmdline: "panic=10\u00a0rdinit=/bin/sh" }, /kernelCmdline: must be printable ASCII/],
    ["a network file with U+2003", { networkEnv: "RELAY_IPV4=198.51.100.10/24\u2003\n" }, /networkEnv/],
    ["a torrc line, other than ContactInfo, with U+00A0", { torrc: "Nickname RelayOne\nExitPolicy\u00a0accept *:*\n" }, /torrc/],
    ["a ContactInfo with a line separator", { torrc: "ContactInfo ops\u2028ExitPolicy accept *:*\n" }, /torrc/],
    ["a resolver configuration with U+3000", { resolverConf: "server:\n  forward-addr:\u30001.2.3.4\n" }, /resolverConf/],
    ["an output directory that is an option", { outDir: "-o" }, /outDir: must not begin with "-"/],
    ["a Secure Boot key that is an option", { secureBoot: { privateKeyFile: "--db.key", certificateFile: "db.crt" } }, /secureBoot\.privateKeyFile/],
  ])("build-relay-image: %s", (_label, change, message) => {
    expect(() => parseStepSpec("build-relay-image", { ...recipe, ...change })).toThrow(message);
  });

  it("build-relay-image: a ContactInfo in any text tor takes passes", () => {
    expect(() => parseStepSpec("build-relay-image", { ...recipe, torrc: "Nickname RelayOne\nContactInfo Zoë \u00a0☕ ops@example.org\n" })).not.toThrow();
  });

  it.each<[string, () => boolean]>([
    ["an ssh host that is an option", () => relayChannelSpec.safeParse({ ...channel, host: "-oProxyCommand=sh" }).success],
    ["a key file that is an option", () => relayChannelSpec.safeParse({ ...channel, privateKeyFile: "-F/dev/null" }).success],
    ["a Proxmox node that is an option", () => relayTargetSpec.safeParse({ ...proxmoxTarget, node: "-pve1" }).success],
    ["a Proxmox datastore that is an option", () => relayTargetSpec.safeParse({ ...proxmoxTarget, datastore: "-local" }).success],
    ["a vCPU model that is an option", () => launchSpec.safeParse({ ovmf: "ovmf.fd", vcpus: 2, vcpuType: "-EPYC" }).success],
    [
      "a node to prune ISOs on that is an option",
      () => {
        try {
          parseStepSpec("prune-isos", { endpoint: "https://pve.example.net:8006", verifyTls: true, node: "-pve1", datastore: "local", nickname: "RelayOne", keep: 2, currentVolid: "local:iso/x.iso" });
          return true;
        } catch {
          return false;
        }
      },
    ],
  ])("%s", (_label, accepted) => {
    expect(accepted()).toBe(false);
  });
});

/**
 * Unicode's white space (UAX #44 White_Space, and the zero-width ones
 * editors paste) and characters whose UTF-8 holds the byte 0xA0, which the
 * kernel's command-line parser takes for a space.
 */
const UNICODE_SPACES = [
  "\u00a0", "\u0085", "\u1680", "\u180e", "\u2000", "\u2001", "\u2002", "\u2003", "\u2004", "\u2005", "\u2006", "\u2007", "\u2008", "\u2009", "\u200a",
  "\u200b", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\ufeff",
];
const HOLDING_0XA0 = ["\u00e0", "\u2020", "\u20a0", "\u0420"];

describe("the kernel command line is printable ASCII", () => {
  it("refuses the issue's example, naming the field and the character", () => {
    const problems = problemsOf((c) => (c.image = { kernelCmdline: "panic=10\u00a0rdinit=/bin/sh" }));
    expect(problems).toEqual([{ path: "image.kernelCmdline", message: expect.stringMatching(/^must be printable ASCII .*U\+00A0 at character 9.*0xA0/) }]);
  });

  it.each(UNICODE_SPACES.map((space) => [`U+${space.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`, space]))("refuses %s between two parameters", (name, space) => {
    const problems = problemsOf((c) => (c.image = { kernelCmdline: `console=ttyS0${space}init=/bin/sh` }));
    expect(problems.map((p) => p.path)).toEqual(["image.kernelCmdline"]);
    expect(problems[0]!.message).toContain(`${name} at character 14`);
  });

  it.each(HOLDING_0XA0)("refuses %s, whose UTF-8 holds the byte 0xA0", (char) => {
    expect([...Buffer.from(char, "utf8")]).toContain(0xa0);
    expect(problemsOf((c) => (c.image = { kernelCmdline: `console=ttyS0 x=${char}rdinit=/bin/sh` })).map((p) => p.path)).toEqual(["image.kernelCmdline"]);
  });

  it("takes a command line of printable ASCII", () => {
    expect(accepts((c) => (c.image = { kernelCmdline: "console=ttyS0,115200 panic=10 quiet loglevel=3 ~ok" })).image.kernelCmdline).toBe("console=ttyS0,115200 panic=10 quiet loglevel=3 ~ok");
  });
});

describe("what reaches a line-oriented reader is printable ASCII; ContactInfo may be any text tor takes", () => {
  it.each<[string, (c: Config) => void, string]>([
    ["an exit policy", (c) => (c.relays[0].exit = { enabled: true, policy: ["accept\u00a0*:443", "reject *:*"] }), "relays[0].exit.policy[0]"],
    ["an exit policy (ideographic space)", (c) => (c.relays[0].exit = { enabled: true, policy: ["accept *:443\u3000", "reject *:*"] }), "relays[0].exit.policy[0]"],
    ["a bandwidth", (c) => (c.relays[0].bandwidth = { rate: "10\u2009MBytes", burst: "20 MBytes" }), "relays[0].bandwidth.rate"],
    ["a metrics source", (c) => (c.metrics = { allowFrom: ["203.0.113.5\u200b"] }), "metrics.allowFrom[0]"],
    ["a nameserver", (c) => (c.relays[0].nameservers = ["198.51.100.53\ufeff"]), "relays[0].nameservers[0]"],
    ["the ssh host", (c) => (c.relays[0].sshHost = "relay\u00a0.example.net"), "relays[0].sshHost"],
    ["the broker's url", (c) => (c.identity = { mode: "broker", broker: { ...BROKER, url: "https://bröker.example.net:8443" } }), "identity.broker.url"],
    ["the Proxmox VE endpoint", (c) => (c.proxmox.endpoint = "https://pvé.example.net:8006"), "proxmox.endpoint"],
    ["a MAC address", (c) => (c.relays[0].mac = "BC:24:11:00:00:0\u0661"), "relays[0].mac"],
  ])("refuses %s with a character beyond ASCII, naming the field once", (_label, mutate, path) => {
    const problems = problemsOf(mutate);
    expect(problems.filter((p) => p.path === path)).toHaveLength(1);
  });

  it("takes Unicode in ContactInfo, and real tor takes the torrc it makes", () => {
    const contactInfo = "Zoë Müller \u00a0☕ email:ops[]example.org ciissversion:2";
    expect(accepts((c) => (c.relays[0].contactInfo = contactInfo)).relays[0]!.contactInfo).toBe(contactInfo);
    const relay = validRelayConfig({ nickname: "UnicodeContact", contactInfo });
    const lines = renderTorrcLines(relay, { dataDirectory: "/var/lib/tor", familyFingerprints: [], familyIds: [], sandbox: true, user: "debian-tor" });
    expect(lines.find((line) => line.field === "contactInfo")!.text).toBe(`ContactInfo ${contactInfo}`);
    expect(verifyTorrcsWithTor([{ index: 0, relay: "r1", lines }])).toEqual([]);
    // Nothing of it reaches the relay's boot scripts: its network file stays ASCII.
    expect(renderNetworkEnv(relay, 22)).toMatch(/^([\x20-\x7e]*\n)+$/);
  });
});

/** What bash does with `command`, run in `dir`: the arguments `printf '%s\n'` got, one per line. */
function bashArguments(command: string, dir: string): string[] {
  const result = spawnSync("bash", ["-c", command], { cwd: dir, encoding: "utf8" });
  expect(result.status, result.stderr).toBe(0);
  return result.stdout.split("\n").slice(0, -1);
}

/** The command in a hint, with its tool replaced by printf: the tool's arguments, as bash hands them over. */
function hintArguments(hint: string, tool: string, dir: string): string[] {
  const at = hint.indexOf(`${tool} `);
  expect(at, `no ${tool} command in: ${hint}`).toBeGreaterThanOrEqual(0);
  const rest = hint.slice(at + tool.length);
  // Up to the closing backtick when the hint quotes the command, else to the end of the sentence.
  const end = hint[at - 1] === "`" ? rest.indexOf("`") : rest.search(/, and |\.?$/);
  return bashArguments(`printf '%s\\n'${rest.slice(0, end)}`, dir);
}

describe("a command in a message passes each value as one shell word (bash is the judge)", () => {
  const scratch = privateTmpDir("hints");
  const HOSTILE = [
    "keys/x; touch pwned #",
    "$(touch pwned)",
    "`touch pwned`",
    "it's",
    "'",
    "",
    "two  spaces",
    "*",
    "~root",
    "a\nb",
    "!!",
    "-x",
    "Zoë \u00a0☕",
    "back\\slash",
    '"double"',
    "${HOME}",
    "x&y|z>out<in",
    "(sub)",
    "{a,b}",
    "#comment",
    "tab\there",
  ];

  it.each(HOSTILE)("shellQuote(%j) is one word that bash reads back as it was", (value) => {
    const dir = join(scratch, `quote-${HOSTILE.indexOf(value)}`);
    mkdirSync(dir);
    const result = spawnSync("bash", ["-c", `printf '%s\\0' ${shellQuote(value)}`], { cwd: dir, encoding: "utf8" });
    expect(result.stdout).toBe(`${value}\0`);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("leaves an ordinary word as it is, so that hints stay readable", () => {
    expect(["exit-1", "keys/collector", "relays.0", "a=b", "user@host:22"].map(shellQuote)).toEqual(["exit-1", "keys/collector", "relays.0", "a=b", "user@host:22"]);
  });

  /** A project with nothing in it: every key file is missing, so planFleet shows its hints. */
  function fleetProblems(mutate: (config: Config) => void): string[] {
    const project = join(scratch, `project-${Math.random().toString(36).slice(2)}`);
    mkdirSync(project);
    const config = validProxmoxConfig() as Config;
    mutate(config);
    try {
      planFleet(parseStackConfig(config), { projectDir: project, now: new Date() });
    } catch (err) {
      expect(err).toBeInstanceOf(FleetError);
      return (err as FleetError).problems;
    }
    throw new Error("the fleet was planned");
  }

  it("the collection key's ssh-keygen hint, for the issue's path", () => {
    const path = "keys/x; touch pwned #";
    const hint = fleetProblems((c) => (c.stateCollection.privateKeyFile = path)).find((p) => p.startsWith("stateCollection.privateKeyFile"))!;
    const dir = join(scratch, "collector-hint");
    mkdirSync(dir);
    expect(hintArguments(hint, "ssh-keygen", dir)).toEqual(["-t", "ed25519", "-N", "", "-f", path]);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("the image signing key's ssh-keygen hint, at plan time and when signing", () => {
    const path = "keys/sign $(touch pwned) 'it'";
    const dir = join(scratch, "signing-hint");
    mkdirSync(dir);
    const planned = fleetProblems((c) => (c.image = { signingKeyFile: path })).find((p) => p.startsWith("image.signingKeyFile"))!;
    expect(hintArguments(planned, "ssh-keygen", dir)).toEqual(["-t", "ed25519", "-f", path]);
    let signing = "";
    try {
      signFile(join(scratch, "no such dir", path), join(scratch, "record.json"));
    } catch (err) {
      signing = (err as Error).message;
    }
    expect(hintArguments(signing, "ssh-keygen", dir)).toEqual(["-t", "ed25519", "-f", join(scratch, "no such dir", path)]);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("the pulumi config set hint that pins a firmware", () => {
    const ovmf = join(scratch, "ovmf; touch pwned.fd");
    writeFileSync(ovmf, "not the pinned firmware");
    const hint = fleetProblems((c) => {
      c.proxmoxRootPassword = "pw";
      c.relays[0].cpuType = "EPYC-v4";
      c.relays[0].sev = { enabled: true, ovmf, ovmfSha256: "0".repeat(64) };
    }).find((p) => p.startsWith("relays[0].sev.ovmfSha256"))!;
    const dir = join(scratch, "pin-hint");
    mkdirSync(dir);
    const args = hintArguments(hint, "pulumi", dir);
    expect(args.slice(0, 4)).toEqual(["config", "set", "--path", "relays[0].sev.ovmfSha256"]);
    expect(args[4]).toMatch(/^[0-9a-f]{64}$/);
    expect(args).toHaveLength(5);
    expect(existsSync(join(dir, "pwned"))).toBe(false);
  });
});
