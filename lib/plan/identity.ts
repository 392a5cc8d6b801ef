/**
 * A relay's identity as read from its key directory, and the checks that must
 * pass before an image carrying it is built. Errors name the relay, the file
 * and the command that fixes it. I/O: reads the key files (lib/tor/key-files.ts).
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { readGuardedFile } from "../tor/key-files";
import type { PreviewRecord } from "./preview-record";
import { shellQuote } from "../core/shell-quote";
import {
  IDENTITY_FILES,
  PUBLIC_IDENTITY_FILES,
  KeyFileError,
  ed25519Identity,
  familyIdFromSecretKey,
  isMasterSecretKey,
  readMasterPublicKey,
  readSigningCert,
  rsaFingerprint,
  signingPublicKeyFromSecret,
} from "../tor/tor-keys";

export class IdentityError extends Error {
  constructor(
    readonly relay: string,
    readonly file: string,
    problem: string,
    fix: string,
  ) {
    super(`relay ${relay}: ${file} ${problem}. ${fix}`);
    this.name = "IdentityError";
  }
}

export interface RelayIdentity {
  relay: string;
  keysDir: string;
  rsaFingerprint: string;
  ed25519Identity: string;
  signingCertExpiresAt: Date;
  /** Happy-family key files found beside the identity keys, with their FamilyId. */
  familyKeys: { file: string; familyId: string }[];
}

/**
 * Reads and cross-checks the identity files of one relay. Throws an
 * IdentityError for a missing, corrupt or mismatched file, or for a master
 * secret key among the files that would ship. With a preview record (a
 * preview without private keys), the private files are not read: the RSA
 * fingerprint comes from the record, and the signing key was matched to its
 * certificate on the key-generation host that made the record.
 */
export function loadRelayIdentity(relay: string, keysDir: string, nickname = "NICKNAME", record?: PreviewRecord): RelayIdentity {
  const where = (file: string) => join(keysDir, file);
  const read = (file: (typeof IDENTITY_FILES)[number]): Buffer => {
    const got = readGuardedFile(where(file), { root: keysDir, secret: !PUBLIC_IDENTITY_FILES.has(file) });
    if ("problem" in got) {
      const fix = got.missing
        ? `Create the relay's keys on the key-generation host with \`npm run keys -- init ${shellQuote(relay)} --nickname ${shellQuote(nickname)}\`, or point relays[].keysDir at them`
        : "Every file of a relay's identity ships in its image (or goes to the key broker): it is checked before anything is built";
      throw new IdentityError(relay, where(file), got.problem, fix);
    }
    const bytes = got.bytes;
    if (isMasterSecretKey(bytes)) {
      throw new IdentityError(
        relay,
        where(file),
        "is the ed25519 MASTER secret key",
        "The master secret key must never ship in an image; put the real file back from the key-generation host",
      );
    }
    return bytes;
  };
  const checked = <T>(file: string, parse: () => T): T => {
    try {
      return parse();
    } catch (err) {
      if (err instanceof KeyFileError) {
        throw new IdentityError(relay, where(file), `is unusable: ${err.message.slice(err.file.length + 2)}`, `Restore it from the key store's backup, or re-create the relay's keys`);
      }
      throw err;
    }
  };

  // Every file is read (a missing one named) before any is parsed.
  const wanted = record ? IDENTITY_FILES.filter((file) => file !== "ed25519_signing_secret_key" && file !== "secret_id_key") : IDENTITY_FILES;
  const files = Object.fromEntries(wanted.map((file) => [file, read(file)])) as Partial<Record<(typeof IDENTITY_FILES)[number], Buffer>>;
  const masterKey = checked("ed25519_master_id_public_key", () => readMasterPublicKey(files.ed25519_master_id_public_key!));
  const cert = checked("ed25519_signing_cert", () => readSigningCert(files.ed25519_signing_cert!));
  const signingPublic = record ? cert.signingKey : checked("ed25519_signing_secret_key", () => signingPublicKeyFromSecret(files.ed25519_signing_secret_key!));
  const fingerprint = record ? record.rsaFingerprint : checked("secret_id_key", () => rsaFingerprint(files.secret_id_key!));

  if (!cert.masterKey.equals(masterKey)) {
    throw new IdentityError(
      relay,
      where("ed25519_signing_cert"),
      `was signed by master key ${ed25519Identity(cert.masterKey)}, not by this relay's ${ed25519Identity(masterKey)}`,
      `Renew it from this relay's master key with \`npm run keys -- renew ${shellQuote(relay)}\``,
    );
  }
  if (!cert.signingKey.equals(signingPublic)) {
    throw new IdentityError(
      relay,
      where("ed25519_signing_secret_key"),
      "does not match the key certified by ed25519_signing_cert",
      `Copy both files from the same \`npm run keys -- renew ${shellQuote(relay)}\` run`,
    );
  }

  const familyKeys = readdirSync(keysDir)
    .filter((file) => file.endsWith(".secret_family_key"))
    .sort()
    .map((file) => {
      const got = readGuardedFile(where(file), { root: keysDir, secret: true });
      if ("problem" in got) throw new IdentityError(relay, where(file), got.problem, "A family key beside a relay's keys is read as one of its keys");
      return { file, familyId: checked(file, () => familyIdFromSecretKey(got.bytes, file)) };
    });

  return {
    relay,
    keysDir,
    rsaFingerprint: fingerprint,
    ed25519Identity: ed25519Identity(masterKey),
    signingCertExpiresAt: cert.expiresAt,
    familyKeys,
  };
}

export type CertificateStatus = { level: "ok" | "warn" | "error"; daysLeft: number; message: string };

const DAY_MS = 24 * 3600 * 1000;

/** Classifies a signing certificate's remaining lifetime against the configured window. */
export function checkCertificateWindow(
  identity: Pick<RelayIdentity, "relay" | "keysDir" | "signingCertExpiresAt">,
  now: Date,
  window: { errorDays: number; warnDays: number },
): CertificateStatus {
  const daysLeft = (identity.signingCertExpiresAt.getTime() - now.getTime()) / DAY_MS;
  const file = join(identity.keysDir, "ed25519_signing_cert");
  const expiry = identity.signingCertExpiresAt.toISOString();
  const renew = `Renew it on the key-generation host with \`npm run keys -- renew ${shellQuote(identity.relay)}\`, then run pulumi again`;
  if (daysLeft <= 0) {
    return { level: "error", daysLeft, message: `relay ${identity.relay}: ${file} expired at ${expiry}; tor refuses to start with it. ${renew}` };
  }
  if (daysLeft < window.errorDays) {
    return {
      level: "error",
      daysLeft,
      message: `relay ${identity.relay}: ${file} expires at ${expiry}, in ${daysLeft.toFixed(1)} days (under certificate.errorDays = ${window.errorDays}); the relay would exit soon after deploy. ${renew}`,
    };
  }
  if (daysLeft < window.warnDays) {
    return {
      level: "warn",
      daysLeft,
      message: `relay ${identity.relay}: ${file} expires at ${expiry}, in ${daysLeft.toFixed(1)} days. ${renew}`,
    };
  }
  return { level: "ok", daysLeft, message: `relay ${identity.relay}: signing certificate valid until ${expiry}` };
}

/** Two relays sharing an identity would fight over one fingerprint in the consensus. */
export function findSharedIdentities(identities: RelayIdentity[]): string[] {
  const problems: string[] = [];
  const byKey = new Map<string, string>();
  for (const identity of identities) {
    for (const key of [`RSA fingerprint ${identity.rsaFingerprint}`, `ed25519 identity ${identity.ed25519Identity}`]) {
      const other = byKey.get(key);
      if (other) problems.push(`relays ${other} and ${identity.relay} have the same ${key}: each relay needs its own keys (npm run keys -- init ${shellQuote(identity.relay)})`);
      else byKey.set(key, identity.relay);
    }
  }
  return problems;
}
