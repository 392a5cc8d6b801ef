/**
 * What a preview without private keys (a pull request's runner) reads in
 * their place: per relay, a record of the public facts and image-input
 * digests that the key-generation host derived from the private key files.
 * The digests are the ones every image's inputs already carry in the stack's
 * state (lib/plan/image-inputs.ts), so the record reveals nothing the state does
 * not. Does I/O: reads and hashes key files.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";

/** Beside a relay's public key files in the exported bundle; never in the key store. */
export const PREVIEW_RECORD_FILE = "preview-record.json";

/** The relay's key files that a preview reads as they are: all public. */
export const PREVIEW_PUBLIC_FILES = ["ed25519_master_id_public_key", "ed25519_signing_cert", "ssh_host_ed25519_key.pub"] as const;

const previewRecordSchema = z
  .object({
    relay: z.string(),
    /** Derived from secret_id_key. */
    rsaFingerprint: z.string().regex(/^[0-9A-F]{40}$/),
    /** SHA-256 of PREVIEW_PUBLIC_FILES as exported: a record never vouches for other public files. */
    publicFiles: z.string().regex(/^[0-9a-f]{64}$/),
    /** The image inputs that digest private files (identityKeys, sshHostKey, familyKey, secureBoot). */
    digests: z.object({ identityKeys: z.string(), sshHostKey: z.string(), familyKey: z.string(), secureBoot: z.string() }).strict(),
    /** The FamilyId of the relay's family key, if its family has one. */
    familyId: z.string().optional(),
  })
  .strict();
export type PreviewRecord = z.infer<typeof previewRecordSchema>;
export type KeyFileDigests = PreviewRecord["digests"];

/** SHA-256 over the public key files a record was made with, in PREVIEW_PUBLIC_FILES order. */
export function publicFilesDigest(keysDir: string): string {
  const hash = createHash("sha256");
  for (const file of PREVIEW_PUBLIC_FILES) hash.update(createHash("sha256").update(readFileSync(join(keysDir, file))).digest());
  return hash.digest("hex");
}

/**
 * A relay's preview record from `keysDir`, checked against the public files
 * beside it. Throws an Error naming the file and the fix.
 */
export function readPreviewRecord(relay: string, keysDir: string): PreviewRecord {
  const file = join(keysDir, PREVIEW_RECORD_FILE);
  const again = "Export the shipped files again on the key-generation host (npm run --silent keys -- export-shipped --stack STACK)";
  for (const publicFile of PREVIEW_PUBLIC_FILES) {
    if (!existsSync(join(keysDir, publicFile))) throw new Error(`relay ${relay}: ${join(keysDir, publicFile)} is missing beside ${file}. ${again}`);
  }
  let parsed: ReturnType<typeof previewRecordSchema.safeParse>;
  try {
    parsed = previewRecordSchema.safeParse(JSON.parse(readFileSync(file, "utf8")));
  } catch (err) {
    throw new Error(`relay ${relay}: ${file} is unreadable (${(err as Error).message}). ${again}`);
  }
  if (!parsed.success || parsed.data.relay !== relay) throw new Error(`relay ${relay}: ${file} is not this relay's preview record. ${again}`);
  if (parsed.data.publicFiles !== publicFilesDigest(keysDir)) {
    throw new Error(`relay ${relay}: ${file} was made from other key files than ${PREVIEW_PUBLIC_FILES.join(", ")} beside it (renewed since?). ${again}`);
  }
  return parsed.data;
}
