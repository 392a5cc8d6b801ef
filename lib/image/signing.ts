/**
 * Signatures on what a build publishes (the image record and its SEV-SNP
 * measurement), made with the operator's SSH key by OpenSSH's `ssh-keygen
 * -Y sign`, so that anyone holding the operator's public key can check a
 * record came from the build: `ssh-keygen -Y verify -f allowed_signers -I
 * OPERATOR -n diskless-relays-image -s FILE.sig < FILE`.
 * I/O: runs ssh-keygen, writes FILE.sig beside FILE.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { runTool } from "../core/run";
import { shellQuote } from "../core/shell-quote";

/** The signature namespace: a signature made for anything else never verifies as an image record's. */
const SIGNATURE_NAMESPACE = "diskless-relays-image";
const signatureOf = (file: string) => `${file}.sig`;

/** Signs `file` with the private key `keyFile`, writing `file`.sig. */
export function signFile(keyFile: string, file: string): string {
  if (!existsSync(keyFile)) throw new Error(`image.signingKeyFile: ${keyFile} is missing; make it with ssh-keygen -t ed25519 -f ${shellQuote(keyFile)}, and publish its .pub`);
  rmSync(signatureOf(file), { force: true });
  // "--": the file to sign is never read as an option, whatever its name.
  runTool("ssh-keygen", ["-q", "-Y", "sign", "-f", keyFile, "-n", SIGNATURE_NAMESPACE, "--", file], { what: `signing ${file}` });
  // ssh-keygen writes FILE.sig itself; checked, so that a silent failure cannot publish an unsigned record.
  if (!existsSync(signatureOf(file))) throw new Error(`ssh-keygen wrote no signature for ${file}`);
  return signatureOf(file);
}

export type SignatureVerdict = { ok: true; message: string } | { ok: false; message: string };

/** Checks `file`.sig against the allowed signers file for `identity`. */
export function verifySignature(file: string, allowedSigners: string, identity: string): SignatureVerdict {
  if (!existsSync(signatureOf(file))) return { ok: false, message: `${signatureOf(file)} is missing: the record is unsigned` };
  const result = spawnSync("ssh-keygen", ["-Y", "verify", "-f", allowedSigners, "-I", identity, "-n", SIGNATURE_NAMESPACE, "-s", signatureOf(file)], { input: readFileSync(file), encoding: "utf8" });
  const said = `${result.stdout}${result.stderr}`.trim().split("\n")[0] ?? "";
  return result.status === 0 ? { ok: true, message: said } : { ok: false, message: said || `ssh-keygen exited ${result.status}` };
}

/** Writes `content` to `file` and signs it when a key is given; without one, no stale signature stays beside it. */
export function publishSigned(file: string, content: string, keyFile: string | undefined): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(`${file}.tmp`, content);
  renameSync(`${file}.tmp`, file);
  if (keyFile) signFile(keyFile, file);
  else rmSync(signatureOf(file), { force: true });
}
