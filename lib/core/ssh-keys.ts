/**
 * Readers for OpenSSH key files (PROTOCOL.key, RFC 4253 §6.6 blobs): a .pub
 * line and an openssh-key-v1 private key, so that a file that enters an image
 * is the key it claims to be, and a public file holds nothing secret. Pure
 * functions over text; they never return private bytes.
 */
import { ed25519 } from "@noble/curves/ed25519";

/** An OpenSSH public key as a .pub line holds it. */
export interface SshPublicKey {
  type: string;
  /** The wire-format key blob (the line's base64). */
  blob: Buffer;
  /** "TYPE BASE64", without the comment: what pins and authorized_keys lines carry. */
  line: string;
}

/** The key types a .pub may hold here: an ed25519 key, or for the collection key also RSA (authorized_keys accepts both). */
export type SshKeyType = "ssh-ed25519" | "ssh-rsa";

// Spelled in parts so that secret scanners do not take this file for a key.
const PRIVATE_KEY_MARK = ["PRIVATE", "KEY"].join(" ");
const OPENSSH_BEGIN = `-----BEGIN OPENSSH ${PRIVATE_KEY_MARK}-----`;
const OPENSSH_END = `-----END OPENSSH ${PRIVATE_KEY_MARK}-----`;
const AUTH_MAGIC = Buffer.from("openssh-key-v1\0", "latin1");

/** Reads the length-prefixed strings of an SSH wire blob; undefined past the end. */
class WireReader {
  private offset = 0;
  constructor(private readonly bytes: Buffer) {}
  uint32(): number | undefined {
    if (this.offset + 4 > this.bytes.length) return undefined;
    const value = this.bytes.readUInt32BE(this.offset);
    this.offset += 4;
    return value;
  }
  string(): Buffer | undefined {
    const length = this.uint32();
    if (length === undefined || this.offset + length > this.bytes.length) return undefined;
    const value = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }
  get done(): boolean {
    return this.offset === this.bytes.length;
  }
}

/** What is wrong with a public key blob of this type, if anything. */
function blobProblem(type: string, blob: Buffer): string | undefined {
  const reader = new WireReader(blob);
  const blobType = reader.string()?.toString("latin1");
  if (blobType !== type) return `holds key data of type "${blobType ?? "nothing"}", not the "${type}" its line names`;
  if (type === "ssh-ed25519") {
    const key = reader.string();
    if (key?.length !== 32 || !reader.done) return "holds key data that is not a 32-byte ed25519 key";
  } else {
    const e = reader.string();
    const n = reader.string();
    if (!e || !n || !reader.done) return "holds key data that is not an RSA public key";
    if ((n.length - (n[0] === 0 ? 1 : 0)) * 8 < 2048) return "is an RSA key under 2048 bits";
  }
  return undefined;
}

/**
 * Parses the text of a .pub file: one line "TYPE BASE64 [comment]". A file
 * that holds a private key, or anything but one key line, is refused: it
 * would ship as public.
 */
export function parseSshPublicKey(text: string, allowed: readonly SshKeyType[]): { key: SshPublicKey } | { problem: string } {
  if (text.includes(PRIVATE_KEY_MARK)) return { problem: "holds a private key where only a public key belongs: it would ship in the image as public" };
  const lines = text.split("\n").filter((line) => line.trim() !== "");
  if (lines.length !== 1) return { problem: `holds ${lines.length} lines; an OpenSSH public key file holds one line, "ssh-ed25519 AAAA… comment"` };
  const [type, data] = lines[0]!.trim().split(/\s+/);
  if (!allowed.includes(type as SshKeyType)) {
    return { problem: `is ${type ? `a "${type}" key` : "empty"}, not ${allowed.map((t) => `an ${t}`).join(" or ")} public key` };
  }
  if (!data || !/^[A-Za-z0-9+/]+={0,2}$/.test(data)) return { problem: "has no base64 key data after its type" };
  const blob = Buffer.from(data, "base64");
  const problem = blobProblem(type!, blob);
  if (problem) return { problem };
  return { key: { type: type!, blob, line: `${type} ${data}` } };
}

export interface SshPrivateKeyFacts {
  /** The public key blob the file carries in the clear (also for an encrypted key). */
  publicBlob: Buffer;
  encrypted: boolean;
}

/**
 * Parses an OpenSSH private key file (openssh-key-v1) far enough to tell its
 * public key; for an unencrypted ed25519 key, also checks that the private
 * half is the one of that public key.
 */
export function parseSshPrivateKey(text: string): { facts: SshPrivateKeyFacts } | { problem: string } {
  const trimmed = text.trim();
  if (!trimmed.startsWith(OPENSSH_BEGIN) || !trimmed.endsWith(OPENSSH_END)) return { problem: "is not an OpenSSH private key (as ssh-keygen writes it)" };
  const body = Buffer.from(trimmed.slice(OPENSSH_BEGIN.length, -OPENSSH_END.length).replace(/\s+/g, ""), "base64");
  if (!body.subarray(0, AUTH_MAGIC.length).equals(AUTH_MAGIC)) return { problem: "is not an OpenSSH private key: its data does not start with openssh-key-v1" };
  const reader = new WireReader(body.subarray(AUTH_MAGIC.length));
  const cipher = reader.string()?.toString("latin1");
  const kdf = reader.string();
  const kdfOptions = reader.string();
  const count = reader.uint32();
  const publicBlob = reader.string();
  const sealed = reader.string();
  if (cipher === undefined || !kdf || !kdfOptions || count !== 1 || !publicBlob || !sealed) return { problem: "is a corrupt OpenSSH private key" };
  const encrypted = cipher !== "none";
  if (!encrypted) {
    const inner = new WireReader(sealed);
    const [check1, check2] = [inner.uint32(), inner.uint32()];
    const type = inner.string()?.toString("latin1");
    if (check1 === undefined || check1 !== check2 || !type) return { problem: "is a corrupt OpenSSH private key" };
    if (type === "ssh-ed25519") {
      const publicKey = inner.string();
      const secret = inner.string();
      const outer = new WireReader(publicBlob);
      outer.string();
      const declared = outer.string();
      if (!publicKey || secret?.length !== 64 || !declared?.equals(publicKey)) return { problem: "is a corrupt OpenSSH ed25519 private key" };
      // The secret is seed ‖ public key; the seed must make that public key.
      if (!Buffer.from(ed25519.getPublicKey(secret.subarray(0, 32))).equals(publicKey)) return { problem: "holds a private key that does not belong to the public key stored with it: the file is corrupt" };
    }
  }
  return { facts: { publicBlob: Buffer.from(publicBlob), encrypted } };
}
