/**
 * Key management on the key-generation host:
 *   npm run keys -- init RELAY --nickname NICK [--family NAME] [--lifetime 30d]
 *   npm run keys -- renew (RELAY… | --all) [--lifetime 30d]
 *   npm run keys -- status [--json] [--warn-days 10]
 *   npm run keys -- family init NAME
 *   npm run --silent keys -- export-shipped --stack STACK > preview-keys.tar.gz
 * The store defaults to ./keys (override with --store DIR or DISKLESS_RELAYS_KEYS);
 * export-shipped finds every file where the stack's config puts it instead.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { checkCertificateWindow, loadRelayIdentity } from "../lib/plan/identity";
import { ConfigError } from "../lib/config/config";
import { FleetError } from "../lib/plan/fleet";
import { BundleError, previewBundle } from "../lib/plan/shipped-keys";
import { readStackConfigFile } from "../lib/config/stack-file";
import { familiesDir, initFamilyKey, initRelayKeys, listRelays, readRelayRecord, relayDir, renewSigningKey } from "../lib/tor/key-store";

class UsageError extends Error {}

const USAGE = `usage:
  npm run keys -- init RELAY --nickname NICK [--family NAME] [--lifetime 30d]
  npm run keys -- renew (RELAY... | --all) [--lifetime 30d]
  npm run keys -- status [--json] [--warn-days 10]
  npm run keys -- family init NAME
  npm run --silent keys -- export-shipped --stack STACK > preview-keys.tar.gz
options: --store DIR (default: ./keys or $DISKLESS_RELAYS_KEYS)`;

function lifetimeDays(value: string | undefined): number {
  if (value === undefined) return 30;
  const match = /^(\d+)\s*(d|days?)?$/.exec(value);
  if (!match || Number(match[1]) < 2) throw new UsageError(`--lifetime must be a number of days like 30d, at least 2d (tor's minimum); got "${value}"`);
  return Number(match[1]);
}

function main(argv: string[]): number {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      store: { type: "string" },
      nickname: { type: "string" },
      family: { type: "string" },
      lifetime: { type: "string" },
      all: { type: "boolean" },
      json: { type: "boolean" },
      "warn-days": { type: "string" },
      stack: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  const store = values.store ?? process.env.DISKLESS_RELAYS_KEYS ?? "keys";
  const [command, ...rest] = positionals;
  if (values.help || !command) throw new UsageError("");

  switch (command) {
    case "init": {
      const [relay] = rest;
      if (!relay || rest.length !== 1) throw new UsageError("init takes one RELAY name");
      if (!values.nickname) throw new UsageError("init needs --nickname (tor's rule: 1–19 of A–Z, a–z, 0–9)");
      if (!/^[A-Za-z0-9]{1,19}$/.test(values.nickname)) throw new UsageError(`--nickname "${values.nickname}" breaks tor's rule: 1–19 of A–Z, a–z, 0–9`);
      const dir = initRelayKeys(store, relay, { nickname: values.nickname, ...(values.family ? { family: values.family } : {}) }, lifetimeDays(values.lifetime));
      const identity = loadRelayIdentity(relay, dir);
      console.log(`created ${dir}`);
      console.log(`  RSA fingerprint   ${identity.rsaFingerprint}`);
      console.log(`  ed25519 identity  ${identity.ed25519Identity}`);
      console.log(`  signing cert until ${identity.signingCertExpiresAt.toISOString()}`);
      console.log(`Back up ${dir} (it holds the master secret key), then set relays[].keysDir to it.`);
      return 0;
    }
    case "renew": {
      const relays = values.all ? listRelays(store) : rest;
      if (relays.length === 0) throw new UsageError(values.all ? `no relays in ${store}` : "renew takes RELAY names or --all");
      const days = lifetimeDays(values.lifetime);
      for (const relay of relays) {
        renewSigningKey(store, relay, days);
        const identity = loadRelayIdentity(relay, relayDir(store, relay));
        console.log(`${relay}: signing certificate renewed, valid until ${identity.signingCertExpiresAt.toISOString()}`);
      }
      console.log("Run `pulumi up` to ship the new signing keys.");
      return 0;
    }
    case "status": {
      const warnDays = values["warn-days"] === undefined ? 10 : Number(values["warn-days"]);
      if (!Number.isFinite(warnDays) || warnDays < 0) throw new UsageError("--warn-days must be a number of days");
      const now = new Date();
      const rows = listRelays(store).map((relay) => {
        const record = readRelayRecord(store, relay);
        const identity = loadRelayIdentity(relay, relayDir(store, relay));
        const status = checkCertificateWindow(identity, now, { errorDays: 0, warnDays });
        return {
          relay,
          nickname: record.nickname,
          rsaFingerprint: identity.rsaFingerprint,
          ed25519Identity: identity.ed25519Identity,
          signingCertExpiresAt: identity.signingCertExpiresAt.toISOString(),
          daysLeft: Math.floor(status.daysLeft * 10) / 10,
          family: record.family ?? null,
          expiringSoon: status.level !== "ok",
        };
      });
      if (values.json) {
        console.log(JSON.stringify(rows, null, 2));
        return 0;
      }
      if (rows.length === 0) {
        console.log(`no relays in ${store}; create one with \`npm run keys -- init RELAY --nickname NICK\``);
        return 0;
      }
      const header = ["", "RELAY", "NICKNAME", "RSA FINGERPRINT", "ED25519 IDENTITY", "SIGNING CERT EXPIRES", "DAYS LEFT", "FAMILY"];
      const table = rows.map((r) => [
        r.expiringSoon ? "!" : " ",
        r.relay,
        r.nickname,
        r.rsaFingerprint,
        r.ed25519Identity,
        r.signingCertExpiresAt,
        r.daysLeft.toFixed(1),
        r.family ?? "-",
      ]);
      const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
      for (const row of [header, ...table]) console.log(row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd());
      if (rows.some((r) => r.expiringSoon)) console.log(`! expires within ${warnDays} days: npm run keys -- renew RELAY`);
      return 0;
    }
    case "family": {
      const [sub, name] = rest;
      if (sub !== "init" || !name || rest.length !== 2) throw new UsageError("family takes: family init NAME");
      if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) throw new UsageError("a family NAME is letters, digits, _ and -");
      const familyId = initFamilyKey(store, name);
      console.log(`created ${join(familiesDir(store), `${name}.secret_family_key`)}`);
      console.log(`FamilyId ${familyId}`);
      console.log(`Relays with family: ${name} now ship this key and announce this FamilyId.`);
      return 0;
    }
    case "export-shipped": {
      // What `pulumi preview` of the stack reads, for a host without private
      // keys (a pull request's runner): public keys and certificates at the
      // paths the config gives them, and per relay a preview record in place
      // of its private key files. Never a private key.
      if (!values.stack) throw new UsageError("export-shipped needs --stack STACK: the stack whose preview the bundle is for");
      if (process.stdout.isTTY) throw new UsageError("export-shipped writes a tar.gz to stdout: redirect it to a file or a pipe");
      const bundle = previewBundle(readStackConfigFile(".", values.stack), ".");
      const staging = mkdtempSync(join(tmpdir(), "diskless-relays-export-"));
      try {
        chmodSync(staging, 0o700);
        for (const file of bundle.files) cpSync(file, join(staging, file), { preserveTimestamps: true });
        for (const { path, record } of bundle.records) {
          mkdirSync(dirname(join(staging, path)), { recursive: true });
          writeFileSync(join(staging, path), JSON.stringify(record, null, 2) + "\n", { mode: 0o600 });
        }
        const members = [...bundle.files, ...bundle.records.map((r) => r.path)].sort();
        process.stdout.write(execFileSync("tar", ["-cz", "--owner=0", "--group=0", "--numeric-owner", "-C", staging, "--", ...members], { maxBuffer: 64 * 1024 * 1024 }));
        for (const member of members) console.error(`export-shipped: ${member}`);
      } finally {
        rmSync(staging, { recursive: true, force: true });
      }
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (err) {
  const error = err as Error & { code?: string };
  if (error instanceof ConfigError || error instanceof FleetError || error instanceof BundleError) {
    console.error(`keys: export-shipped: ${error.message}`);
    process.exitCode = 1;
  } else if (error instanceof UsageError || error.code?.startsWith("ERR_PARSE_ARGS")) {
    if (error.message) console.error(`keys: ${error.message}`);
    console.error(USAGE);
    process.exitCode = 2;
  } else {
    console.error(`keys: ${error.message}`);
    process.exitCode = 1;
  }
}
