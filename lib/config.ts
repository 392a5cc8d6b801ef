/**
 * The stack configuration: its schema, the fleet-wide rules, and the error
 * format. Everything here is pure so that a bad config is reported in full,
 * by path, before a single resource is registered.
 */
import { isIP } from "node:net";
import { z } from "zod";
import { vcpuTypeNames } from "./snp/vcpuTypes";

/** tor's own rule for Nickname (src/core/or/or.h: MAX_NICKNAME_LEN). */
const NICKNAME = /^[A-Za-z0-9]{1,19}$/;
const MAC = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/;
/** Proxmox VE API token: USER@REALM!TOKENID=SECRET, the form the provider accepts. */
const API_TOKEN = /^\S+@\S+!\S+=([a-zA-Z0-9-]+)$/;
/** What tor accepts for RelayBandwidthRate and friends, e.g. "10 MBytes", "80 Mbits". */
const BANDWIDTH =
  /^\d+(\.\d+)?\s*(bytes?|KBytes?|KB|kilobytes?|MBytes?|MB|megabytes?|GBytes?|GB|gigabytes?|TBytes?|TB|terabytes?|bits?|Kbits?|kilobits?|Mbits?|megabits?|Gbits?|gigabits?|Tbits?|terabits?)$/i;
const EXIT_POLICY_LINE = /^(accept|reject)6? \S+$/;
const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** The RAM root filesystem plus tor needs this much; less and the relay is OOM-killed while unpacking. */
export const MIN_RELAY_MEMORY_MIB = 512;

const port = z.number().int().min(1, "must be a TCP port, 1–65535").max(65535, "must be a TCP port, 1–65535");

function cidr(family: 4 | 6) {
  const maxPrefix = family === 4 ? 32 : 128;
  return z.string().superRefine((value, ctx) => {
    const [addr, prefix, ...rest] = value.split("/");
    const prefixNumber = Number(prefix);
    if (
      rest.length > 0 ||
      addr === undefined ||
      isIP(addr) !== family ||
      prefix === undefined ||
      !/^\d+$/.test(prefix) ||
      prefixNumber > maxPrefix
    ) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        message: `must be an IPv${family} address with its prefix length, like ${
          family === 4 ? "198.51.100.10/24" : "2001:db8::10/64"
        }; got "${value}"`,
      });
    }
  });
}

function ipAddress(family: 4 | 6) {
  return z.string().refine((value) => isIP(value) === family, (value) => ({
    message: `must be an IPv${family} address; got "${value}"`,
  }));
}

const ipv4Schema = z.object({ address: cidr(4), gateway: ipAddress(4) }).strict();
const ipv6Schema = z.object({ address: cidr(6), gateway: ipAddress(6) }).strict();

const exitSchema = z
  .object({
    enabled: z.boolean(),
    /** ExitPolicy lines in order; the reduced exit policy when omitted. */
    policy: z.array(z.string().regex(EXIT_POLICY_LINE, 'must be an ExitPolicy line like "accept *:443" or "reject *:*"')).optional(),
    ipv6Exit: z.boolean().default(true),
  })
  .strict();

const relaySchema = z
  .object({
    /** Pulumi resource name and key-store directory name; stable for the life of the relay. */
    name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, "must be lower-case letters, digits and dashes, starting with a letter or digit"),
    nickname: z.string().regex(NICKNAME, "must be 1–19 characters of A–Z, a–z and 0–9 (tor's Nickname rule)"),
    node: z.string().min(1, "must name a Proxmox VE node"),
    vmId: z.number().int().min(100, "must be a Proxmox VMID, 100–999999999").max(999_999_999, "must be a Proxmox VMID, 100–999999999"),
    mac: z.string().regex(MAC, 'must be a MAC address like "BC:24:11:00:00:01"'),
    bridge: z.string().min(1).optional(),
    vlan: z.number().int().min(1, "must be a VLAN tag, 1–4094").max(4094, "must be a VLAN tag, 1–4094").optional(),
    ipv4: ipv4Schema,
    ipv6: ipv6Schema.optional(),
    /** Resolvers written to the relay's /etc/resolv.conf; exits resolve for their users. */
    nameservers: z.array(z.string().refine((value) => isIP(value) !== 0, (value) => ({ message: `must be an IP address; got "${value}"` }))).default([]),
    orPort: port.default(443),
    dirPort: port.optional(),
    metricsPort: port.optional(),
    exit: exitSchema.default({ enabled: false, ipv6Exit: true }),
    contactInfo: z.string().min(1, "must not be empty: tor operators are asked to publish a contact"),
    family: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "must be a family name of letters, digits, _ and -").optional(),
    bandwidth: z
      .object({
        rate: z.string().regex(BANDWIDTH, 'must be a tor bandwidth like "100 MBytes" or "800 Mbits"'),
        burst: z.string().regex(BANDWIDTH, 'must be a tor bandwidth like "100 MBytes" or "800 Mbits"'),
      })
      .strict()
      .optional(),
    /** The vCPU model; for SEV-SNP it is part of the launch measurement. */
    cpuType: z.string().regex(/^[A-Za-z0-9._-]+$/, "must be a QEMU/Proxmox CPU model like x86-64-v2-AES or EPYC-v4").default("x86-64-v2-AES"),
    memoryMiB: z.number().int().min(MIN_RELAY_MEMORY_MIB, `must be at least ${MIN_RELAY_MEMORY_MIB} MiB: the root filesystem lives in RAM`).default(1024),
    cores: z.number().int().min(1, "must be at least 1").max(128, "must be at most 128").default(2),
    /** The relay's key directory, relative to the project or absolute. Defaults to <keyStore>/<name>. */
    keysDir: z.string().min(1).optional(),
    /** Where the collector reaches the relay's SSH server; defaults to the IPv4 address and the fleet's SSH port. */
    sshHost: z.string().min(1).optional(),
    sshPort: port.optional(),
    /** qemu target only: the host port on 127.0.0.1 forwarded to the relay's ORPort. */
    localOrPort: port.optional(),
    /** Deploy without collected onion keys when the running relay cannot be reached. Loud on purpose. */
    allowFreshOnionKeys: z.boolean().default(false),
    sev: z
      .object({
        enabled: z.boolean(),
        allowSmt: z.boolean().default(false),
        noDebug: z.boolean().default(true),
        /** The AmdSevX64 OVMF build the guest launches with (it carries the kernel-hashes table). */
        ovmf: z.string().min(1).optional(),
        /** The vCPU model for the measurement; defaults to cpuType. */
        vcpuType: z.string().optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

const proxmoxSchema = z
  .object({
    endpoint: z
      .string()
      .url("must be a URL like https://pve.example.net:8006")
      .refine((value) => value.startsWith("https://"), "must use https: the Proxmox VE API only answers over TLS"),
    verifyTls: z.boolean().default(true),
    nodes: z.array(z.string().regex(HOSTNAME, "must be a Proxmox VE node name")).min(1, "must list at least one node"),
    datastore: z.string().min(1, "must name the datastore that holds ISO images"),
    bridge: z.string().min(1, "must name the default network bridge"),
    /** Old relay ISOs kept per relay for rollback. */
    keepIsos: z.number().int().min(0).max(20).default(2),
  })
  .strict();

const imageSchema = z
  .object({
    flavour: z.enum(["alpine", "debian"]).default("alpine"),
    /** Alpine branch (v3.23, edge) or Debian suite (bookworm). */
    release: z.string().regex(/^[a-z0-9.-]+$/, "must be a release or branch name like v3.23 or bookworm").optional(),
    extraPackages: z.array(z.string().regex(/^[a-z0-9][a-z0-9+.-]*$/, "must be a package name")).default([]),
    kernelCmdline: z.string().default("console=ttyS0 panic=10"),
    /** Include tor's GeoIP databases: +2.7 MB compressed, +25 MB RAM once unpacked. */
    geoip: z.boolean().default(false),
    /** Sign each UKI for Secure Boot (sbsign) with this key and certificate (PEM files). */
    secureBoot: z.object({ privateKeyFile: z.string().min(1), certificateFile: z.string().min(1) }).strict().optional(),
  })
  .strict();

const stateCollectionSchema = z
  .object({
    user: z.string().regex(/^[a-z_][a-z0-9_-]*$/, "must be a user name").default("root"),
    privateKeyFile: z.string().min(1, "must name the collection key's private key file"),
    port: port.default(22),
    connectTimeoutSeconds: z.number().int().min(1).max(300).default(15),
  })
  .strict();

const certificateSchema = z
  .object({
    errorDays: z.number().min(0).default(2),
    warnDays: z.number().min(0).default(10),
  })
  .strict()
  .refine((c) => c.warnDays >= c.errorDays, { message: "warnDays must be at least errorDays", path: ["warnDays"] });

const rolloutSchema = z.object({ maxParallel: z.number().int().min(1, "must be at least 1").default(1) }).strict();

export const stackConfigSchema = z
  .object({
    /** Where relays run: Proxmox VE, or QEMU on this machine (the local stack). */
    target: z.enum(["proxmox", "qemu"]).default("proxmox"),
    proxmox: proxmoxSchema.optional(),
    proxmoxApiToken: z.string().optional(),
    /** The key store made by `npm run keys`: relays' key directories and families/. */
    keyStore: z.string().min(1).default("keys"),
    /** Private build directory; bases are shared there by every stack of the host. */
    buildDir: z.string().min(1).default("build"),
    image: imageSchema.default({}),
    stateCollection: stateCollectionSchema,
    certificate: certificateSchema.default({}),
    rollout: rolloutSchema.default({}),
    relays: z.array(relaySchema).min(1, "must list at least one relay"),
  })
  .strict()
  .superRefine(checkFleet);

export type StackConfig = z.infer<typeof stackConfigSchema>;
export type RelayConfig = StackConfig["relays"][number];
export type ImageConfig = StackConfig["image"];

/** Fleet-wide rules that no single relay can check on its own. */
function checkFleet(
  config: { target: "proxmox" | "qemu"; proxmox?: { nodes: string[] }; proxmoxApiToken?: string; relays: z.infer<typeof relaySchema>[] },
  ctx: z.RefinementCtx,
) {
  const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: z.ZodIssueCode.custom, path, message });
  if (config.target === "proxmox") {
    if (!config.proxmox) issue(["proxmox"], "is required when target is proxmox");
    if (!config.proxmoxApiToken) issue(["proxmoxApiToken"], "is required when target is proxmox: pulumi config set --secret proxmoxApiToken USER@REALM!TOKENID=SECRET");
    else if (!API_TOKEN.test(config.proxmoxApiToken)) issue(["proxmoxApiToken"], "must be a Proxmox VE API token of the form USER@REALM!TOKENID=SECRET");
  }
  const seen = new Map<string, number>();
  const unique = (kind: string, value: string, index: number, field: string) => {
    const key = `${kind}\u0000${value.toLowerCase()}`;
    const first = seen.get(key);
    if (first === undefined) {
      seen.set(key, index);
      return;
    }
    ctx.addIssue({
      code: z.ZodIssueCode.custom,
      path: ["relays", index, field],
      message: `duplicate ${kind} "${value}": relays[${first}] already uses it`,
    });
  };
  config.relays.forEach((relay, index) => {
    unique("name", relay.name, index, "name");
    unique("nickname", relay.nickname, index, "nickname");
    unique("vmId", String(relay.vmId), index, "vmId");
    unique("MAC", relay.mac, index, "mac");
    unique("IPv4 address and ORPort", `${relay.ipv4.address.split("/")[0]}:${relay.orPort}`, index, "ipv4");
    if (relay.ipv6) unique("IPv6 address and ORPort", `[${relay.ipv6.address.split("/")[0]}]:${relay.orPort}`, index, "ipv6");
    if (config.target === "proxmox" && config.proxmox && !config.proxmox.nodes.includes(relay.node)) {
      issue(["relays", index, "node"], `"${relay.node}" is not one of proxmox.nodes (${config.proxmox.nodes.join(", ")})`);
    }
    if (config.target === "qemu") {
      if (relay.sshPort === undefined) issue(["relays", index, "sshPort"], "is required when target is qemu: the host port on 127.0.0.1 forwarded to the relay's SSH server");
      if (relay.localOrPort === undefined) issue(["relays", index, "localOrPort"], "is required when target is qemu: the host port on 127.0.0.1 forwarded to the relay's ORPort");
      if (relay.sshPort !== undefined) unique("local port", String(relay.sshPort), index, "sshPort");
      if (relay.localOrPort !== undefined) unique("local port", String(relay.localOrPort), index, "localOrPort");
    }
    if (relay.exit.enabled && relay.nameservers.length === 0) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ["relays", index, "nameservers"],
        message: "must list at least one resolver for an exit relay (ideally a local validating resolver)",
      });
    }
    if (relay.sev?.enabled && !relay.sev.ovmf) {
      issue(["relays", index, "sev", "ovmf"], "is required when SEV-SNP is enabled: the AmdSevX64 OVMF file the expected launch measurement is computed for");
    }
    if (relay.sev?.enabled && !vcpuTypeNames().includes(relay.sev.vcpuType ?? relay.cpuType)) {
      issue(["relays", index, "sev", "vcpuType"], `"${relay.sev.vcpuType ?? relay.cpuType}" is not a vCPU model the measurement knows (${vcpuTypeNames().join(", ")}); set sev.vcpuType`);
    }
    if (relay.sev?.enabled && !relay.sev.noDebug) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ["relays", index, "sev", "noDebug"],
        message: "must be true: an SEV-SNP guest whose policy allows debugging can be read by the host, which defeats attestation",
      });
    }
  });
}

/** `relays[2].ipv4.address`: the form `pulumi config set --path` takes. */
export function formatConfigPath(path: (string | number)[]): string {
  return path.reduce<string>((out, part) => (typeof part === "number" ? `${out}[${part}]` : out ? `${out}.${part}` : part), "");
}

export class ConfigError extends Error {
  constructor(readonly problems: { path: string; message: string }[]) {
    super(
      `the stack configuration has ${problems.length} problem${problems.length === 1 ? "" : "s"}; nothing was changed:\n` +
        problems.map((p) => `  - ${p.path}: ${p.message}`).join("\n"),
    );
    this.name = "ConfigError";
  }
}

function describeIssue(issue: z.ZodIssue): string {
  if (issue.code === z.ZodIssueCode.invalid_type && issue.received === "undefined") return "is required";
  if (issue.code === z.ZodIssueCode.invalid_type) return `must be ${issue.expected}, got ${issue.received}`;
  return issue.message;
}

/** Validates raw stack config; throws a ConfigError naming every bad field. */
export function parseStackConfig(raw: unknown): StackConfig {
  const result = stackConfigSchema.safeParse(raw);
  if (result.success) return result.data;
  throw new ConfigError(
    result.error.issues.flatMap((issue) =>
      issue.code === z.ZodIssueCode.unrecognized_keys
        ? issue.keys.map((key) => ({ path: formatConfigPath([...issue.path, key]), message: "is not a known setting (a typo?)" }))
        : [{ path: formatConfigPath(issue.path) || "(config)", message: describeIssue(issue) }],
    ),
  );
}
