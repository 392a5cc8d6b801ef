/**
 * The key store on the key-generation host: one private directory per relay
 * (tor's KeyDirectory, holding the master secret key), plus family keys.
 * Every key is made by tor itself; this module only drives it and never
 * overwrites an existing key.
 * I/O: runs tor, reads and writes the key store.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MASTER_SECRET_KEY_FILE } from "./tor-keys";

export interface RelayRecord {
  nickname: string;
  family?: string;
}

export const relayDir = (store: string, relay: string) => join(store, relay);
export const familiesDir = (store: string) => join(store, "families");
const RECORD = "relay.json";

function privateDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  chmodSync(path, 0o700);
}

/**
 * Runs tor with no torrc and its keys in `dir`; returns what it printed on
 * stdout and stderr (--key-expiration answers on stderr).
 */
function runTor(dir: string, args: string[], cwd?: string): string {
  const result = spawnSync(
    "tor",
    ["--DataDirectory", dir, "--KeyDirectory", dir, "--ignore-missing-torrc", "-f", "/dev/null", "--defaults-torrc", "/dev/null", "--Log", "err stderr", ...args],
    { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
  );
  if (result.error) throw new Error(`could not run tor (is it installed? run the set-up command): ${result.error.message}`);
  if (result.status !== 0) throw new Error(`tor ${args[0]} failed with exit code ${result.status}:\n${result.stderr}${result.stdout}`);
  return `${result.stdout}\n${result.stderr}`;
}

export function readRelayRecord(store: string, relay: string): RelayRecord {
  return JSON.parse(readFileSync(join(relayDir(store, relay), RECORD), "utf8")) as RelayRecord;
}

export function listRelays(store: string): string[] {
  if (!existsSync(store)) return [];
  return readdirSync(store, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && existsSync(join(store, entry.name, RECORD)))
    .map((entry) => entry.name)
    .sort();
}

/**
 * Creates a relay's full key set (RSA identity, ed25519 master and signing
 * keys, first onion keys) and its SSH host key. Refuses to touch a relay that
 * already has keys: a lost identity cannot be recovered.
 */
export function initRelayKeys(store: string, relay: string, record: RelayRecord, lifetimeDays = 30): string {
  const dir = relayDir(store, relay);
  if (existsSync(join(dir, MASTER_SECRET_KEY_FILE)) || existsSync(join(dir, "secret_id_key"))) {
    throw new Error(`${dir} already holds keys for ${relay}; refusing to overwrite a relay identity`);
  }
  privateDir(store);
  privateDir(dir);
  runTor(dir, ["--list-fingerprint", "--DisableNetwork", "1", "--ORPort", "auto", "--Nickname", record.nickname]);
  runTor(dir, ["--keygen", "--SigningKeyLifetime", `${lifetimeDays} days`]);
  // The relay's SSH host key is made with its identity so that the state
  // collector can pin it before the relay ever boots: no trust on first use.
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `${relay} host key`, "-f", join(dir, "ssh_host_ed25519_key")]);
  writeFileSync(join(dir, RECORD), JSON.stringify(record, null, 2) + "\n", { mode: 0o600 });
  return dir;
}

/** Issues a new signing key and certificate from the relay's master key. */
export function renewSigningKey(store: string, relay: string, lifetimeDays: number): void {
  const dir = relayDir(store, relay);
  if (!existsSync(join(dir, MASTER_SECRET_KEY_FILE))) {
    throw new Error(`${join(dir, MASTER_SECRET_KEY_FILE)} is missing: renew on the key-generation host, which holds the master secret key`);
  }
  runTor(dir, ["--keygen", "--SigningKeyLifetime", `${lifetimeDays} days`]);
}

/** What `tor --key-expiration sign` reports, as a Date. */
export function torSigningKeyExpiration(dir: string): Date {
  const out = runTor(dir, ["--key-expiration", "sign", "--format", "iso8601"]);
  const match = /signing-cert-expiry: (\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)/.exec(out);
  if (!match) throw new Error(`tor --key-expiration printed no expiry for ${dir}`);
  return new Date(`${match[1]}T${match[2]}Z`);
}

/** Creates a happy-family key with `tor --keygen-family`; returns its FamilyId. */
export function initFamilyKey(store: string, name: string): string {
  const dir = familiesDir(store);
  if (existsSync(join(dir, `${name}.secret_family_key`))) {
    throw new Error(`${join(dir, `${name}.secret_family_key`)} already exists; refusing to replace a family key`);
  }
  privateDir(store);
  privateDir(dir);
  const out = runTor(dir, ["--keygen-family", name], dir);
  const familyId = /^FamilyId (\S+)$/m.exec(out)?.[1];
  if (!familyId) throw new Error(`tor --keygen-family printed no FamilyId line`);
  return familyId;
}

export function familyKeyFile(store: string, name: string): string {
  return join(familiesDir(store), `${name}.secret_family_key`);
}

/** The fingerprints tor itself derives from a key directory: the oracle for the readers. */
export function torListFingerprint(dir: string, nickname: string): { rsa: string; ed25519: string } {
  // OfflineMasterKey keeps tor from minting a new master key in a directory
  // that (rightly) lacks one.
  const out = runTor(dir, ["--list-fingerprint", "--OfflineMasterKey", "1", "--DisableNetwork", "1", "--ORPort", "auto", "--Nickname", nickname, "--Log", "notice stdout"]);
  const rsa = new RegExp(`identity key fingerprint is '${nickname} ([0-9A-F]{40})'`).exec(out)?.[1];
  const ed = new RegExp(`ed25519 fingerprint is '${nickname} ([A-Za-z0-9+/]{43})'`).exec(out)?.[1];
  if (!rsa || !ed) throw new Error(`tor --list-fingerprint printed no fingerprints for ${dir}:\n${out}`);
  return { rsa, ed25519: ed };
}
