import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { checkCertificateWindow, findSharedIdentities, loadRelayIdentity } from "../../lib/plan/identity";
import { initFamilyKey, familyKeyFile, initRelayKeys, relayDir, renewSigningKey, torListFingerprint, torSigningKeyExpiration } from "../../lib/tor/key-store";
import { IDENTITY_FILES, checkNtorKey, familyIdFromSecretKey, readSigningCert } from "../../lib/tor/tor-keys";
import { privateTmpDir } from "../support/tmp";

const store = privateTmpDir("identity");

/** A copy of only the files that ship, as on a build host that is not the generation host. */
function shippedCopy(relay: string, name: string): string {
  const dir = join(store, "shipped", name);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const file of IDENTITY_FILES) copyFileSync(join(relayDir(store, relay), file), join(dir, file));
  return dir;
}

describe("relay identity read from keys made by real tor", () => {
  beforeAll(() => {
    initRelayKeys(store, "alpha", { nickname: "AlphaRelay" });
    initRelayKeys(store, "beta", { nickname: "BetaRelay" });
  });

  it("derives the same RSA fingerprint and ed25519 identity as tor --list-fingerprint", () => {
    for (const [relay, nickname] of [["alpha", "AlphaRelay"], ["beta", "BetaRelay"]] as const) {
      const identity = loadRelayIdentity(relay, relayDir(store, relay));
      const tor = torListFingerprint(relayDir(store, relay), nickname);
      expect(identity.rsaFingerprint).toBe(tor.rsa);
      expect(identity.ed25519Identity).toBe(tor.ed25519);
    }
  });

  it("reads the signing certificate's expiry exactly as tor --key-expiration does", () => {
    const identity = loadRelayIdentity("alpha", relayDir(store, "alpha"));
    expect(identity.signingCertExpiresAt.toISOString()).toBe(torSigningKeyExpiration(relayDir(store, "alpha")).toISOString());
  });

  it("sees a renewed certificate with a new lifetime, still from the same master key", () => {
    const before = loadRelayIdentity("beta", relayDir(store, "beta"));
    renewSigningKey(store, "beta", 90);
    const after = loadRelayIdentity("beta", relayDir(store, "beta"));
    expect(after.ed25519Identity).toBe(before.ed25519Identity);
    expect(after.rsaFingerprint).toBe(before.rsaFingerprint);
    expect(after.signingCertExpiresAt.getTime()).toBe(torSigningKeyExpiration(relayDir(store, "beta")).getTime());
    const days = (after.signingCertExpiresAt.getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(85);
    expect(days).toBeLessThan(92);
  });

  it("works from the shipped files alone, without the master secret key", () => {
    const identity = loadRelayIdentity("alpha", shippedCopy("alpha", "alpha-only"));
    expect(identity.rsaFingerprint).toBe(torListFingerprint(relayDir(store, "alpha"), "AlphaRelay").rsa);
  });

  it("checks the ntor onion key's public half against its secret", () => {
    const bytes = readFileSync(join(relayDir(store, "alpha"), "secret_onion_key_ntor"));
    expect(checkNtorKey(bytes).publicKey).toHaveLength(32);
    const corrupt = Buffer.from(bytes);
    corrupt[40]! ^= 0x01;
    expect(() => checkNtorKey(corrupt)).toThrow(/does not match its secret key/);
  });

  it("refuses a missing file, naming the relay, the file and the init command", () => {
    const dir = shippedCopy("alpha", "missing");
    writeFileSync(join(dir, "secret_id_key"), "");
    const empty = shippedCopy("alpha", "missing2");
    rmSync(join(empty, "ed25519_signing_cert"));
    expect(() => loadRelayIdentity("alpha", empty)).toThrow(/relay alpha: .*missing2\/ed25519_signing_cert is missing.*npm run keys -- init alpha/);
    expect(() => loadRelayIdentity("alpha", dir)).toThrow(/secret_id_key is unusable: .*not a PEM RSA private key/);
  });

  it("refuses a master secret key among the files that would ship", () => {
    const dir = shippedCopy("alpha", "master-shipped");
    copyFileSync(join(relayDir(store, "alpha"), "ed25519_master_id_secret_key"), join(dir, "ed25519_signing_secret_key"));
    expect(() => loadRelayIdentity("alpha", dir)).toThrow(/ed25519_signing_secret_key is the ed25519 MASTER secret key/);
  });

  it("refuses a certificate signed by another relay's master key", () => {
    const dir = shippedCopy("alpha", "foreign-cert");
    copyFileSync(join(relayDir(store, "beta"), "ed25519_signing_cert"), join(dir, "ed25519_signing_cert"));
    copyFileSync(join(relayDir(store, "beta"), "ed25519_signing_secret_key"), join(dir, "ed25519_signing_secret_key"));
    expect(() => loadRelayIdentity("alpha", dir)).toThrow(/ed25519_signing_cert was signed by master key .* not by this relay's .*keys -- renew alpha/);
  });

  it("refuses a signing key that the certificate does not certify", () => {
    const dir = shippedCopy("alpha", "foreign-signing-key");
    copyFileSync(join(relayDir(store, "beta"), "ed25519_signing_secret_key"), join(dir, "ed25519_signing_secret_key"));
    expect(() => loadRelayIdentity("alpha", dir)).toThrow(/ed25519_signing_secret_key does not match the key certified/);
  });

  it("refuses a certificate whose signature was tampered with", () => {
    const dir = shippedCopy("alpha", "tampered-cert");
    const cert = readFileSync(join(dir, "ed25519_signing_cert"));
    cert[40]! ^= 0x80; // inside the certified signing key
    writeFileSync(join(dir, "ed25519_signing_cert"), cert);
    expect(() => loadRelayIdentity("alpha", dir)).toThrow(/signature that does not verify/);
    expect(() => readSigningCert(cert)).toThrow(/does not verify/);
  });

  it("finds two relays sharing one identity", () => {
    const alpha = loadRelayIdentity("alpha", relayDir(store, "alpha"));
    const clone = loadRelayIdentity("alpha-clone", shippedCopy("alpha", "clone"));
    const beta = loadRelayIdentity("beta", relayDir(store, "beta"));
    expect(findSharedIdentities([alpha, beta])).toEqual([]);
    const problems = findSharedIdentities([alpha, beta, clone]);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/relays alpha and alpha-clone have the same RSA fingerprint/);
  });

  it("reads a happy-family key's FamilyId exactly as tor --keygen-family prints it", () => {
    const familyId = initFamilyKey(store, "fleet");
    expect(familyIdFromSecretKey(readFileSync(familyKeyFile(store, "fleet")), "fleet.secret_family_key")).toBe(familyId);
    expect(() => initFamilyKey(store, "fleet")).toThrow(/refusing to replace/);
  });

  it("never overwrites an existing relay identity", () => {
    expect(() => initRelayKeys(store, "alpha", { nickname: "AlphaRelay" })).toThrow(/refusing to overwrite/);
  });
});

describe("checkCertificateWindow", () => {
  const identity = { relay: "r1", keysDir: "keys/r1", signingCertExpiresAt: new Date("2026-12-10T00:00:00Z") };
  const window = { errorDays: 2, warnDays: 10 };
  const at = (iso: string) => checkCertificateWindow(identity, new Date(iso), window);

  it("is an error once expired, naming the file and the renew command", () => {
    const status = at("2026-12-11T00:00:00Z");
    expect(status.level).toBe("error");
    expect(status.message).toMatch(/relay r1: keys\/r1\/ed25519_signing_cert expired at 2026-12-10.*npm run keys -- renew r1/);
  });
  it("is an error inside the error window", () => expect(at("2026-12-08T12:00:00Z").level).toBe("error"));
  it("warns inside the warning window", () => expect(at("2026-12-05T00:00:00Z").level).toBe("warn"));
  it("is fine outside both windows", () => expect(at("2026-11-20T00:00:00Z").level).toBe("ok"));
});
