/**
 * The steps the program runs on the build host, and the JSON spec each one
 * takes. Every `command.local.Command` runs one constant command line,
 * `STEP_COMMAND <step>`; everything the step needs arrives as data, a JSON
 * spec in the DISKLESS_RELAYS_STEP environment variable, validated with the
 * schema below both when the component makes it and when the step reads it.
 * No value is ever pasted into shell text. Pure: schemas and names only.
 */
import { z } from "zod";
import { monitoringSpecSchema } from "../render/monitoring";
import { CPU_MODEL, PACKAGE, RELAY_NAME, PATH_OPTION_MESSAGE, pathLooksLikeOption, PRINTABLE_ASCII, PRINTABLE_ASCII_LINES, RELEASE } from "../core/plain-values";
import { ONION_KEY_FILES } from "../tor/tor-keys";
import { formatIssues } from "../core/zod-issues";
import { ZSTD_LEVELS } from "../config/config";

/**
 * Run from the project directory; the step name is its only argument. One
 * node process with tsx's CommonJS hook (resolved from the project's own
 * node_modules): the tsx command would start a second node and an ESM loader
 * thread, 0.6 s of CPU more for every step. Stacks made while the command
 * was `node_modules/.bin/tsx cli/step.ts` keep that line in their state
 * (components/step.ts ignores changes to it), and it still works.
 */
export const STEP_ARGV = ["node", "--require", "tsx/cjs", "cli/step.ts"] as const;
export const STEP_COMMAND = STEP_ARGV.join(" ");
export const STEP_SPEC_ENV = "DISKLESS_RELAYS_STEP";

/** A path handed to a tool as one argument: any characters but control characters, and never read as an option. */
const path = z
  .string()
  .min(1)
  // eslint-disable-next-line no-control-regex
  .regex(/^[^\u0000-\u001f\u007f]+$/, "must be a path on one line")
  .refine((value) => !pathLooksLikeOption(value), PATH_OPTION_MESSAGE);
const name = z.string().regex(RELAY_NAME);
const nickname = z.string().regex(/^[A-Za-z0-9]{1,19}$/);
const digest = z.string().regex(/^[0-9a-f]{64}$/);
const port = z.number().int().min(1).max(65535);
const host = z.string().regex(/^[A-Za-z0-9:][A-Za-z0-9.:-]*$/, "must be a host name or an IP address");
const cpuModel = z.string().regex(CPU_MODEL, "must be a vCPU model name");
/** A Proxmox VE node and storage id, as the stack config allows them: never read as an option, never a path. */
const proxmoxNode = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9.-]*$/);
const proxmoxStorage = z.string().regex(/^[a-z][a-z0-9_.-]*[a-z0-9]$/);
/** What a line-oriented reader gets: printable ASCII lines. */
const asciiLines = z.string().regex(PRINTABLE_ASCII_LINES, "must be lines of printable ASCII");
/** An nftables ruleset: printable ASCII lines, indented with tabs as nft itself writes them. */
const nftRuleset = z.string().regex(/^([\t\x20-\x7e]*\n)*$/, "must be lines of printable ASCII and tabs");
/**
 * A torrc: printable ASCII, but for the ContactInfo line, free text that tor
 * itself accepts in any UTF-8 (its config parser splits at ASCII only).
 */
const torrcText = z
  .string()
  .min(1)
  .refine(
    (text) => text.split("\n").every((line) => PRINTABLE_ASCII.test(line) || (line.startsWith("ContactInfo ") && !/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(line))),
    "must be lines of printable ASCII (only ContactInfo may hold other characters)",
  );

/** How the build host reaches a running relay: SSH with a pinned host key and the restricted collection key. */
export const relayChannelSpec = z
  .object({
    host,
    port,
    user: z.string().regex(/^[a-z_][a-z0-9_-]*$/),
    privateKeyFile: path,
    /** The OpenSSH public host key line of the image the relay is expected to run. */
    hostPublicKey: z.string().regex(/^ssh-ed25519 [A-Za-z0-9+/=]+$/),
    connectTimeoutSeconds: z.number().int().min(1).max(300),
    /** The network namespace the relay's network lives in (the local testnet), if not this one. */
    netns: z.string().regex(/^[a-z0-9][a-z0-9-]{0,30}$/).optional(),
  })
  .strict();
export type RelayChannel = z.infer<typeof relayChannelSpec>;

/** Where a relay runs: enough to ask whether it runs, to read its console and to boot another image on it. */
export const relayTargetSpec = z.discriminatedUnion("kind", [
  z
    .object({
      kind: z.literal("qemu"),
      runDir: path,
      mac: z.string().regex(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/),
      memoryMiB: z.number().int().min(256),
      cores: z.number().int().min(1),
      network: z.discriminatedUnion("kind", [
        /** A tap device on the testnet's bridge, inside its namespace: the relay's own L2 segment. */
        z.object({ kind: z.literal("bridge"), netns: z.string().regex(/^[a-z0-9][a-z0-9-]{0,30}$/), bridge: z.string().regex(/^[a-z0-9]{1,15}$/), tap: z.string().regex(/^[a-z0-9]{1,15}$/) }).strict(),
        /** QEMU's user-mode network with ports forwarded from 127.0.0.1 (image tests). */
        z.object({ kind: z.literal("user"), forwards: z.array(z.object({ host: port, guest: port }).strict()), guestAddress: z.string().regex(/^[0-9.]+$/) }).strict(),
      ]),
      /**
       * A simulated SEV-SNP secure processor (TEST ONLY, lib/local/local-snp.ts) on a virtio-serial port: it reports the
       * measurement of the UKI in the booted ISO with this AmdSevX64 OVMF, vCPU type and the VM's cores, signed by the
       * test-only chain in simulatorDir (made on first use; its ark-ask.pem is what a broker is told to trust).
       */
      snp: z
        .object({ simulatorDir: path, ovmf: path, vcpuType: cpuModel, policy: z.string().regex(/^(0x)?[0-9a-fA-F]{1,16}$/).optional() })
        .strict()
        .optional(),
    })
    .strict(),
  z
    .object({
      kind: z.literal("proxmox"),
      endpoint: z.string().url(),
      verifyTls: z.boolean(),
      node: proxmoxNode,
      vmId: z.number().int().min(100),
      datastore: proxmoxStorage,
      /** SEV-SNP relays: the measured direct boot's firmware file in the node's ISO directory (lib/proxmox/proxmox-snp.ts). */
      snp: z
        .object({ isoDir: z.string().regex(/^\/[A-Za-z0-9._/-]+$/), firmwareFile: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/) })
        .strict()
        .optional(),
    })
    .strict(),
]);
export type RelayTarget = z.infer<typeof relayTargetSpec>;

const buildBaseSpec = z
  .object({
    flavour: z.enum(["alpine", "debian"]),
    release: z.string().regex(RELEASE, "must be a release name, never beginning with -"),
    geoip: z.boolean(),
    extraPackages: z.array(z.string().regex(PACKAGE, "must be a package name, never beginning or ending with -")),
    /** The user tor drops to in this flavour. */
    torUser: z.string().regex(/^[a-z_][a-z0-9_-]*$/),
    /** SOURCE_DATE_EPOCH: every date inside the base. */
    sourceDateEpoch: z.number().int().min(86_400),
    /** zstd's level for the RAM root (image.compressLevel). */
    compressLevel: z.number().int().min(ZSTD_LEVELS.min).max(ZSTD_LEVELS.max),
    dir: path,
    /** Debian: the one-line apt sources (lib/image/package-index.ts aptSourceLines). */
    sources: z.array(z.string().regex(/^deb (\[signed-by=[A-Za-z0-9._/+][A-Za-z0-9._/+-]*\] )?https?:\/\/[A-Za-z0-9._~:/@%+-]+ [a-z0-9][a-z0-9.+-]*( [a-z][a-z0-9-]*)+$/, "must be a one-line apt source: deb [[signed-by=KEYRING]] URI SUITE COMPONENT…")).optional(),
    /** Debian: the package set preview resolved ("name version architecture"); a base that installs another is refused. */
    packages: z.array(z.string().regex(/^[a-z0-9][a-z0-9+.-]* [A-Za-z0-9.+~:-]+ [a-z0-9-]+$/, "must be NAME VERSION ARCHITECTURE as apt names them")).optional(),
  })
  .strict();

/**
 * One relay image, exactly: everything its build reads. Kept beside the
 * image (and for the running image, in the relay's build directory) so the
 * same image can be rebuilt with newer onion keys for a rollback. Texts and
 * paths only: no key bytes.
 */
export const relayRecipeSpec = z
  .object({
    relay: name,
    nickname,
    imageDigest: digest,
    baseDir: path,
    keysDir: path,
    familyKeyFile: path.optional(),
    collectedDir: path,
    outDir: path,
    torrc: torrcText,
    networkEnv: asciiLines.min(1),
    authorizedKeys: z.string().regex(/^restrict,command="[^"]+" ssh-(ed25519|rsa) [A-Za-z0-9+/=]+\n$/).optional(),
    /** The kernel splits its command line at bytes such as 0xA0 too: printable ASCII only. */
    kernelCmdline: z.string().regex(PRINTABLE_ASCII, "must be printable ASCII"),
    resolverConf: asciiLines.optional(),
    /** An exit's notice page; served on port 80 (relay-notice). HTML as the operator wrote it: httpd serves its bytes. */
    exitNotice: z.string().optional(),
    /** Applied at boot before tor starts (relay-hardening); lib/render/hardening.ts renders it. */
    hardening: z.object({ ruleset: nftRuleset.optional(), sysctls: asciiLines, openFiles: z.number().int().min(1) }).strict().optional(),
    secureBoot: z.object({ privateKeyFile: path, certificateFile: path }).strict().optional(),
    /**
     * Broker mode: the image carries the agent and its configuration (public
     * facts only) instead of any private key, host key or collection key.
     */
    broker: z
      .object({
        agentBinary: path,
        agentConfig: asciiLines.min(2),
        caPem: z.string().optional(),
        /** attestation "none": the build makes a fresh single-use boot token for this image; only its SHA-256 leaves the build. */
        bootToken: z.boolean().optional(),
      })
      .strict()
      .optional(),
  })
  .strict();
export type RelayRecipe = z.infer<typeof relayRecipeSpec>;

/** Where the build host reaches the key broker's admin API (lib/broker/broker-admin.ts); the token stays in its file. */
const brokerAdminSpec = z.union([
  z.object({ socket: path, tokenFile: path }).strict(),
  z.object({ url: z.string().url().startsWith("https://"), tokenFile: path, caFile: path.optional() }).strict(),
]);
export type BrokerAdminSpec = z.infer<typeof brokerAdminSpec>;

/** What an SEV-SNP launch of the image is measured with (lib/snp): the firmware, the vCPU count and model. */
export const launchSpec = z.object({ ovmf: path, vcpus: z.number().int().min(1), vcpuType: cpuModel }).strict();

/** Broker mode: upload the relay's shipped keys (and, moving from image mode, the onion keys collected from it). */
const uploadRelayKeysSpec = z
  .object({
    relay: name,
    keysDir: path,
    familyKeyFile: path.optional(),
    collectedDir: path,
    /** The collection's summary (never key bytes): a new collection uploads again. */
    collection: z.string(),
    /** The identity the uploaded files must carry (public facts, checked before the upload). */
    identity: z.object({ rsaFingerprint: z.string().regex(/^[0-9A-F]{40}$/), ed25519Identity: z.string(), signingCertExpiresAt: z.string() }).strict(),
    broker: brokerAdminSpec,
  })
  .strict();

/**
 * Broker mode: let the broker release the relay's keys to this image (its
 * measurement, or its boot token's SHA-256); on delete, retire it.
 */
const registerImageSpec = z
  .object({ relay: name, imageDigest: digest, image: path, attestation: z.enum(["snp", "none"]), launch: launchSpec.optional(), broker: brokerAdminSpec })
  .strict();

/** Broker mode: what collection and the rollout gate ask the broker instead of the relay. */
const brokerWatchSpec = z
  .object({ admin: brokerAdminSpec, pushIntervalSeconds: z.number().int().min(1), attestation: z.enum(["snp", "none"]), launch: launchSpec.optional() })
  .strict();

const collectStateSpec = z
  .object({
    relay: name,
    /** The relay's private build directory; collections go to <relayDir>/collected/<imageDigest12>. */
    relayDir: path,
    imageDigest: digest,
    channel: relayChannelSpec,
    /** Asked whether the relay runs at all: only a running relay has onion keys to hand over. */
    target: relayTargetSpec,
    allowFreshOnionKeys: z.boolean(),
    /** Broker mode: a relay on a broker-mode image has pushed its onion keys there; it has no SSH server. */
    broker: brokerWatchSpec.optional(),
  })
  .strict();

const scanBaseSbomSpec = z.object({ rootfs: path, stem: path, flavour: z.enum(["alpine", "debian"]), baseDigest: digest }).strict();

const writeRelaySbomSpec = z
  .object({
    relay: name,
    nickname,
    imageDigest: digest,
    baseSyftJson: path,
    baseCycloneDxJson: path,
    image: path,
    out: path,
    /** The operator's SSH key the record is signed with (image.signingKeyFile). */
    signingKey: path.optional(),
  })
  .strict();

const measureLaunchSpec = z
  .object({
    relay: name,
    imageDigest: digest,
    uki: path,
    ovmf: path,
    vcpus: z.number().int().min(1),
    vcpuType: cpuModel,
    /** Guest policy, 0x-hex, as qemu-server sets it for the relay's amd-sev settings. */
    policy: z.string().regex(/^0x[0-9a-f]{1,16}$/),
    /** The image's ISO, whose digest the document names too. */
    iso: path.optional(),
    out: path,
    signingKey: path.optional(),
  })
  .strict();

/**
 * One image's launch added to the public measurement log (tools/broker measurement-log append): read from the
 * signed measurement document and the signed build record, signed with the same key, before the broker learns of
 * the image. The signers file beside the log is what volunteers check it with.
 */
const logMeasurementSpec = z
  .object({
    relay: name,
    imageDigest: digest,
    measurementDocument: path,
    buildRecord: path,
    log: path,
    allowedSigners: path,
    signingKey: path,
  })
  .strict();

/** The fleet's Prometheus files: what to scrape (and with which labels), written into outDir. */
const writeMonitoringSpec = monitoringSpecSchema.extend({ outDir: path }).strict();

/** generation: the machine's (lib/local/local-vm.ts plannedGeneration); absent in specs recorded before it was. */
const localVmSpec = z.object({ target: relayTargetSpec, iso: path, generation: z.number().int().min(0).optional() }).strict();

const pruneIsosSpec = z
  .object({
    endpoint: z.string().url(),
    verifyTls: z.boolean(),
    node: proxmoxNode,
    datastore: proxmoxStorage,
    nickname,
    keep: z.number().int().min(0),
    currentVolid: z.string(),
    /** SEV-SNP relays: the UKI volume the VM boots, kept like its ISO. */
    currentUkiVolid: z.string().optional(),
  })
  .strict();

const rollOutSpec = z
  .object({
    relay: name,
    nickname,
    relayDir: path,
    /** The image that must come up, as built (its recipe and outputs are in its build directory). */
    image: path,
    expected: z.object({ rsaFingerprint: z.string().regex(/^[0-9A-F]{40}$/), ed25519Identity: z.string(), orPort: port, exit: z.boolean() }).strict(),
    channel: relayChannelSpec.omit({ hostPublicKey: true }),
    target: relayTargetSpec,
    timeoutSeconds: z.number().int().min(1),
    rollback: z.boolean(),
    /** Broker mode: the relay's health comes with its attested pushes; a rollback image is registered before it boots. */
    broker: brokerWatchSpec.optional(),
  })
  .strict();

export const STEP_SPECS = {
  "build-base": buildBaseSpec,
  "collect-state": collectStateSpec,
  "remove-collected-state": collectStateSpec,
  "build-relay-image": relayRecipeSpec,
  "remove-relay-image": relayRecipeSpec,
  "scan-base-sbom": scanBaseSbomSpec,
  "write-relay-sbom": writeRelaySbomSpec,
  "measure-launch": measureLaunchSpec,
  "log-measurement": logMeasurementSpec,
  "write-monitoring": writeMonitoringSpec,
  "remove-monitoring": z.object({ outDir: path }).passthrough(),
  "start-local-vm": localVmSpec,
  "stop-local-vm": localVmSpec,
  "prune-isos": pruneIsosSpec,
  "upload-relay-keys": uploadRelayKeysSpec,
  // Delete steps get the spec recorded when the resource was made, perhaps by an older release: they read only what they need.
  "forget-relay-keys": z.object({ relay: name }).passthrough(),
  "register-image": registerImageSpec,
  "retire-image": z.object({ relay: name, imageDigest: digest, broker: brokerAdminSpec }).passthrough(),
  "roll-out": rollOutSpec,
  "remove-rollback-image": rollOutSpec,
} as const;
export type StepName = keyof typeof STEP_SPECS;
export type StepSpec<N extends StepName> = z.infer<(typeof STEP_SPECS)[N]>;

/** The one command line a step's resource runs: constant for the step. */
export function stepCommandLine(step: StepName): string {
  return `${STEP_COMMAND} ${step}`;
}

/** Validates a spec and serialises it for the step's environment; throws naming the bad field. */
export function encodeStepSpec<N extends StepName>(step: N, spec: StepSpec<N>): string {
  return JSON.stringify(parseStepSpec(step, spec));
}

export function parseStepSpec<N extends StepName>(step: N, value: unknown): StepSpec<N> {
  const result = STEP_SPECS[step].safeParse(value);
  if (!result.success) {
    const problems = formatIssues(result.error, "(spec)");
    throw new Error(`step ${step}: invalid spec: ${problems}`);
  }
  return result.data as StepSpec<N>;
}

/**
 * What a step prints for the component that runs it to read: the last line
 * of its stdout, as JSON (a record) or as text (one value). A step whose
 * output no program reads prints a log for people only (undefined here).
 * The step writes it with encodeStepOutput, the component reads it with
 * parseStepOutput, and the resource-graph tests' mocks answer with it.
 */
type OutputContract = { form: "json" | "line"; schema: z.ZodTypeAny };
const builtImageOutput = z
  .object({
    relay: name,
    imageDigest: digest,
    isoName: z.string().regex(/^relay-[A-Za-z0-9]{1,19}-[0-9a-f]{12}-[0-9a-f]{8}\.iso$/),
    iso: path,
    uki: path,
    files: path,
    isoSha256: digest,
    ukiSha256: digest,
    isoBytes: z.number().int().positive(),
    ukiBytes: z.number().int().positive(),
    onionKeys: z.array(z.string()),
  })
  .strict();
export const STEP_OUTPUTS = {
  "build-base": undefined,
  "collect-state": undefined,
  "remove-collected-state": undefined,
  "build-relay-image": { form: "json", schema: builtImageOutput },
  "remove-relay-image": undefined,
  "scan-base-sbom": undefined,
  "write-relay-sbom": undefined,
  // The launch measurement, as the published artifact holds it.
  "measure-launch": { form: "line", schema: z.string().regex(/^[0-9a-f]{96}$/) },
  // Where the launch is in the log: its entry file and commit (added false: it was there already).
  "log-measurement": { form: "json", schema: z.object({ added: z.boolean(), path: z.string().regex(/^entries\/[0-9]{6}\.json$/), commit: z.string().regex(/^[0-9a-f]{40}$/) }).strict() },
  "write-monitoring": undefined,
  "remove-monitoring": undefined,
  // The QEMU process's pid: the local stack's VM id.
  "start-local-vm": { form: "line", schema: z.string().regex(/^started pid [1-9][0-9]*, console .+$/).transform((line) => Number(/pid ([0-9]+)/.exec(line)![1])) },
  "stop-local-vm": undefined,
  "prune-isos": undefined,
  "upload-relay-keys": undefined,
  "forget-relay-keys": undefined,
  "register-image": undefined,
  "retire-image": undefined,
  "roll-out": undefined,
  "remove-rollback-image": undefined,
} as const satisfies Record<StepName, OutputContract | undefined>;
export type StepsWithOutput = { [N in StepName]: (typeof STEP_OUTPUTS)[N] extends OutputContract ? N : never }[StepName];
type ContractOf<N extends StepsWithOutput> = Extract<(typeof STEP_OUTPUTS)[N], OutputContract>;
export type StepOutput<N extends StepsWithOutput> = z.output<ContractOf<N>["schema"]>;

/** The line a step prints last for its component; throws naming the field the value breaks. */
export function encodeStepOutput<N extends StepsWithOutput>(step: N, value: z.input<ContractOf<N>["schema"]>): string {
  const contract = STEP_OUTPUTS[step] as OutputContract;
  const result = contract.schema.safeParse(value);
  if (!result.success) throw new Error(`step ${step}: invalid output: ${formatIssues(result.error, "(output)")}`);
  return contract.form === "json" ? JSON.stringify(value) : String(value);
}

/** What a step's stdout says for its component, read from its last line and checked against the step's contract. */
export function parseStepOutput<N extends StepsWithOutput>(step: N, stdout: string): StepOutput<N> {
  const contract = STEP_OUTPUTS[step] as OutputContract;
  const line = stdout.trimEnd().split("\n").at(-1) ?? "";
  let value: unknown = line;
  if (contract.form === "json") {
    try {
      value = JSON.parse(line);
    } catch {
      throw new Error(`step ${step}: its output's last line is not JSON: ${JSON.stringify(line.slice(0, 80))}`);
    }
  }
  const result = contract.schema.safeParse(value);
  if (!result.success) throw new Error(`step ${step}: its output breaks the step's contract: ${formatIssues(result.error, "(output)")}`);
  return result.data as StepOutput<N>;
}

/**
 * The public directory documents tor keeps in its DataDirectory, with the
 * first line each must start with. A relay with a disk reloads them at start;
 * carried over, the redeployed relay knows the network from its first second.
 * Without a consensus, an exit refuses streams from relays it does not know
 * (RefuseUnknownExits) until it has fetched one.
 */
export const DIRECTORY_CACHE_FILES = {
  "cached-certs": "dir-key-certificate-version 3",
  "cached-consensus": "network-status-version 3",
  "cached-microdesc-consensus": "network-status-version 3 microdesc",
} as const;

/**
 * The most one directory document may be, in either identity mode. The
 * public network's consensuses are about 3 MB each (2026): room for growth,
 * not for abuse. A larger one is left behind (the relay fetches it anew).
 */
export const MAX_DIRECTORY_DOCUMENT_BYTES = 8 * 1024 * 1024;

/** What a relay hands over before a rebuild, relative to tor's DataDirectory: onion keys, state and directory documents. */
export const RELAY_EXPORT_FILES: readonly string[] = [...ONION_KEY_FILES.map((file) => `keys/${file}`), "state", ...Object.keys(DIRECTORY_CACHE_FILES)];
