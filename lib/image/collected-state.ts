/**
 * What a running relay hands over before its image is rebuilt: onion keys and
 * tor's state file. Validated here before they go into a new image.
 * I/O: reads the collected directory.
 */
import { existsSync, lstatSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { DIRECTORY_CACHE_FILES, MAX_DIRECTORY_DOCUMENT_BYTES, RELAY_EXPORT_FILES } from "../steps/steps";
import { checkNtorKey, checkRsaOnionKey, KeyFileError } from "../tor/tor-keys";

export interface CollectedSummary {
  files: string[];
  lastRotatedOnionKey?: string;
}

const EXPECTED = new Set(["keys", ...RELAY_EXPORT_FILES]);

/**
 * A relay is not trusted to send only what it should: a symlink in its
 * export could make the next image carry a file of the build host (another
 * relay's onion key, say). Only the expected names, as plain files, pass.
 */
function checkEntries(dir: string, prefix = ""): void {
  for (const name of readdirSync(dir)) {
    const path = prefix ? `${prefix}/${name}` : name;
    const stat = lstatSync(join(dir, name));
    if (!EXPECTED.has(path)) throw new Error(`collected state holds an unexpected entry "${path}"; refusing to build an image with it`);
    if (stat.isDirectory() && path === "keys") checkEntries(join(dir, name), path);
    else if (!stat.isFile() || path === "keys") throw new Error(`collected state entry "${path}" is not a plain file; refusing to build an image with it`);
  }
}

/** Validates a directory laid out as the relay exports it (keys/…, state); throws naming the bad file. */
export function validateCollectedState(dir: string): CollectedSummary {
  checkEntries(dir);
  const files: string[] = [];
  const check = (file: string, validate: (bytes: Buffer, name: string) => void) => {
    const path = join(dir, file);
    if (!existsSync(path)) return;
    try {
      validate(readFileSync(path), file);
    } catch (err) {
      if (err instanceof KeyFileError) throw new Error(`collected ${err.message}; refusing to build an image with it`);
      throw err;
    }
    files.push(file);
  };
  check("keys/secret_onion_key", (bytes, name) => checkRsaOnionKey(bytes, name));
  check("keys/secret_onion_key.old", (bytes, name) => checkRsaOnionKey(bytes, name));
  check("keys/secret_onion_key_ntor", (bytes, name) => checkNtorKey(bytes, name));
  check("keys/secret_onion_key_ntor.old", (bytes, name) => checkNtorKey(bytes, name));
  if (!files.includes("keys/secret_onion_key_ntor")) {
    throw new Error("collected state has no keys/secret_onion_key_ntor: the relay did not hand over its current onion key");
  }
  let lastRotatedOnionKey: string | undefined;
  check("state", (bytes) => {
    const text = bytes.toString("utf8");
    if (!text.startsWith("# Tor state file")) throw new KeyFileError("state", "is not a tor state file");
    lastRotatedOnionKey = /^LastRotatedOnionKey (.+)$/m.exec(text)?.[1];
  });
  for (const [file, firstLine] of Object.entries(DIRECTORY_CACHE_FILES)) {
    check(file, (bytes) => {
      if (bytes.length > MAX_DIRECTORY_DOCUMENT_BYTES) throw new KeyFileError(file, `is ${bytes.length} bytes, more than the ${MAX_DIRECTORY_DOCUMENT_BYTES} a directory document may be`);
      const first = bytes.subarray(0, bytes.indexOf(0x0a) < 0 ? bytes.length : bytes.indexOf(0x0a)).toString("latin1");
      if (first !== firstLine && !first.startsWith(`${firstLine} `)) throw new KeyFileError(file, `does not start with "${firstLine}"`);
    });
  }
  return { files, ...(lastRotatedOnionKey ? { lastRotatedOnionKey } : {}) };
}
