/**
 * The inputs of each image build, and their digests. Digests are computed at
 * preview time from everything a build reads, so a build runs exactly when one
 * of its inputs changed, and its outputs can be named after them.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import type { ImageConfig, StackConfig } from "./config";
import { inProject, type PlannedRelay } from "./fleet";
import { IDENTITY_FILES } from "./tor-keys";

/** The command the collection key may run on a relay; pinned into its authorized_keys line. */
export const EXPORT_STATE_COMMAND = "/usr/local/sbin/relay-export-state";

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
  /** Digest of the scripts that build the base. */
  scripts: string;
}

export const DEFAULT_RELEASE: Record<ImageConfig["flavour"], string> = { alpine: "v3.23", debian: "bookworm" };

export function baseImageInputs(image: ImageConfig, projectDir: string): BaseImageInputs {
  return {
    flavour: image.flavour,
    release: image.release ?? DEFAULT_RELEASE[image.flavour],
    extraPackages: [...image.extraPackages].sort(),
    geoip: image.geoip,
    scripts: treeDigest(projectDir, [`images/${image.flavour}`, "images/rootfs"]),
  };
}

export function baseImageDigest(inputs: BaseImageInputs): string {
  return sha256(JSON.stringify(inputs));
}

/** /etc/relay/network.env, read by the relay's init. */
export function renderNetworkEnv(relay: PlannedRelay["config"], sshPort: number): string {
  const lines = [
    `RELAY_NICKNAME=${relay.nickname}`,
    `RELAY_MAC=${relay.mac.toLowerCase()}`,
    `RELAY_IPV4=${relay.ipv4.address}`,
    `RELAY_IPV4_GATEWAY=${relay.ipv4.gateway}`,
  ];
  if (relay.ipv6) lines.push(`RELAY_IPV6=${relay.ipv6.address}`, `RELAY_IPV6_GATEWAY=${relay.ipv6.gateway}`);
  lines.push(`RELAY_NAMESERVERS="${relay.nameservers.join(" ")}"`, `RELAY_SSH_PORT=${sshPort}`);
  return lines.join("\n") + "\n";
}

/** The collection key may run the state export and nothing else. */
export function authorizedKeysLine(collectorPublicKey: string): string {
  const key = collectorPublicKey.trim().split(/\s+/).slice(0, 2).join(" ");
  if (!/^ssh-(ed25519|rsa) [A-Za-z0-9+/=]+$/.test(key)) throw new Error("the collection public key is not an OpenSSH public key line");
  return `restrict,command="${EXPORT_STATE_COMMAND}" ${key}`;
}

/** What the relay build script reads from its environment; no secret bytes, only texts and paths. */
export interface RelayBuildEnvironment {
  RELAY_TORRC: string;
  RELAY_NETWORK_ENV: string;
  RELAY_AUTHORIZED_KEYS: string;
  RELAY_CMDLINE: string;
  RELAY_FAMILY_KEY?: string;
  SB_KEY?: string;
  SB_CERT?: string;
}

export function relayBuildEnvironment(
  relay: PlannedRelay,
  config: Pick<StackConfig, "image" | "stateCollection">,
  collectorPublicKey: string,
  projectDir = ".",
): RelayBuildEnvironment {
  const secureBoot = config.image.secureBoot;
  return {
    ...(secureBoot ? { SB_KEY: inProject(projectDir, secureBoot.privateKeyFile), SB_CERT: inProject(projectDir, secureBoot.certificateFile) } : {}),
    RELAY_TORRC: relay.torrc,
    RELAY_NETWORK_ENV: renderNetworkEnv(relay.config, relay.config.sshPort ?? config.stateCollection.port),
    RELAY_AUTHORIZED_KEYS: authorizedKeysLine(collectorPublicKey),
    RELAY_CMDLINE: config.image.kernelCmdline,
    ...(relay.familyKeyFile ? { RELAY_FAMILY_KEY: relay.familyKeyFile } : {}),
  };
}

/** Files of the key directory that enter the image besides the identity files. */
const SSH_HOST_KEY_FILES = ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"];

/**
 * What one relay's image is made from, as named digests: a rebuild's diff
 * names the input that changed. What is collected from the running relay is
 * left out on purpose (it changes by itself and must not, alone, cause a
 * rebuild). Key files enter as their SHA-256 only.
 */
export function relayImageInputs(relay: PlannedRelay, baseDigest: string, environment: RelayBuildEnvironment, relayScripts: string) {
  const fileDigest = (...files: string[]) => sha256(...files.map((file) => readFileSync(file)));
  return {
    base: baseDigest,
    scripts: relayScripts,
    torrc: sha256(environment.RELAY_TORRC),
    network: sha256(environment.RELAY_NETWORK_ENV),
    kernelCmdline: sha256(environment.RELAY_CMDLINE),
    collectionKey: sha256(environment.RELAY_AUTHORIZED_KEYS),
    identityKeys: fileDigest(...IDENTITY_FILES.map((file) => join(relay.keysDir, file))),
    sshHostKey: fileDigest(...SSH_HOST_KEY_FILES.map((file) => join(relay.keysDir, file))),
    familyKey: relay.familyKeyFile ? fileDigest(relay.familyKeyFile) : "none",
    secureBoot: environment.SB_CERT ? fileDigest(environment.SB_KEY!, environment.SB_CERT) : "unsigned",
  };
}
export type RelayImageInputs = ReturnType<typeof relayImageInputs>;

export function relayImageDigest(inputs: RelayImageInputs): string {
  return sha256(JSON.stringify(Object.entries(inputs).sort(([a], [b]) => a.localeCompare(b))));
}

/** Content-addressed, so that Proxmox (which cannot see content changes) sees a new file. */
export function isoFileName(nickname: string, imageDigest: string): string {
  return `relay-${nickname}-${imageDigest.slice(0, 12)}.iso`;
}

export const RELAY_SCRIPT_PATHS = ["images/build-relay.sh", "images/build-overlay.sh", "images/build-uki.sh", "images/build-iso.sh"];
