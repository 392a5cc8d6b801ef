/**
 * Builds one relay image from its recipe: stages the overlay as
 * lib/image/image-layout.ts lays it out, packs it (images/build-overlay.sh), makes
 * the UKI with ukify (images/build-uki.sh) and wraps it in an ISO
 * (images/build-iso.sh). The same function builds a rollout's image and a
 * rollback's, which is the last healthy recipe with the newest onion keys.
 * I/O: reads keys, writes the private build directory, runs the scripts.
 */
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, join, relative } from "node:path";
import { DIRECTORY_CACHE_FILE_MODE, ISO_LABEL_FILE, isoFileName, KEY_FILE_MODE, OVERLAY_DIRS, OVERLAY_FILES, overlayDirectoryCachePath, overlayKeyPath, overlaySshPath, SSH_HOST_KEY_FILES, sshFileMode } from "./image-layout";
import { readBaseRecord } from "./base-record";
import { runTool } from "../core/run";
import { DIRECTORY_CACHE_FILES, RELAY_EXPORT_FILES, type RelayRecipe } from "../steps/steps";
import { IDENTITY_FILES, ONION_KEY_FILES } from "../tor/tor-keys";
import { sha256File } from "../core/digest";

/** What a finished image build leaves in its directory, and records in image.json. */
export interface BuiltImage {
  relay: string;
  nickname: string;
  imageDigest: string;
  isoName: string;
  iso: string;
  uki: string;
  /** The overlay's files: path, SHA-256 and mode (never bytes). */
  files: string;
  isoSha256: string;
  ukiSha256: string;
  isoBytes: number;
  ukiBytes: number;
  /** The SSH host key this image answers with: the pin for talking to it once it runs. None in broker mode: no SSH server. */
  hostPublicKey: string;
  /** Onion key files it carries (none on a first deploy). */
  onionKeys: string[];
  /** The base's layers this image carries, in order, before its overlay: a broker-mode image leaves out the SSH server's. */
  baseLayers: string[];
  /** attestation "none": the SHA-256 of the boot token inside the image, what the broker is told to expect. Never the token. */
  bootTokenSha256?: string;
}

const IMAGE_RECORD = "image.json";
export const RECIPE_RECORD = "recipe.json";


/** The label inside the image and at the ISO's root: public facts only. */
function imageLabel(recipe: Pick<RelayRecipe, "relay" | "nickname" | "imageDigest">): string {
  return JSON.stringify({ relay: recipe.relay, nickname: recipe.nickname, imageDigest: recipe.imageDigest }) + "\n";
}

function stageOverlay(recipe: RelayRecipe, staging: string, options: { extraTorrc?: string }): { onionKeys: string[]; bootTokenSha256?: string } {
  const at = (path: string) => join(staging, path);
  for (const dir of OVERLAY_DIRS) {
    mkdirSync(at(dir.path), { recursive: true });
    chmodSync(at(dir.path), dir.mode);
  }
  const write = (file: { path: string; mode: number }, content: string) => writeFileSync(at(file.path), content, { mode: file.mode });
  write(OVERLAY_FILES.torrc, recipe.torrc + (options.extraTorrc ?? ""));
  write(OVERLAY_FILES.networkEnv, recipe.networkEnv);
  write(OVERLAY_FILES.imageLabel, imageLabel(recipe));
  if (recipe.resolverConf) write(OVERLAY_FILES.resolverConf, recipe.resolverConf);
  if (recipe.exitNotice) write(OVERLAY_FILES.exitNotice, recipe.exitNotice);
  if (recipe.hardening) {
    if (recipe.hardening.ruleset) write(OVERLAY_FILES.nftRuleset, recipe.hardening.ruleset);
    write(OVERLAY_FILES.sysctls, recipe.hardening.sysctls);
    write(OVERLAY_FILES.openFiles, `${recipe.hardening.openFiles}\n`);
  }
  const copy = (from: string, to: string, mode: number) => {
    if (!existsSync(from)) throw new Error(`${from} is missing; the image of this relay cannot be built without it`);
    // Checked at plan time too (lib/tor/key-files.ts); a link made since would ship whatever it points to.
    if (to !== OVERLAY_FILES.agent.path && !lstatSync(from).isFile()) throw new Error(`${from} is not a regular file (a symbolic link?); refusing to build an image with it`);
    copyFileSync(from, at(to));
    chmodSync(at(to), mode);
  };
  if (recipe.broker) {
    // No private key, host key, collection key, onion key or state: the agent fetches what tor needs into RAM.
    copy(recipe.broker.agentBinary, OVERLAY_FILES.agent.path, OVERLAY_FILES.agent.mode);
    write(OVERLAY_FILES.agentConfig, recipe.broker.agentConfig);
    if (recipe.broker.caPem) write(OVERLAY_FILES.brokerCa, recipe.broker.caPem);
    if (!recipe.broker.bootToken) return { onionKeys: [] };
    // Made here, once per build: a rebuild of the same recipe gets a new token, and the old one dies with its image.
    const token = randomBytes(32).toString("hex");
    write(OVERLAY_FILES.bootToken, token);
    return { onionKeys: [], bootTokenSha256: createHash("sha256").update(token).digest("hex") };
  }
  if (!recipe.authorizedKeys) throw new Error(`relay ${recipe.relay}: an image-mode recipe needs the collection key's authorized_keys line`);
  write(OVERLAY_FILES.authorizedKeys, recipe.authorizedKeys);
  write(OVERLAY_FILES.exportList, RELAY_EXPORT_FILES.join("\n") + "\n");

  for (const file of IDENTITY_FILES) copy(join(recipe.keysDir, file), overlayKeyPath(file), KEY_FILE_MODE);
  if (recipe.familyKeyFile) copy(recipe.familyKeyFile, overlayKeyPath(basename(recipe.familyKeyFile)), KEY_FILE_MODE);
  for (const file of SSH_HOST_KEY_FILES) copy(join(recipe.keysDir, file), overlaySshPath(file), sshFileMode(file));
  const onionKeys = ONION_KEY_FILES.filter((file) => existsSync(join(recipe.collectedDir, "keys", file)));
  for (const file of onionKeys) copy(join(recipe.collectedDir, "keys", file), overlayKeyPath(file), KEY_FILE_MODE);
  if (existsSync(join(recipe.collectedDir, "state"))) copy(join(recipe.collectedDir, "state"), OVERLAY_FILES.state.path, OVERLAY_FILES.state.mode);
  for (const file of Object.keys(DIRECTORY_CACHE_FILES)) {
    if (existsSync(join(recipe.collectedDir, file))) copy(join(recipe.collectedDir, file), overlayDirectoryCachePath(file), DIRECTORY_CACHE_FILE_MODE);
  }
  return { onionKeys };
}

/** The overlay's file list for the SBOM: path, SHA-256 and mode of every file. */
function overlayFileList(staging: string): { path: string; sha256: string; mode: string }[] {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(join(dir, entry.name));
      else files.push(join(dir, entry.name));
    }
  };
  walk(staging);
  return files
    .map((file) => ({ path: `/${relative(staging, file)}`, sha256: sha256File(file), mode: (statSync(file).mode & 0o777).toString(8) }))
    .sort((a, b) => (a.path < b.path ? -1 : 1));
}

/**
 * Builds the image the recipe describes into recipe.outDir (made 0700).
 * `extraTorrc` exists for the rollout tests' fault injection only.
 */
export function buildRelayImage(recipe: RelayRecipe, projectDir: string, options: { extraTorrc?: string } = {}): BuiltImage {
  const out = recipe.outDir;
  if (!existsSync(join(recipe.baseDir, ".complete"))) {
    throw new Error(`${recipe.baseDir} is not a finished base build; run pulumi up again to build it`);
  }
  mkdirSync(out, { recursive: true, mode: 0o700 });
  chmodSync(out, 0o700);
  const staging = mkdtempSync(join(out, "staging-"));
  const overlay = join(out, "overlay.cpio");
  try {
    const { onionKeys, bootTokenSha256 } = stageOverlay(recipe, staging, options);
    writeFileSync(join(out, "files.json"), JSON.stringify(overlayFileList(staging), null, 1) + "\n");
    const script = (name: string) => join(projectDir, "images", name);
    // One date inside the whole image, the base's: the same recipe gives the same bytes.
    const env = { ...process.env, SOURCE_DATE_EPOCH: String(readBaseRecord(recipe.baseDir).sourceDateEpoch) };
    runTool("bash", [script("build-overlay.sh"), staging, overlay], { what: "packing the overlay", env });
    const signing = recipe.secureBoot ? [recipe.secureBoot.privateKeyFile, recipe.secureBoot.certificateFile] : [];
    // Image mode carries the base's SSH server layer (state collection); a broker-mode image has no SSH server at all.
    runTool("bash", [script("build-uki.sh"), recipe.baseDir, recipe.broker ? "no" : "yes", overlay, recipe.kernelCmdline, out, ...signing], { what: "ukify", env });
    const label = join(out, ISO_LABEL_FILE);
    writeFileSync(label, imageLabel(recipe));
    const unnamed = join(out, "relay.iso.tmp");
    runTool("bash", [script("build-iso.sh"), join(out, "relay.efi"), label, unnamed], { what: "building the ISO", env });

    const isoSha256 = sha256File(unnamed);
    const isoName = isoFileName(recipe.nickname, recipe.imageDigest, isoSha256);
    renameSync(unnamed, join(out, isoName));
    const uki = join(out, "relay.efi");
    const built: BuiltImage = {
      relay: recipe.relay,
      nickname: recipe.nickname,
      imageDigest: recipe.imageDigest,
      isoName,
      iso: join(out, isoName),
      uki,
      files: join(out, "files.json"),
      isoSha256,
      ukiSha256: sha256File(uki),
      isoBytes: statSync(join(out, isoName)).size,
      ukiBytes: statSync(uki).size,
      hostPublicKey: recipe.broker ? "" : readFileSync(join(recipe.keysDir, "ssh_host_ed25519_key.pub"), "utf8").trim().split(/\s+/).slice(0, 2).join(" "),
      onionKeys,
      baseLayers: recipe.broker ? ["base.cpio.zst"] : ["base.cpio.zst", "ssh.cpio.zst"],
      ...(bootTokenSha256 ? { bootTokenSha256 } : {}),
    };
    writeFileSync(join(out, RECIPE_RECORD), JSON.stringify(recipe, null, 1) + "\n", { mode: 0o600 });
    writeFileSync(join(out, IMAGE_RECORD), JSON.stringify(built, null, 1) + "\n", { mode: 0o600 });
    return built;
  } finally {
    // The staging tree and the packed overlay hold key bytes; the UKI and ISO are the only copies left.
    rmSync(staging, { recursive: true, force: true });
    rmSync(overlay, { force: true });
  }
}

export function readBuiltImage(dir: string): BuiltImage {
  return JSON.parse(readFileSync(join(dir, IMAGE_RECORD), "utf8")) as BuiltImage;
}
