/**
 * Looks for a relay's private keys in bytes: the secret part of each key
 * file, raw, as hex (either case) or as base64 at any alignment. What the
 * "no key byte here" tests scan with; each has a positive control showing
 * the scan finds keys where they are. I/O: reads key files and trees.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { IDENTITY_FILES, ONION_KEY_FILES } from "../../lib/tor/tor-keys";

/** The secret part of each key file, as tor stores it (a 32-byte header, then the key) or, for PEM, its base64 body. */
export function secrets(keysDir: string): Map<string, Buffer> {
  const found = new Map<string, Buffer>();
  for (const file of [...IDENTITY_FILES, ...ONION_KEY_FILES, "ssh_host_ed25519_key"]) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(join(keysDir, file));
    } catch {
      continue;
    }
    const text = bytes.toString("latin1");
    if (text.startsWith("-----BEGIN")) {
      // PEM: the DER of the key, whose bytes are what any copy must contain.
      found.set(file, Buffer.from(text.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64"));
    } else if (file.endsWith("_cert") || file.endsWith("public_key")) {
      continue; // public
    } else {
      found.set(file, bytes.subarray(32));
    }
  }
  return found;
}

/** Which of the secrets occur in `haystack`: raw, as hex (either case) or as base64. */
export function occurrences(haystack: Buffer, keys: Map<string, Buffer>): string[] {
  const text = haystack.toString("latin1");
  const hits: string[] = [];
  for (const [file, secret] of keys) {
    const probe = secret.subarray(0, Math.min(secret.length, 32));
    if (haystack.includes(probe)) hits.push(`${file} (raw)`);
    const hex = probe.toString("hex");
    if (text.includes(hex) || text.includes(hex.toUpperCase())) hits.push(`${file} (hex)`);
    // Base64 of a run of bytes, at each of the three alignments it can start at inside a longer encoding.
    for (let shift = 0; shift < 3; shift++) {
      const encoded = probe.subarray(shift).toString("base64").slice(4, -4);
      if (encoded.length >= 16 && text.includes(encoded)) hits.push(`${file} (base64)`);
    }
  }
  return [...new Set(hits)];
}

/** Every regular file under `root` with the secrets it holds: "path: file (form)" lines. */
export function occurrencesInTree(root: string, keys: Map<string, Buffer>): string[] {
  const hits: string[] = [];
  const walk = (path: string) => {
    const stat = statSync(path, { throwIfNoEntry: false });
    if (!stat) return;
    if (stat.isDirectory()) for (const entry of readdirSync(path)) walk(join(path, entry));
    else if (stat.isFile()) for (const hit of occurrences(readFileSync(path), keys)) hits.push(`${path}: ${hit}`);
  };
  walk(root);
  return hits;
}
