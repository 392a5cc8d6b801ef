/**
 * The inputs of each image build, and their digests. Digests are computed at
 * preview time from everything a build reads, so a build runs exactly when one
 * of its inputs changed, and its outputs can be named after them.
 * I/O: reads the image scripts and key files it digests.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import type { ResolvedBroker } from "../broker/broker-endpoint";
import type { ImageConfig, StackConfig } from "../config/config";
import { TOR_RUNTIME, type PlannedRelay } from "./fleet";
import { inProject } from "../core/paths";
import type { Hardening } from "../render/hardening";
import { KERNEL_MODULES, SSH_HOST_KEY_FILES } from "../image/image-layout";
import { GUEST_PATHS } from "../image/guest-paths";
import type { StepSpec } from "../steps/steps";
import type { KeyFileDigests } from "./preview-record";
import { IDENTITY_FILES } from "../tor/tor-keys";
import { sha256File } from "../core/digest";

/** The command the collection key may run on a relay (its requests: export-state, health); pinned into its authorized_keys line. */
const RELAY_COLLECTOR_COMMAND = "/usr/local/sbin/relay-collector";

function sha256(...parts: (string | Buffer)[]): string {
  const hash = createHash("sha256");
  for (const part of parts) {
    // Length-prefixed, so that ("ab","c") and ("a","bc") differ.
    hash.update(`${Buffer.byteLength(part)}:`);
    hash.update(part);
  }
  return hash.digest("hex");
}

/** Every file under `paths`, relative to `root`, with its content and mode. */
export function treeDigest(root: string, paths: string[]): string {
  const files: string[] = [];
  const walk = (path: string) => {
    const stat = statSync(path);
    if (stat.isDirectory()) for (const entry of readdirSync(path).sort()) walk(join(path, entry));
    else files.push(path);
  };
  for (const path of paths) walk(join(root, path));
  return sha256(...files.sort().flatMap((file) => [relative(root, file), (statSync(file).mode & 0o777).toString(8), readFileSync(file)]));
}

export interface BaseImageInputs {
  flavour: ImageConfig["flavour"];
  release: string;
  extraPackages: string[];
  geoip: boolean;
  /** The user tor drops to in this flavour (TOR_RUNTIME). */
  torUser: string;
  /** Digest of the scripts that build the base. */
  scripts: string;
  /** The kernel modules the base keeps (lib/image/image-layout.ts KERNEL_MODULES). */
  kernelModules: typeof KERNEL_MODULES;
  /** Where the guest's scripts find each file (lib/image/guest-paths.ts), written into the base. */
  guestPaths: typeof GUEST_PATHS;
  /** The date inside the base and every image built on it (SOURCE_DATE_EPOCH). */
  sourceDateEpoch: number;
  /** zstd's level for the RAM root (image.compressLevel). */
  compressLevel: number;
  /** Debian: the apt sources the base is built from (lib/image/package-index.ts aptSourceLines). */
  sources?: string[];
  /**
   * Debian: every package the base installs, "name version architecture",
   * sorted: what the mirror serves now or what the stack's lock file holds
   * (lib/image/package-set.ts planBasePackages). A Debian update changes it, and
   * with it every relay image.
   */
  packages?: string[];
}

export const DEFAULT_RELEASE: Record<ImageConfig["flavour"], string> = { alpine: "v3.23", debian: "bookworm" };

/** `packageSet`: the Debian base's sources and resolved packages (lib/image/package-set.ts planBasePackages); none for Alpine. */
export function baseImageInputs(image: ImageConfig, projectDir: string, packageSet?: { sources: string[]; packages: string[] }): BaseImageInputs {
  if (image.flavour === "debian" && !packageSet) throw new Error("the Debian base's inputs need its resolved package set (lib/image/package-set.ts planBasePackages)");
  return {
    flavour: image.flavour,
    release: image.release ?? DEFAULT_RELEASE[image.flavour],
    extraPackages: [...image.extraPackages].sort(),
    geoip: image.geoip,
    torUser: TOR_RUNTIME[image.flavour].user,
    scripts: treeDigest(projectDir, [`images/${image.flavour}`, "images/rootfs"]),
    kernelModules: KERNEL_MODULES,
    guestPaths: GUEST_PATHS,
    sourceDateEpoch: image.sourceDateEpoch,
    compressLevel: image.compressLevel,
    ...(packageSet ? { sources: packageSet.sources, packages: packageSet.packages } : {}),
  };
}

export function baseImageDigest(inputs: BaseImageInputs): string {
  return sha256(JSON.stringify(inputs));
}

/** The build-base step's spec for these inputs, built into `dir`: what the step needs of them (not the digests of scripts and layout). */
export function baseBuildSpec(inputs: BaseImageInputs, dir: string): StepSpec<"build-base"> {
  const { flavour, release, geoip, extraPackages, torUser, sourceDateEpoch, compressLevel, sources, packages } = inputs;
  return { flavour, release, geoip, extraPackages, torUser, sourceDateEpoch, compressLevel, dir, ...(sources ? { sources } : {}), ...(packages ? { packages } : {}) };
}

/**
 * /etc/relay/network.env: KEY=value lines that the relay's boot reads as data
 * (relay-config), never sources. Every value is a validated address, MAC,
 * nickname or port.
 */
export function renderNetworkEnv(relay: PlannedRelay["config"], sshPort: number): string {
  const lines = [
    `RELAY_NICKNAME=${relay.nickname}`,
    `RELAY_MAC=${relay.mac.toLowerCase()}`,
    `RELAY_IPV4=${relay.ipv4.address}`,
    `RELAY_IPV4_GATEWAY=${relay.ipv4.gateway}`,
    `RELAY_IPV4_ONLINK=${relay.ipv4.onLink ? "yes" : "no"}`,
  ];
  if (relay.ipv6) lines.push(`RELAY_IPV6=${relay.ipv6.address}`, `RELAY_IPV6_GATEWAY=${relay.ipv6.gateway}`, `RELAY_IPV6_ONLINK=${relay.ipv6.onLink ? "yes" : "no"}`);
  // An exit asks its own resolver (unbound on 127.0.0.1); the configured servers are that resolver's upstreams.
  lines.push(`RELAY_NAMESERVERS=${relay.exit.enabled ? "127.0.0.1" : relay.nameservers.join(" ")}`, `RELAY_SSH_PORT=${sshPort}`);
  return lines.join("\n") + "\n";
}

/** The collection key may run the state export and nothing else. */
function authorizedKeysLine(collectorPublicKey: string): string {
  const key = collectorPublicKey.trim().split(/\s+/).slice(0, 2).join(" ");
  if (!/^ssh-(ed25519|rsa) [A-Za-z0-9+/=]+$/.test(key)) throw new Error("the collection public key is not an OpenSSH public key line");
  return `restrict,command="${RELAY_COLLECTOR_COMMAND}" ${key}`;
}

/** The rendered texts of one relay's image, and its Secure Boot key: what its recipe carries besides paths. */
export interface RelayImageTexts {
  torrc: string;
  networkEnv: string;
  /** Image mode only: the collection key's authorized_keys line. A broker-mode image has no SSH server. */
  authorizedKeys?: string;
  kernelCmdline: string;
  /** An exit's resolver configuration (unbound.conf). */
  resolverConf?: string;
  /** An exit's notice page (lib/render/exit-notice.ts). */
  exitNotice?: string;
  /** Connection limits, kernel settings and tor's open-file limit (lib/render/hardening.ts). */
  hardening?: Hardening;
  secureBoot?: { privateKeyFile: string; certificateFile: string };
  /** Broker mode: the agent, its configuration and the broker's CA instead of any key (lib/steps/steps.ts relayRecipeSpec). */
  broker?: { agentBinary: string; agentConfig: string; caPem?: string; bootToken?: boolean };
}

/**
 * Broker mode: what the image carries instead of keys, less the agent's
 * configuration, which names the image's own digest and is rendered once
 * that is known (renderAgentConfig).
 */
export interface BrokerImageParts {
  agentBinary: string;
  /** The agent binary's SHA-256, read once per plan (it is several megabytes), not once per relay. */
  agentSha256: string;
  caPem?: string;
  /** attestation "none": the build makes a single-use boot token. */
  bootToken?: boolean;
}

/**
 * What every broker-mode image of a stack carries instead of keys. Reads the
 * agent binary; the broker's CA comes as planFleet read and checked it.
 */
export function brokerImageParts(broker: Pick<ResolvedBroker, "attestation">, agentBinary: string, caPem: string | undefined): BrokerImageParts {
  return {
    agentBinary,
    agentSha256: sha256File(agentBinary),
    ...(caPem !== undefined ? { caPem } : {}),
    ...(broker.attestation === "none" ? { bootToken: true } : {}),
  };
}

export function relayImageTexts(
  relay: PlannedRelay,
  config: Pick<StackConfig, "image" | "stateCollection">,
  collectorPublicKey: string,
  projectDir = ".",
  brokerMode = false,
): RelayImageTexts {
  const secureBoot = config.image.secureBoot;
  return {
    torrc: relay.torrc,
    networkEnv: renderNetworkEnv(relay.config, relay.config.sshPort ?? config.stateCollection.port),
    ...(brokerMode ? {} : { authorizedKeys: authorizedKeysLine(collectorPublicKey) + "\n" }),
    kernelCmdline: config.image.kernelCmdline,
    ...(relay.resolverConf ? { resolverConf: relay.resolverConf } : {}),
    ...(relay.exitNotice ? { exitNotice: relay.exitNotice } : {}),
    hardening: relay.hardening,
    ...(secureBoot ? { secureBoot: { privateKeyFile: inProject(projectDir, secureBoot.privateKeyFile), certificateFile: inProject(projectDir, secureBoot.certificateFile) } } : {}),
  };
}

/**
 * What one relay's image is made from, as named digests: a rebuild's diff
 * names the input that changed. What is collected from the running relay is
 * left out on purpose (it changes by itself and must not, alone, cause a
 * rebuild). Key files enter as their SHA-256 only.
 */
export function relayImageInputs(
  relay: PlannedRelay,
  baseDigest: string,
  texts: RelayImageTexts,
  relayScripts: string,
  broker?: { parts: BrokerImageParts; agentConfigFacts: unknown },
) {
  const digests = keyFileDigests(relay, texts);
  const common = {
    base: baseDigest,
    scripts: relayScripts,
    torrc: sha256(texts.torrc),
    network: sha256(texts.networkEnv),
    kernelCmdline: sha256(texts.kernelCmdline),
    resolver: texts.resolverConf ? sha256(texts.resolverConf) : "none",
    exitNotice: texts.exitNotice ? sha256(texts.exitNotice) : "none",
    hardening: texts.hardening ? sha256(JSON.stringify(texts.hardening)) : "none",
    secureBoot: digests.secureBoot(),
  };
  if (broker) {
    // No key is in the image: a new signing certificate is uploaded to the broker and rebuilds nothing.
    return {
      ...common,
      collectionKey: "none",
      identityKeys: "broker",
      sshHostKey: "none",
      familyKey: "broker",
      agent: broker.parts.agentSha256,
      broker: sha256(JSON.stringify(broker.agentConfigFacts), broker.parts.caPem ?? "", broker.parts.bootToken ? "boot-token" : "snp"),
    };
  }
  return {
    ...common,
    collectionKey: sha256(texts.authorizedKeys ?? ""),
    identityKeys: digests.identityKeys(),
    sshHostKey: digests.sshHostKey(),
    familyKey: digests.familyKey(),
  };
}

/**
 * The image inputs that digest private key files, each read only when asked
 * for (a broker-mode image digests no identity file). In a preview planned
 * from a preview record, the key-generation host's digests of the same files.
 */
export function keyFileDigests(relay: Pick<PlannedRelay, "keysDir" | "familyKeyFile" | "previewRecord">, texts: Pick<RelayImageTexts, "secureBoot">): { [K in keyof KeyFileDigests]: () => string } {
  const fileDigest = (...files: string[]) => sha256(...files.map((file) => readFileSync(file)));
  const recorded = relay.previewRecord?.digests;
  return {
    identityKeys: () => recorded?.identityKeys ?? fileDigest(...IDENTITY_FILES.map((file) => join(relay.keysDir, file))),
    sshHostKey: () => recorded?.sshHostKey ?? fileDigest(...SSH_HOST_KEY_FILES.map((file) => join(relay.keysDir, file))),
    familyKey: () => recorded?.familyKey ?? (relay.familyKeyFile ? fileDigest(relay.familyKeyFile) : "none"),
    secureBoot: () => recorded?.secureBoot ?? (texts.secureBoot ? fileDigest(texts.secureBoot.privateKeyFile, texts.secureBoot.certificateFile) : "unsigned"),
  };
}
export type RelayImageInputs = Record<string, string>;

export function relayImageDigest(inputs: RelayImageInputs): string {
  return sha256(JSON.stringify(Object.entries(inputs).sort(([a], [b]) => a.localeCompare(b))));
}

/** Everything that builds a relay image from the base: a change rebuilds every relay. */
export const RELAY_SCRIPT_PATHS = ["images/build-overlay.sh", "images/build-uki.sh", "images/build-iso.sh", "lib/image/relay-build.ts", "lib/image/image-layout.ts", "lib/broker/broker-agent.ts"];
