/**
 * The key bundle a preview without private keys needs (`npm run keys --
 * export-shipped`): the files it reads, at the paths the stack config gives
 * them, plus a preview record per relay in place of its private key files.
 * Paths come from the program's own config reading and planning
 * (lib/config/stack-file.ts, planFleet), so the bundle follows the config wherever
 * it puts a key. Does I/O: reads the stack config and key files.
 */
import { isAbsolute, join, relative } from "node:path";
import type { StackConfig } from "../config/config";
import { planFleet } from "./fleet";
import { inProject } from "../core/paths";
import { keyFileDigests, relayImageTexts } from "./image-inputs";
import { PREVIEW_PUBLIC_FILES, PREVIEW_RECORD_FILE, publicFilesDigest, type PreviewRecord } from "./preview-record";

export interface PreviewBundle {
  /** Files to copy as they are, relative to the project: public keys and certificates only. */
  files: string[];
  /** Preview records to write, relative to the project. */
  records: { path: string; record: PreviewRecord }[];
}

export class BundleError extends Error {}

/**
 * Plans the fleet as a preview would (every file it reads must be there and
 * valid, or planFleet's FleetError names it) and lists what a runner needs.
 */
export function previewBundle(config: StackConfig, projectDir: string, now = new Date()): PreviewBundle {
  const plan = planFleet(config, { projectDir, now, needCollectionKey: false });
  const inside = (field: string, path: string): string => {
    const rel = relative(projectDir, inProject(projectDir, path));
    // The runner unpacks the bundle into its checkout: a path elsewhere would not be where its preview looks.
    if (isAbsolute(rel) || rel.startsWith("..")) throw new BundleError(`${field}: ${path} is outside the project; a pull request's preview unpacks the bundle into its checkout, so keep the file under the project directory`);
    return rel;
  };
  const files = [inside("stateCollection.privateKeyFile", `${config.stateCollection.privateKeyFile}.pub`)];
  const broker = config.identity.mode === "broker" ? config.identity.broker : undefined;
  if (broker?.caFile) files.push(inside("identity.broker.caFile", broker.caFile));
  const records = plan.relays.map((relay, index) => {
    const field = `relays[${index}].keysDir`;
    const keysDir = inside(field, relay.keysDir);
    files.push(...PREVIEW_PUBLIC_FILES.map((file) => join(keysDir, file)));
    const digests = keyFileDigests(relay, relayImageTexts(relay, config, plan.collectorPublicKey, projectDir));
    const record: PreviewRecord = {
      relay: relay.config.name,
      rsaFingerprint: relay.identity.rsaFingerprint,
      publicFiles: publicFilesDigest(relay.keysDir),
      digests: { identityKeys: digests.identityKeys(), sshHostKey: digests.sshHostKey(), familyKey: digests.familyKey(), secureBoot: digests.secureBoot() },
      ...(relay.familyId ? { familyId: relay.familyId } : {}),
    };
    return { path: join(keysDir, PREVIEW_RECORD_FILE), record };
  });
  return { files: [...new Set(files)], records };
}
