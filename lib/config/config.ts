/**
 * The stack configuration: its schema, the fleet-wide rules, and the error
 * format. Everything here is pure so that a bad config is reported in full,
 * by path, before a single resource is registered.
 */
import { z } from "zod";
import { addressOf, canonicalAddress, familyBits, inSubnet, isIPv6LinkLocal, macProblem, parseAddress, parsePrefix } from "../tor/addresses";
import { allowListProblems, gatewayProblem, resolverOperator, resolverProblem, subnetAddressProblem } from "../tor/address-rules";
import { catchAllProblems } from "../tor/exit-policy";
import { vcpuTypeNames } from "../snp/vcpu-types";
import { CONNTRACK_ENTRY_BYTES, CONNTRACK_MAX_RAM_SHARE, defaultConntrackMax, EXIT_NOTICE_PORT, DEFAULT_IPV6_SOURCE_PREFIX, DEFAULT_NOTICE_LIMIT, DEFAULT_OPEN_FILES, DEFAULT_ORPORT_LIMIT, MAX_OPEN_FILES, MIN_CONNECTIONS_PER_SOURCE, type PerSourceLimit } from "./limits";
import { bandwidthProblem, DEFAULT_METRICS_PORT, freeTextProblem, parseMetricsSource, parsePolicyRule, parseTorBandwidth } from "../tor/tor-values";
import { CPU_MODEL, firstNonAscii, PACKAGE, PATH_OPTION_MESSAGE, pathLooksLikeOption, RELAY_NAME, RELAY_NAME_MESSAGE, RELEASE, stringsIn } from "../core/plain-values";

/** 2026-01-01T00:00:00Z: the date inside every image unless image.sourceDateEpoch says otherwise. */
const DEFAULT_SOURCE_DATE_EPOCH = 1_767_225_600;

/** zstd's levels without --ultra (above 19 it quietly takes 19). */
export const ZSTD_LEVELS = { min: 1, max: 19 } as const;
/** The RAM root's zstd level unless image.compressLevel says otherwise: the highest, the smallest image. */
export const DEFAULT_COMPRESS_LEVEL = 19;
const ZSTD_LEVEL_MESSAGE = `must be a zstd level from ${ZSTD_LEVELS.min} to ${ZSTD_LEVELS.max} (${DEFAULT_COMPRESS_LEVEL}, the default, makes the smallest image)`;

/** Where Proxmox VE's `local` directory storage keeps ISO content. */
const DEFAULT_PROXMOX_ISO_DIR = "/var/lib/vz/template/iso";
/** Where an SEV-SNP relay answers volunteers' nonces by default (sev.publicAttestation.port). */
export const DEFAULT_PUBLIC_ATTESTATION_PORT = 9180;

/** tor's own rule for Nickname (src/core/or/or.h: MAX_NICKNAME_LEN). */
const NICKNAME = /^[A-Za-z0-9]{1,19}$/;
/** Proxmox VE API token: USER@REALM!TOKENID=SECRET, the form the provider accepts. */
const API_TOKEN = /^\S+@\S+!\S+=([a-zA-Z0-9-]+)$/;
export const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
/** Proxmox VE's storage identifier format (pve-storage-id). */
const STORAGE_ID = /^[a-z][a-z0-9_.-]*[a-z0-9]$/;
/** A Linux network interface name, as Proxmox bridges are (vmbr0); never beginning with "-", which a tool would read as an option. */
const BRIDGE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;

/**
 * The big public resolvers an exit must not send its users' lookups to: one
 * operator would see a large share of Tor's exit DNS traffic. The list of
 * ansible-relayor (tasks/abort_on_big_dns_operators.yml) and each operator's
 * published addresses: developers.google.com/speed/public-dns, quad9.net,
 * 1.1.1.1, opendns.com setup guide, Level 3's 4.2.2.1–6 and 209.244.0.3–4.
 */
const BIG_PUBLIC_RESOLVERS: Record<string, string[]> = {
  Google: ["8.8.8.8", "8.8.4.4", "2001:4860:4860::8888", "2001:4860:4860::8844", "2001:4860:4860::6464", "2001:4860:4860::64"],
  Quad9: ["9.9.9.9", "9.9.9.10", "9.9.9.11", "9.9.9.12", "149.112.112.9", "149.112.112.10", "149.112.112.11", "149.112.112.12", "149.112.112.112",
    "2620:fe::9", "2620:fe::10", "2620:fe::11", "2620:fe::12", "2620:fe::fe", "2620:fe::fe:9", "2620:fe::fe:10", "2620:fe::fe:11", "2620:fe::fe:12"],
  Cloudflare: ["1.1.1.1", "1.0.0.1", "1.1.1.2", "1.0.0.2", "1.1.1.3", "1.0.0.3",
    "2606:4700:4700::1111", "2606:4700:4700::1001", "2606:4700:4700::1112", "2606:4700:4700::1002", "2606:4700:4700::1113", "2606:4700:4700::1003"],
  OpenDNS: ["208.67.222.222", "208.67.220.220", "208.67.222.220", "208.67.220.222", "208.67.222.123", "208.67.220.123", "2620:119:35::35", "2620:119:53::53"],
  Level3: ["4.2.2.1", "4.2.2.2", "4.2.2.3", "4.2.2.4", "4.2.2.5", "4.2.2.6", "209.244.0.3", "209.244.0.4"],
};

const bigResolverOperator = new Map(
  Object.entries(BIG_PUBLIC_RESOLVERS).flatMap(([operator, addresses]) => addresses.map((address) => [canonicalAddress(parseAddress(address)!), operator] as const)),
);

/**
 * Path-like values reach tools as single arguments, never through a shell;
 * they still must be one line. They stay relative to the project as written
 * (resource inputs hold them so, and a preview in another checkout shows no
 * change), so rather than made absolute, a path that would reach a tool as
 * an option (beginning with "-") is refused. Any other character may stay:
 * a path is never written into a line-oriented file.
 */
const pathValue = (what: string) =>
  z
    .string()
    .min(1, `must name ${what}`)
    // eslint-disable-next-line no-control-regex
    .refine((value) => !/[\u0000-\u001f\u007f]/.test(value), "must be a path on one line: no newlines or other control characters")
    .refine((value) => !pathLooksLikeOption(value), PATH_OPTION_MESSAGE);

const freeText = (minMessage: string) =>
  z
    .string()
    .min(1, minMessage)
    .superRefine((value, ctx) => {
      const problem = freeTextProblem(value);
      if (problem) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem });
    });

/** The RAM root filesystem plus tor needs this much; less and the relay is OOM-killed while unpacking. */
const MIN_RELAY_MEMORY_MIB = 512;
/** Proxmox VE's limit on a VM's memory (qemu-server's MAX_MEM, 4 TiB); the local target's QEMU is held to the same. */
const MAX_RELAY_MEMORY_MIB = 4_194_304;

const torBandwidth = z.string().superRefine((value, ctx) => {
  const problem = bandwidthProblem(value);
  if (problem) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem });
});

const port = z.number().int().min(1, "must be a TCP port, 1–65535").max(65535, "must be a TCP port, 1–65535");

const ZONE_ID = "; zone ids (%eth0) name an interface of one host and have no place in a relay's config";

/**
 * The host of a URL when it always means "this machine": localhost (and
 * *.localhost), 127.0.0.0/8, ::1, and 0.0.0.0/8 or ::, which connect to this
 * machine too, also spelled IPv4-mapped (::ffff:127.0.0.1). The URL parser
 * canonicalises other IPv4 spellings first (127.1, 0x7f.0.0.1, 2130706433).
 */
export function loopbackHostOf(url: string): string | undefined {
  let host: string;
  try {
    host = new URL(url).hostname.toLowerCase();
  } catch {
    return undefined;
  }
  const bare = host.replace(/^\[(.*)\]$/, "$1").replace(/\.$/, "");
  if (bare === "localhost" || bare.endsWith(".localhost")) return host;
  const address = parseAddress(bare);
  if (!address) return undefined;
  let v4: bigint | undefined = address.family === 4 ? address.value : undefined;
  if (address.family === 6) {
    if (address.value === 0n || address.value === 1n) return host;
    // IPv4-mapped (::ffff:0:0/96) and the deprecated IPv4-compatible (::/96) forms.
    const high = address.value >> 32n;
    if (high === 0xffffn || high === 0n) v4 = address.value & 0xffffffffn;
  }
  if (v4 === undefined) return undefined;
  const first = v4 >> 24n;
  return first === 127n || first === 0n ? host : undefined;
}

function cidr(family: 4 | 6) {
  return z.string().superRefine((value, ctx) => {
    const prefix = parsePrefix(value);
    if (!prefix || prefix.family !== family) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        message: `must be an IPv${family} address with its prefix length, like ${family === 4 ? "198.51.100.10/24" : "2001:db8::10/64"}; got "${value}"${
          value.includes("%") ? ZONE_ID : ""
        }`,
      });
    }
  });
}

function ipAddress(family: 4 | 6 | "any") {
  return z.string().superRefine((value, ctx) => {
    const parsed = parseAddress(value);
    if (!parsed || (family !== "any" && parsed.family !== family)) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        message: `must be an ${family === "any" ? "IP" : `IPv${family}`} address; got "${value}"${value.includes("%") ? ZONE_ID : ""}`,
      });
    }
  });
}

/** A relay's static address. The gateway must be on its subnet unless onLink says the route is on-link by design. */
function addressing(family: 4 | 6) {
  return z
    .object({ address: cidr(family), gateway: ipAddress(family), onLink: z.boolean().default(false) })
    .strict()
    .superRefine((value, ctx) => {
      const prefix = parsePrefix(value.address);
      const gateway = parseAddress(value.gateway);
      if (!prefix || !gateway || gateway.family !== prefix.family) return;
      const ownProblem = subnetAddressProblem(prefix);
      if (ownProblem) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ["address"], message: ownProblem });
      const gatewayIssue = gatewayProblem(gateway, prefix);
      if (gateway.value === prefix.value) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ["gateway"], message: `is the relay's own address ${value.gateway}` });
      } else if (gatewayIssue) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: ["gateway"], message: gatewayIssue });
      } else if (!value.onLink && !isIPv6LinkLocal(gateway) && !inSubnet(gateway, prefix)) {
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          path: ["gateway"],
          message: `${value.gateway} is not on the relay's subnet ${value.address}, so the relay could not reach it; fix the address or gateway, or set onLink: true if your network routes it on-link`,
        });
      }
    });
}

const ipv4Schema = addressing(4);
const ipv6Schema = addressing(6);

/** The kernel command line: the relay's init is fixed (rdinit=/init); nothing may replace it. */
const kernelCmdline = z.string().superRefine((value, ctx) => {
  const problem = (message: string) => ctx.addIssue({ code: z.ZodIssueCode.custom, message });
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) return problem("must be one line: no newlines or other control characters");
  // Checked before splitting: the kernel splits at bytes this split would not (lib/cmdline.c: isspace, where 0xA0 is a space).
  const nonAscii = firstNonAscii(value);
  if (nonAscii) {
    return problem(
      `must be printable ASCII (space to ~); it has ${nonAscii}. The kernel reads byte 0xA0 (part of U+00A0 and of many other characters in UTF-8) as a space, so a parameter hidden in one word would take effect`,
    );
  }
  if (/["']/.test(value)) return problem("must not contain quotes: the kernel reads a quoted span as one parameter, which hides what it sets");
  const tokens = value.split(" ").filter(Boolean);
  const init = tokens.find((token) => /^(rd)?init=/.test(token));
  if (init) return problem(`must not set ${init.split("=")[0]}=: the relay's init is part of the image (rdinit=/init), and replacing it bypasses the relay's boot`);
  // The EFI stub loads initrd= files from the boot medium: an image must carry everything it boots.
  if (tokens.some((token) => token.startsWith("initrd="))) return problem("must not set initrd=: the EFI stub would load it from the boot medium, outside the measured, immutable image");
  if (tokens.includes("--")) return problem("must not contain --: everything after it goes to init as arguments");
});

const exitSchema = z
  .object({
    enabled: z.boolean(),
    /** ExitPolicy lines in order; the reduced exit policy when omitted. */
    policy: z
      .array(
        z.string().superRefine((value, ctx) => {
          const parsed = parsePolicyRule(value);
          if ("problem" in parsed) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${parsed.problem}; got "${value}"` });
        }),
      )
      .min(1, 'must list at least one entry, ending with "reject *:*" or "accept *:*"')
      .superRefine((policy, ctx) => {
        for (const problem of catchAllProblems(policy)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: problem.index === undefined ? [] : [problem.index], message: problem.message });
      })
      .optional(),
    ipv6Exit: z.boolean().default(true),
    /**
     * The exit notice on port 80 of the exit's addresses (lib/render/exit-notice.ts):
     * the Tor Project's page with the relay's contact, or the operator's own
     * HTML file (checked at preview: a regular file, UTF-8, at most 64 KiB).
     * On by default for exits.
     */
    notice: z
      .object({ enabled: z.boolean().default(true), file: pathValue("the exit notice's HTML file").optional() })
      .strict()
      .default({}),
  })
  .strict();

const perSourceLimit = (defaults: PerSourceLimit) =>
  z
    .object({
      connections: z
        .number()
        .int()
        .min(MIN_CONNECTIONS_PER_SOURCE, `must be at least ${MIN_CONNECTIONS_PER_SOURCE}: tor allows up to 4 relays per IPv4 address, and each may hold a connection`)
        .max(65_536, "must be at most 65536"),
      newPerMinute: z
        .number()
        .int()
        .min(MIN_CONNECTIONS_PER_SOURCE, `must be at least ${MIN_CONNECTIONS_PER_SOURCE}: tor allows up to 4 relays per IPv4 address, and each reconnects after a restart`)
        .max(60_000, "must be at most 60000"),
    })
    .strict()
    .default(defaults);

/**
 * Exit hardening (lib/render/hardening.ts, after torutils and Tor's relay guides):
 * connection limits per source address on the ORPort and the exit notice's
 * port, the conntrack table's size and tor's open-file limit. The defaults
 * suit several relays behind one address.
 */
const limitsSchema = z
  .object({
    /** The per-source connection limits (nftables); false leaves the relay's ports unfiltered. */
    enabled: z.boolean().default(true),
    orPort: perSourceLimit(DEFAULT_ORPORT_LIMIT),
    exitNotice: perSourceLimit(DEFAULT_NOTICE_LIMIT),
    /** An IPv6 source is this prefix of its address (torutils: a /64). */
    ipv6SourcePrefix: z.number().int().min(32, "must be 32–128").max(128, "must be 32–128").default(DEFAULT_IPV6_SOURCE_PREFIX),
    /** nf_conntrack_max; by default sized by memoryMiB as torutils does. */
    conntrackMax: z.number().int().min(65_536, "must be at least 65536: a fast exit tracks more than 100k connections").max(2 ** 24, "must be at most 16777216").optional(),
    /** tor's open-file limit (RLIMIT_NOFILE). */
    openFiles: z.number().int().min(4096, "must be at least 4096").max(MAX_OPEN_FILES, `must be at most ${MAX_OPEN_FILES} (the kernel's fs.nr_open)`).default(DEFAULT_OPEN_FILES),
  })
  .strict();

const metricsSource = z.string().superRefine((value, ctx) => {
  const parsed = parseMetricsSource(value);
  if ("problem" in parsed) ctx.addIssue({ code: z.ZodIssueCode.custom, message: parsed.problem });
});

/**
 * A relay's MetricsPort, for a Prometheus server to scrape: tor listens on
 * the relay's own address (IPv4 when a source is IPv4, IPv6 when one is
 * IPv6) and answers only the sources in allowFrom (MetricsPortPolicy, then
 * a final reject). Nothing listens unless this is set.
 */
const metricsSchema = z
  .object({
    /** The Prometheus server's address or network: one, or a list (e.g. its IPv4 and IPv6 addresses). */
    allowFrom: z.union([metricsSource, z.array(metricsSource).min(1, "must list at least one address or network")]).transform((value) => (Array.isArray(value) ? value : [value])),
    port: port.default(DEFAULT_METRICS_PORT),
    /** allowFrom may hold networks (not just addresses) of public space: the operator says they are theirs. */
    allowPublicRanges: z.boolean().optional(),
  })
  .strict()
  .superRefine((metrics, ctx) => {
    // The list is judged as a whole: many narrow entries can add up to everyone.
    const entries = metrics.allowFrom.flatMap((text) => {
      const address = parseAddress(text.split("/")[0]!);
      const prefix = address && parsePrefix(text.includes("/") ? text : `${text}/${familyBits(address.family)}`);
      return prefix ? [{ text, prefix }] : [];
    });
    if (entries.length !== metrics.allowFrom.length) return;
    for (const problem of allowListProblems(entries, { allowPublicRanges: metrics.allowPublicRanges ?? false, flag: "allowPublicRanges" })) {
      const path = problem.index === undefined || metrics.allowFrom.length === 1 ? ["allowFrom"] : ["allowFrom", problem.index];
      ctx.addIssue({ code: z.ZodIssueCode.custom, path, message: problem.message });
    }
  });
type MetricsConfig = z.output<typeof metricsSchema>;

/**
 * Settings an earlier version took, and what replaced them: a stack config
 * that still has one is told how to move, not that the key is a typo.
 */
const RETIRED_RELAY_SETTINGS: Record<string, string> = {
  metricsPort:
    "was replaced by metrics: {allowFrom: PROMETHEUS_ADDRESS, port: PORT}; metricsPort bound MetricsPort to 127.0.0.1 inside the relay's VM, where nothing could scrape it. Move the port there and name the address your Prometheus server scrapes from",
};

const relaySchema = z
  .object({
    /** Pulumi resource name and key-store directory name; stable for the life of the relay. */
    name: z.string().regex(RELAY_NAME, RELAY_NAME_MESSAGE),
    nickname: z.string().regex(NICKNAME, "must be 1–19 characters of A–Z, a–z and 0–9 (tor's Nickname rule)"),
    node: z.string().regex(HOSTNAME, "must name a Proxmox VE node (a host name, beginning with a letter or digit)"),
    vmId: z.number().int().min(100, "must be a Proxmox VMID, 100–999999999").max(999_999_999, "must be a Proxmox VMID, 100–999999999"),
    mac: z.string().superRefine((value, ctx) => {
      const problem = macProblem(value);
      if (problem) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem });
    }),
    bridge: z.string().regex(BRIDGE, "must be a network bridge name like vmbr0 (beginning with a letter, digit or _)").optional(),
    vlan: z.number().int().min(1, "must be a VLAN tag, 1–4094").max(4094, "must be a VLAN tag, 1–4094").optional(),
    ipv4: ipv4Schema,
    ipv6: ipv6Schema.optional(),
    /**
     * A non-exit's /etc/resolv.conf. An exit resolves for its users through its
     * own validating resolver (unbound on 127.0.0.1): these are that
     * resolver's upstreams, and none means it resolves from the root itself.
     */
    nameservers: z.array(ipAddress("any")).default([]),
    orPort: port.default(443),
    dirPort: port.optional(),
    /** This relay's MetricsPort; overrides the fleet's `metrics`, and `false` turns it off for this relay. */
    metrics: z.union([z.literal(false), metricsSchema]).optional(),
    exit: exitSchema.default({ enabled: false, ipv6Exit: true }),
    limits: limitsSchema.default({}),
    contactInfo: freeText("must not be empty: tor operators are asked to publish a contact"),
    family: z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$/, "must be a family name of letters, digits, _ and -, not beginning with -").optional(),
    bandwidth: z
      .object({ rate: torBandwidth, burst: torBandwidth })
      .strict()
      .superRefine((value, ctx) => {
        const rate = parseTorBandwidth(value.rate);
        const burst = parseTorBandwidth(value.burst);
        if (rate !== undefined && burst !== undefined && burst < rate) {
          ctx.addIssue({ code: z.ZodIssueCode.custom, path: ["burst"], message: `"${value.burst}" is less than the rate "${value.rate}"; tor requires RelayBandwidthBurst ≥ RelayBandwidthRate` });
        }
      })
      .optional(),
    /** The vCPU model; for SEV-SNP it is part of the launch measurement. */
    cpuType: z.string().regex(CPU_MODEL, "must be a QEMU/Proxmox CPU model like x86-64-v2-AES or EPYC-v4 (beginning with a letter or digit)").default("x86-64-v2-AES"),
    memoryMiB: z
      .number()
      .int()
      .min(MIN_RELAY_MEMORY_MIB, `must be at least ${MIN_RELAY_MEMORY_MIB} MiB: the root filesystem lives in RAM`)
      .max(MAX_RELAY_MEMORY_MIB, `must be at most ${MAX_RELAY_MEMORY_MIB} MiB (4 TiB), the most Proxmox VE gives a VM`)
      .default(1024),
    cores: z.number().int().min(1, "must be at least 1").max(128, "must be at most 128").default(2),
    /** The relay's key directory, relative to the project or absolute. Defaults to <keyStore>/<name>. */
    keysDir: pathValue("the relay's key directory").optional(),
    /** Where the collector reaches the relay's SSH server; defaults to the IPv4 address and the fleet's SSH port. */
    sshHost: z
      .string()
      .refine((value) => parseAddress(value) !== undefined || HOSTNAME.test(value), (value) => ({
        message: `must be a host name or an IP address; got "${value}"${value.includes("%") ? ZONE_ID : ""}`,
      }))
      .optional(),
    sshPort: port.optional(),
    /** Deploy without collected onion keys when the running relay cannot be reached. Loud on purpose. */
    allowFreshOnionKeys: z.boolean().default(false),
    sev: z
      .object({
        enabled: z.boolean(),
        allowSmt: z.boolean().default(false),
        noDebug: z.boolean().default(true),
        /** The AmdSevX64 OVMF build the guest launches with (it carries the kernel-hashes table). */
        ovmf: pathValue("the OVMF firmware file").optional(),
        /** The OVMF file's SHA-256: the firmware a published measurement is for, pinned (preview refuses any other file). */
        ovmfSha256: z.string().regex(/^[0-9a-f]{64}$/, "must be the OVMF file's SHA-256 (64 lowercase hex digits, as sha256sum prints it)").optional(),
        /** The vCPU model for the measurement; defaults to cpuType. */
        vcpuType: z.string().regex(CPU_MODEL, "must be a vCPU model name like EPYC-v4 (beginning with a letter or digit)").optional(),
        /**
         * Broker mode: anyone may ask the relay for a fresh SEV-SNP report bound to its Tor identity
         * (POST /v1/attestation on this port, rate-limited; `npm run verify-relay` checks it). It serves
         * nothing else and holds no secret. On by default: it is why an SNP relay can be checked from outside.
         */
        publicAttestation: z
          .object({ enabled: z.boolean().default(true), port: port.default(DEFAULT_PUBLIC_ATTESTATION_PORT) })
          .strict()
          .default({}),
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
    nodes: z.array(z.string().regex(HOSTNAME, "must be a Proxmox VE node name (a host name, beginning with a letter or digit)")).min(1, "must list at least one node"),
    datastore: z.string().regex(STORAGE_ID, "must name the Proxmox VE datastore that holds ISO images (a storage id like local or iso-store, beginning with a letter)"),
    bridge: z.string().regex(BRIDGE, "must name the default network bridge, like vmbr0 (beginning with a letter, digit or _)"),
    /**
     * The datastore's ISO directory on the nodes (local: /var/lib/vz/template/iso).
     * SEV-SNP relays boot their UKI and firmware from there by path (the VM's args).
     */
    isoDir: z.string().regex(/^\/[A-Za-z0-9._/-]+$/, "must be an absolute path of letters, digits and . _ - / (the datastore's ISO directory on the node)").default(DEFAULT_PROXMOX_ISO_DIR),
    /** Old relay ISOs kept per relay for rollback. */
    keepIsos: z.number().int().min(0).max(20).default(2),
  })
  .strict();

/**
 * One apt source of the Debian base: a mirror URI, its suites and
 * components. Every value ends up in an apt sources line (mmdebstrap's
 * MIRROR argument and the preview's private apt), so none may hold a space,
 * a bracket or a leading '-'.
 */
const aptSourceSchema = z
  .object({
    uri: z.string().regex(/^https?:\/\/[A-Za-z0-9._~:/@%+-]+$/, "must be an http:// or https:// mirror URI of letters, digits and . _ ~ : / @ % + -, like http://deb.debian.org/debian"),
    suites: z.array(z.string().regex(/^[a-z0-9][a-z0-9.+-]*$/, "must be a suite like bookworm or bookworm-security")).min(1, "must list at least one suite"),
    components: z.array(z.string().regex(/^[a-z][a-z0-9-]*$/, "must be a component like main or non-free-firmware")).min(1, "must list at least one component").default(["main"]),
    /** The keyring (OpenPGP, binary or armored) that signs this mirror's Release files; default: the host's apt keyrings. */
    signedBy: z.string().regex(/^[A-Za-z0-9._/+][A-Za-z0-9._/+-]*$/, "must be a keyring path of letters, digits and . _ / + - (no spaces), not starting with '-'").optional(),
  })
  .strict();

const imageSchema = z
  .object({
    /** debian: built and booted by the tests. alpine: EXPERIMENTAL, never built here (its mirrors are unreachable). */
    flavour: z.enum(["alpine", "debian"]).default("debian"),
    /** Alpine branch (v3.23, edge) or Debian suite (bookworm). */
    release: z.string().regex(RELEASE, "must be a release or branch name like v3.23 or bookworm: lower-case letters, digits, . and -, beginning with a letter or digit (mmdebstrap would read a leading - as an option)").optional(),
    extraPackages: z.array(z.string().regex(PACKAGE, "must be a package name: lower-case letters, digits, + . and -, beginning with a letter or digit and not ending in - (apt reads a trailing - as remove)")).default([]),
    /**
     * Debian only: the apt sources the base is built from and its package
     * set resolved against. Default: the release, its -updates and its
     * -security suites on deb.debian.org (lib/image/package-index.ts defaultMirrors).
     */
    mirrors: z.array(aptSourceSchema).min(1, "must list at least one apt source (or leave image.mirrors out for Debian's own)").optional(),
    kernelCmdline: kernelCmdline.default("console=ttyS0 panic=10"),
    /** Include tor's GeoIP databases: +2.7 MB compressed, +25 MB RAM once unpacked. */
    geoip: z.boolean().default(false),
    /**
     * Every date inside the images (SOURCE_DATE_EPOCH): with the same packages,
     * the same value gives the same bytes, and anyone can rebuild and compare.
     * Not 0: shadow's "last password change" day 0 means "change it now".
     */
    sourceDateEpoch: z.number().int().min(86_400).max(4_102_444_800).default(DEFAULT_SOURCE_DATE_EPOCH),
    /**
     * zstd's level for the RAM root (mkosi's CompressLevel). 19 makes the
     * smallest image; a lower level builds the base many times faster
     * (measured on the Debian base: 67 s of CPU at 19, 6 s at 12, 0.6 s at 3)
     * for a larger one (27.3, 31.4 and 35.3 MB). Part of the base's recorded
     * inputs: a rebuild uses the same level.
     */
    compressLevel: z
      .number()
      .int(ZSTD_LEVEL_MESSAGE)
      .min(ZSTD_LEVELS.min, ZSTD_LEVEL_MESSAGE)
      .max(ZSTD_LEVELS.max, ZSTD_LEVEL_MESSAGE)
      .default(DEFAULT_COMPRESS_LEVEL),
    /** The operator's SSH private key (ed25519): each image's published record and SNP measurement are signed with it (ssh-keygen -Y sign). */
    signingKeyFile: pathValue("the image signing key (an OpenSSH private key)").optional(),
    /** Sign each UKI for Secure Boot (sbsign) with this key and certificate (PEM files). */
    secureBoot: z.object({ privateKeyFile: pathValue("the db key (PEM)"), certificateFile: pathValue("the db certificate (PEM)") }).strict().optional(),
  })
  .strict()
  .refine((image) => image.mirrors === undefined || image.flavour === "debian", { message: "only the debian flavour is built from apt mirrors (Alpine's comes from ALPINE_MIRROR)", path: ["mirrors"] });

const stateCollectionSchema = z
  .object({
    user: z.string().regex(/^[a-z_][a-z0-9_-]*$/, "must be a user name (beginning with a lower-case letter or _)").default("root"),
    privateKeyFile: pathValue("the collection key's private key file"),
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

const rolloutSchema = z
  .object({
    maxParallel: z.number().int().min(1, "must be at least 1").default(1),
    /** How long a replaced relay has to come back healthy before the rollout stops. */
    healthTimeoutSeconds: z.number().int().min(30, "must be at least 30 seconds: a relay boots, unpacks its RAM root and starts tor").max(3600, "must be at most 3600 seconds").default(600),
    /** Put a relay that does not come back on its last healthy image, with its current onion keys. */
    rollback: z.boolean().default(true),
  })
  .strict();

/** An age X25519 recipient (bech32, lower case): what images encrypt their push-backs to. */
const AGE_RECIPIENT = /^age1[02-9ac-hj-np-z]{58}$/;

/**
 * Where a relay's private keys come from at boot. "image": baked into its
 * image (the ISO on the datastore holds them). "broker": fetched into RAM
 * from the off-site key broker (tools/broker) after the guest proves what it
 * runs; the image carries no private key byte and no SSH server.
 */
const identitySchema = z
  .object({
    mode: z.enum(["image", "broker"]).default("image"),
    broker: z
      .object({
        /**
         * What relays reach: https, or http to a loopback address. On the local
         * stack, url, signingPublicKey, pushRecipient, caFile and admin may be
         * left out: the testnet's own broker (lib/testnet/testnet-broker.ts) is used.
         */
        url: z
          .string()
          .url("must be a URL like https://broker.example.net:8443")
          .refine((value) => value.startsWith("https://") || /^http:\/\/(127\.0\.0\.1|\[::1\]|localhost)(:\d+)?(\/|$)/.test(value), "must use https (plain http only to a loopback address)")
          .optional(),
        /** The broker's ed25519 public key (base64), printed by key-broker init: images pin it. */
        signingPublicKey: z.string().regex(/^[A-Za-z0-9+/]{43}=$/, "must be the broker's ed25519 public key in base64 (44 characters), as key-broker init prints it").optional(),
        /** The age recipient relays encrypt their onion keys and state to, as key-broker init prints it. */
        pushRecipient: z.string().regex(AGE_RECIPIENT, "must be an age recipient (age1…), as key-broker init prints it").optional(),
        /** The CA (PEM) that signed the broker's TLS certificate, when it is not a public one: images pin it. */
        caFile: pathValue("the broker's CA certificate (PEM)").optional(),
        /** "snp": an SEV-SNP report; "none": a single-use boot token per image (hosts without SNP). */
        attestation: z.enum(["snp", "none"]),
        /** The local stack only: reports come from a simulated AMD secure processor on this machine. */
        allowSimulatedAttestation: z.boolean().default(false),
        pushIntervalSeconds: z.number().int().min(30).max(3600).default(300),
        /** Where the build host reaches the broker's admin API: its unix socket (a local broker) or an https URL, and the token file key-broker init wrote. */
        admin: z
          .object({
            socket: pathValue("the broker's admin socket").optional(),
            url: z.string().url("must be a URL like https://broker.example.net:8444").refine((value) => value.startsWith("https://"), "must use https: the admin token travels with every call").optional(),
            tokenFile: pathValue("the broker's admin token file"),
          })
          .strict()
          .refine((admin) => Number(Boolean(admin.socket)) + Number(Boolean(admin.url)) === 1, { message: "needs exactly one of socket or url" })
          .optional(),
      })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((value, ctx) => {
    if (value.mode === "broker" && !value.broker) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ["broker"], message: "is required when mode is broker: the broker's url, signingPublicKey, pushRecipient and attestation" });
  });

/** The stack config's settings, before the rules that tie them together. */
const stackConfigObject = z
  .object({
    /** Where relays run: Proxmox VE, or QEMU on this machine (the local stack). */
    target: z.enum(["proxmox", "qemu"]).default("proxmox"),
    proxmox: proxmoxSchema.optional(),
    proxmoxApiToken: z.string().optional(),
    /** root@pam's password: Proxmox VE lets only root@pam with a password (no API token) set the args and amd-sev of SEV-SNP relays. */
    proxmoxRootPassword: z.string().min(1).optional(),
    /** The key store made by `npm run keys`: relays' key directories and families/. */
    keyStore: pathValue("the key store directory").default("keys"),
    /** Private build directory; bases are shared there by every stack of the host. */
    buildDir: pathValue("the build directory").default("build"),
    image: imageSchema.default({}),
    stateCollection: stateCollectionSchema,
    certificate: certificateSchema.default({}),
    rollout: rolloutSchema.default({}),
    /**
     * The local stack only: the relays join the private Tor network that
     * `npm run testnet` runs on this machine (its directory holds network.json).
     */
    testnet: z.object({ dir: pathValue("the testnet's directory").default(".testnet") }).strict().optional(),
    identity: identitySchema.default({}),
    /** Every relay's MetricsPort, unless a relay sets its own `metrics` (or `false`). */
    metrics: metricsSchema.optional(),
    relays: z.array(relaySchema).min(1, "must list at least one relay"),
  })
  .strict();

const stackConfigSchema = stackConfigObject
  .superRefine(checkFleet)
  // Each relay carries the metrics it runs with: the renderers read one place.
  .transform((config) => ({ ...config, relays: config.relays.map((relay) => ({ ...relay, metrics: relayMetrics(config, relay) })) }));

/** A relay's own metrics setting, else the fleet's; none when the relay says false. */
function relayMetrics(config: { metrics?: MetricsConfig | undefined }, relay: { metrics?: MetricsConfig | false | undefined }): MetricsConfig | undefined {
  return relay.metrics === false ? undefined : (relay.metrics ?? config.metrics);
}

/**
 * Whether a relay serves its public attestation endpoint: an SEV-SNP guest whose keys come from the broker
 * after an SNP report (an image-mode relay's keys are on its ISO, so a report would prove nothing of them).
 */
export function servesPublicAttestation(
  config: { identity: { mode: "image" | "broker"; broker?: { attestation: "snp" | "none" } | undefined } },
  relay: { sev?: { enabled: boolean; publicAttestation: { enabled: boolean } } | undefined },
): boolean {
  return config.identity.mode === "broker" && config.identity.broker?.attestation === "snp" && relay.sev?.enabled === true && relay.sev.publicAttestation.enabled;
}

export type StackConfig = z.infer<typeof stackConfigSchema>;
export type RelayConfig = StackConfig["relays"][number];
export type ImageConfig = StackConfig["image"];

/** Fleet-wide rules, and the rules that tie one relay's fields together. */
function checkFleet(
  config: {
    target: "proxmox" | "qemu";
    proxmox?: { nodes: string[] };
    proxmoxApiToken?: string;
    proxmoxRootPassword?: string;
    testnet?: unknown;
    identity: z.infer<typeof identitySchema>;
    stateCollection: { port: number };
    metrics?: MetricsConfig | undefined;
    relays: z.infer<typeof relaySchema>[];
  },
  ctx: z.RefinementCtx,
) {
  const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: z.ZodIssueCode.custom, path, message });
  if (config.target === "proxmox" && config.testnet) {
    issue(["testnet"], "is for the local stack only: a relay deployed to Proxmox VE must never carry a private network's TestingTorNetwork and DirAuthority lines");
  }
  if (config.target === "qemu" && !config.testnet) {
    issue(["testnet"], "is required when target is qemu: local relays join the private Tor network on this machine (start it with npm run testnet)");
  }
  const broker = config.identity.mode === "broker" ? config.identity.broker : undefined;
  if (config.target === "proxmox" && broker?.allowSimulatedAttestation) {
    issue(["identity", "broker", "allowSimulatedAttestation"], "is for the local stack only: on Proxmox VE a report must be signed by AMD's own chain");
  }
  if (broker?.allowSimulatedAttestation && broker.attestation !== "snp") {
    issue(["identity", "broker", "allowSimulatedAttestation"], 'only applies with attestation: "snp"');
  }
  const loopback = broker?.url ? loopbackHostOf(broker.url) : undefined;
  if (loopback && config.target !== "qemu") {
    issue(
      ["identity", "broker", "url"],
      `is on ${loopback}, which every relay reads as itself: each would ask its own VM for its keys. Give the broker's address as the relays reach it over the network; a loopback broker is for the local stack (target qemu) only`,
    );
  }
  if (broker && !(config.target === "qemu" && config.testnet)) {
    const why = {
      url: "relays reach the broker there",
      signingPublicKey: "images pin it; key-broker init prints it (tools/broker/README.md)",
      pushRecipient: "relays encrypt their onion keys to it; key-broker init prints it (tools/broker/README.md)",
      admin: "the program uploads keys and registers each new image there before a VM is replaced: its socket or https url, and the token file key-broker init wrote",
    };
    for (const field of ["url", "signingPublicKey", "pushRecipient", "admin"] as const) {
      if (!broker[field]) issue(["identity", "broker", field], `is required: ${why[field]}`);
    }
  }
  if (broker?.attestation === "snp") {
    config.relays.forEach((relay, i) => {
      if (!relay.sev?.enabled) issue(["relays", i, "sev", "enabled"], 'must be true with identity.broker.attestation "snp": only an SEV-SNP guest can prove what it runs (use attestation "none" on hosts without SNP)');
    });
  }
  if (config.target === "proxmox") {
    if (!config.proxmox) issue(["proxmox"], "is required when target is proxmox");
    if (!config.proxmoxApiToken) issue(["proxmoxApiToken"], "is required when target is proxmox: pulumi config set --secret proxmoxApiToken USER@REALM!TOKENID=SECRET");
    else if (!API_TOKEN.test(config.proxmoxApiToken)) issue(["proxmoxApiToken"], "must be a Proxmox VE API token of the form USER@REALM!TOKENID=SECRET");
    const snp = config.relays.findIndex((relay) => relay.sev?.enabled);
    if (snp >= 0 && !config.proxmoxRootPassword) {
      issue(
        ["proxmoxRootPassword"],
        `is required when a relay has SEV-SNP on Proxmox VE (relays[${snp}]): only root@pam logged in with its password may set a VM's args and amd-sev (Proxmox VE refuses API tokens, even root@pam's); pulumi config set --secret proxmoxRootPassword …`,
      );
    }
    config.relays.forEach((relay, i) => {
      // Proxmox launches -cpu cpuType; the measurement signs the model into every VMSA.
      if (relay.sev?.enabled && relay.sev.vcpuType && relay.sev.vcpuType !== relay.cpuType) {
        issue(["relays", i, "sev", "vcpuType"], `is ${relay.sev.vcpuType}, but Proxmox VE launches the VM with cpuType ${relay.cpuType}: the measurement would not describe the VM (set cpuType to ${relay.sev.vcpuType} and drop sev.vcpuType)`);
      }
    });
  }
  const seen = new Map<string, number>();
  const unique = (kind: string, key: string, shown: string, index: number, path: (string | number)[]) => {
    const id = `${kind}\u0000${key}`;
    const first = seen.get(id);
    if (first === undefined) seen.set(id, index);
    else issue(["relays", index, ...path], `duplicate ${kind} "${shown}": relays[${first}] already uses it`);
  };
  /** Addresses compare as addresses: 2001:db8::10 and 2001:0db8:0:0::10 are one. */
  const canonical = (prefix: string) => {
    const parsed = parseAddress(addressOf(prefix));
    return parsed ? canonicalAddress(parsed) : addressOf(prefix);
  };
  const reportedClashes = new Set<string>();
  config.relays.forEach((relay, index) => {
    unique("name", relay.name, relay.name, index, ["name"]);
    unique("nickname", relay.nickname.toLowerCase(), relay.nickname, index, ["nickname"]);
    unique("vmId", String(relay.vmId), String(relay.vmId), index, ["vmId"]);
    unique("MAC", relay.mac.toLowerCase(), relay.mac, index, ["mac"]);
    const v4 = canonical(relay.ipv4.address);
    unique("IPv4 address and ORPort", `${v4}:${relay.orPort}`, `${v4}:${relay.orPort}`, index, ["ipv4"]);
    if (relay.ipv6) {
      const v6 = canonical(relay.ipv6.address);
      unique("IPv6 address and ORPort", `[${v6}]:${relay.orPort}`, `[${v6}]:${relay.orPort}`, index, ["ipv6"]);
    }
    if (config.target === "proxmox" && config.proxmox && !config.proxmox.nodes.includes(relay.node)) {
      issue(["relays", index, "node"], `"${relay.node}" is not one of proxmox.nodes (${config.proxmox.nodes.join(", ")})`);
    }

    // Every port the relay listens on is its own: two services cannot share one. A clash is
    // reported on the field that holds the value: the relay's own where it set one, and the
    // other port is named by the field it comes from (the fleet's, for an inherited one).
    const metricsPort = relayMetrics(config, relay)?.port;
    const ports: { path: (string | number)[]; value: number | undefined; inherited: boolean; what: string }[] = [
      { path: ["relays", index, "orPort"], value: relay.orPort, inherited: false, what: "the relay's orPort" },
      { path: ["relays", index, "dirPort"], value: relay.dirPort, inherited: false, what: "the relay's dirPort" },
      relay.metrics
        ? { path: ["relays", index, "metrics", "port"], value: metricsPort, inherited: false, what: "the relay's metrics.port" }
        : { path: ["metrics", "port"], value: metricsPort, inherited: true, what: "metrics.port (the fleet's MetricsPort)" },
      relay.sshPort !== undefined
        ? { path: ["relays", index, "sshPort"], value: relay.sshPort, inherited: false, what: "the relay's sshPort" }
        : { path: ["stateCollection", "port"], value: config.stateCollection.port, inherited: true, what: "stateCollection.port (the fleet's SSH port)" },
      { path: ["relays", index, "exit", "notice"], value: relay.exit.enabled && relay.exit.notice.enabled ? EXIT_NOTICE_PORT : undefined, inherited: false, what: "the exit notice's port (exit.notice)" },
      {
        path: ["relays", index, "sev", "publicAttestation", "port"],
        value: servesPublicAttestation(config, relay) ? relay.sev?.publicAttestation.port : undefined,
        inherited: false,
        what: "the relay's public attestation port (sev.publicAttestation.port)",
      },
    ];
    const byPort = new Map<number, (typeof ports)[number]>();
    for (const port of ports) {
      if (port.value === undefined) continue;
      const other = byPort.get(port.value);
      if (!other) {
        byPort.set(port.value, port);
        continue;
      }
      // The relay's own field is the one to change; two fleet-wide ones clash for every relay, reported once.
      const [reported, holder] = port.inherited && !other.inherited ? [other, port] : [port, other];
      const message = `${port.value} is already ${holder.what}; each service needs its own port`;
      const key = `${formatConfigPath(reported.path)}\u0000${message}`;
      if (!reportedClashes.has(key)) issue(reported.path, message);
      reportedClashes.add(key);
    }

    const metrics = relayMetrics(config, relay);
    metrics?.allowFrom.forEach((source, i) => {
      const parsed = parseMetricsSource(source);
      if ("source" in parsed && parsed.source.family === 6 && !relay.ipv6) {
        const from = relay.metrics ? "" : " (from the fleet's metrics.allowFrom)";
        issue(["relays", index, "metrics", "allowFrom", i], `${source}${from} is IPv6, but the relay has no ipv6 address for its MetricsPort to listen on: give it one, or scrape it over IPv4`);
      }
    });

    // Nameservers are judged by what they reach, however written (::ffff:8.8.8.8 is 8.8.8.8).
    const ownAddresses = [relay.ipv4.address, relay.ipv6?.address].flatMap((prefix) => (prefix ? [canonical(prefix)] : []));
    relay.nameservers.forEach((nameserver, i) => {
      const parsed = parseAddress(nameserver);
      if (!parsed) return;
      const problem = resolverProblem(parsed, relay.exit.enabled);
      if (problem) return issue(["relays", index, "nameservers", i], problem);
      if (ownAddresses.includes(canonicalAddress(parsed))) {
        return issue(
          ["relays", index, "nameservers", i],
          `${nameserver} is the relay's own address, where no resolver listens${relay.exit.enabled ? " (the exit's own resolver answers on 127.0.0.1 only, and these are its upstreams)" : " (only exits run a resolver of their own)"}. Name a resolver on another host`,
        );
      }
      const big = relay.exit.enabled ? resolverOperator(parsed, bigResolverOperator) : undefined;
      if (big) {
        const written = big.how ? ` (${big.reached}, written ${big.how})` : "";
        issue(
          ["relays", index, "nameservers", i],
          `${nameserver}${written} is ${big.operator}'s public resolver: an exit must not hand its users' lookups to one of the big public DNS operators (they would see a large share of Tor's exit DNS traffic). Name your own resolvers, or none: the exit's own resolver then resolves from the root`,
        );
      }
    });
    if (!relay.exit.enabled && relay.exit.notice.file) {
      issue(["relays", index, "exit", "notice", "file"], "is set, but the relay is not an exit: only an exit serves a notice on port 80");
    }
    const conntrackMax = relay.limits.conntrackMax;
    if (conntrackMax !== undefined && conntrackMax * CONNTRACK_ENTRY_BYTES > relay.memoryMiB * 1024 * 1024 * CONNTRACK_MAX_RAM_SHARE) {
      issue(
        ["relays", index, "limits", "conntrackMax"],
        `${conntrackMax} entries take up to ${Math.ceil((conntrackMax * CONNTRACK_ENTRY_BYTES) / 1024 / 1024)} MiB, more than a quarter of the relay's ${relay.memoryMiB} MiB, where its root filesystem lives too: lower it or raise memoryMiB (the default, ${defaultConntrackMax(relay.memoryMiB)}, follows torutils' sizing by RAM)`,
      );
    }
    if (relay.sev?.enabled && !relay.sev.ovmf) {
      issue(["relays", index, "sev", "ovmf"], "is required when SEV-SNP is enabled: the AmdSevX64 OVMF file the expected launch measurement is computed for");
    }
    if (relay.sev?.enabled && !relay.sev.ovmfSha256) {
      issue(["relays", index, "sev", "ovmfSha256"], "is required when SEV-SNP is enabled: the SHA-256 of the OVMF file (sha256sum FILE), so that a published measurement names the firmware it is for");
    }
    if (relay.sev?.enabled && !vcpuTypeNames().includes(relay.sev.vcpuType ?? relay.cpuType)) {
      issue(["relays", index, "sev", "vcpuType"], `"${relay.sev.vcpuType ?? relay.cpuType}" is not a vCPU model the measurement knows (${vcpuTypeNames().join(", ")}); set sev.vcpuType`);
    }
    if (relay.sev?.enabled && !relay.sev.noDebug) {
      issue(["relays", index, "sev", "noDebug"], "must be true: an SEV-SNP guest whose policy allows debugging can be read by the host, which defeats attestation");
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
  // YAML reads an unquoted 12 or true as a number or a boolean: quoting keeps it text.
  if (issue.code === z.ZodIssueCode.invalid_type && issue.expected === "string" && (issue.received === "number" || issue.received === "boolean")) {
    return `must be text, got a ${issue.received}: quote the value in the stack's YAML (e.g. "12") so that it stays text`;
  }
  if (issue.code === z.ZodIssueCode.invalid_type) return `must be ${issue.expected}, got ${issue.received}`;
  return issue.message;
}

/**
 * The project's whole stack config as Pulumi hands it over (every key of the
 * project's namespace, values as JSON text or plain strings), so that a
 * misspelled top-level key is reported instead of silently ignored.
 */
export function projectConfigObject(all: Record<string, string>, project: string): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  for (const [fullKey, value] of Object.entries(all)) {
    if (!fullKey.startsWith(`${project}:`)) continue;
    const key = fullKey.slice(project.length + 1);
    // Pulumi hands a plain value over as its text: a setting that is text stays that text,
    // even when it looks like a number or a boolean (keyStore: "1234", buildDir: "true").
    if (TEXT_SETTINGS.has(key)) {
      raw[key] = value;
      continue;
    }
    try {
      raw[key] = JSON.parse(value);
    } catch {
      raw[key] = value;
    }
  }
  return raw;
}

/** The schema under optional, default and refinements: what kind of value a setting takes. */
function baseSchema(schema: z.ZodTypeAny): z.ZodTypeAny {
  if (schema instanceof z.ZodOptional || schema instanceof z.ZodDefault) return baseSchema(schema._def.innerType);
  if (schema instanceof z.ZodEffects) return baseSchema(schema._def.schema);
  return schema;
}

/** The top-level settings whose value is text (paths, names, the credentials). */
const TEXT_SETTINGS: ReadonlySet<string> = new Set(
  Object.entries(stackConfigObject.shape)
    .filter(([, schema]) => {
      const base = baseSchema(schema);
      return base instanceof z.ZodString || base instanceof z.ZodEnum;
    })
    .map(([key]) => key),
);

/** The settings that are credentials: Pulumi must hold them encrypted, and show them as [secret]. */
const CREDENTIAL_SETTINGS = ["proxmoxApiToken", "proxmoxRootPassword"] as const;

/**
 * A credential stored in plain text sits unencrypted in Pulumi.STACK.yaml and
 * in every preview's config. `secretKeys`: the settings Pulumi holds as
 * secrets (short names, without the project's prefix).
 */
function plaintextCredentials(raw: unknown, secretKeys: ReadonlySet<string>): { path: string; message: string }[] {
  if (!raw || typeof raw !== "object") return [];
  return CREDENTIAL_SETTINGS.filter((key) => (raw as Record<string, unknown>)[key] !== undefined && !secretKeys.has(key)).map((key) => ({
    path: key,
    message:
      `is stored in plain text, so Pulumi keeps it unencrypted in the stack's Pulumi.STACK.yaml and shows it in previews. ` +
      `Make it a secret: run \`pulumi config set --secret ${key}\`; it asks for the value, which so stays out of your shell's history`,
  }));
}

/**
 * A value that may take one of several shapes (metrics: false or an object;
 * allowFrom: one source or a list) is judged by the shape it has: the
 * problems of that one branch, rather than zod's bare "Invalid input".
 */
function unionBranchIssues(issue: z.ZodIssue): z.ZodIssue[] {
  if (issue.code !== z.ZodIssueCode.invalid_union) return [issue];
  const typeMismatch = (inner: z.ZodIssue) =>
    (inner.code === z.ZodIssueCode.invalid_type || inner.code === z.ZodIssueCode.invalid_literal) && inner.path.length === issue.path.length;
  const matched = issue.unionErrors.map((error) => error.issues).filter((issues) => !issues.some(typeMismatch));
  return matched.length === 1 ? matched[0]!.flatMap(unionBranchIssues) : [issue];
}

/**
 * The settings that may hold characters beyond printable ASCII: free text tor
 * itself accepts and reads with ASCII-only separators (ContactInfo), paths
 * (argument vectors only, never written into a file of the relay) and the
 * secrets (the provider's API calls). Every other string reaches a
 * line-oriented reader: the kernel, tor, unbound, the relay's boot scripts.
 */
const NOT_ONLY_ASCII = [
  /^relays\[\d+\]\.contactInfo$/,
  /^(keyStore|buildDir|stateCollection\.privateKeyFile|testnet\.dir|image\.signingKeyFile|image\.secureBoot\.(privateKeyFile|certificateFile))$/,
  /^relays\[\d+\]\.(keysDir|sev\.ovmf|exit\.notice\.file)$/,
  /^identity\.broker\.(caFile|admin\.socket|admin\.tokenFile)$/,
  /^(proxmoxApiToken|proxmoxRootPassword)$/,
];

/** Every string setting outside NOT_ONLY_ASCII that holds a character beyond printable ASCII. */
function nonAsciiProblems(raw: unknown): { path: string; message: string }[] {
  return stringsIn(raw).flatMap(({ path, value }) => {
    const where = formatConfigPath(path);
    const found = firstNonAscii(value);
    if (!found || NOT_ONLY_ASCII.some((pattern) => pattern.test(where))) return [];
    return [{ path: where, message: `must be printable ASCII (space to ~); it has ${found}. The relay's kernel, tor, unbound and boot scripts split at bytes the config's checks do not, so the value could mean something else there` }];
  });
}

/**
 * Validates raw stack config; throws a ConfigError naming every bad field.
 * With `secretKeys` (the settings Pulumi holds as secrets), a credential in
 * plain text is one of them.
 */
export function parseStackConfig(raw: unknown, options: { secretKeys?: ReadonlySet<string> } = {}): StackConfig {
  const result = stackConfigSchema.safeParse(raw);
  const nonAscii = nonAsciiProblems(raw);
  const credentials = options.secretKeys ? plaintextCredentials(raw, options.secretKeys) : [];
  if (result.success && nonAscii.length === 0 && credentials.length === 0) return result.data;
  const schemaProblems = result.success
    ? []
    : result.error.issues.flatMap(unionBranchIssues).flatMap((issue) =>
        issue.code === z.ZodIssueCode.unrecognized_keys
          ? issue.keys.map((key) => ({
              path: formatConfigPath([...issue.path, key]),
              message: (issue.path[0] === "relays" && issue.path.length === 2 && RETIRED_RELAY_SETTINGS[key]) || "is not a known setting (a typo?)",
            }))
          : [{ path: formatConfigPath(issue.path) || "(config)", message: describeIssue(issue) }],
      );
  // A field the schema refused already is named once, with the schema's own words.
  const named = new Set(schemaProblems.map((problem) => problem.path));
  throw new ConfigError([...credentials, ...schemaProblems, ...nonAscii.filter((problem) => !named.has(problem.path))]);
}
