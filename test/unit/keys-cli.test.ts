import { spawnSync } from "node:child_process";
import { statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { torListFingerprint, torSigningKeyExpiration } from "../../lib/tor/key-store";
import { privateTmpDir } from "../support/tmp";
import { repoRoot, tsNode } from "../support/pulumi";

const store = join(privateTmpDir("keys-cli"), "keys");
const root = repoRoot;

function keys(...args: string[]) {
  const result = spawnSync(...tsNode(join(root, "cli/keys.ts"), "--store", store, ...args), { encoding: "utf8" });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe("npm run keys", () => {
  it("init creates a private key store whose fingerprints tor agrees with", () => {
    const out = keys("init", "exit-1", "--nickname", "CliExitOne", "--family", "fleet");
    expect(out.status).toBe(0);
    const tor = torListFingerprint(join(store, "exit-1"), "CliExitOne");
    expect(out.stdout).toContain(tor.rsa);
    expect(out.stdout).toContain(tor.ed25519);
    expect(statSync(store).mode & 0o777).toBe(0o700);
    expect(statSync(join(store, "exit-1")).mode & 0o777).toBe(0o700);
  });

  it("status --json reports each relay with tor's own expiry, and marks none as expiring", () => {
    const out = keys("status", "--json");
    expect(out.status).toBe(0);
    const rows = JSON.parse(out.stdout);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ relay: "exit-1", nickname: "CliExitOne", family: "fleet", expiringSoon: false });
    expect(rows[0].signingCertExpiresAt).toBe(torSigningKeyExpiration(join(store, "exit-1")).toISOString());
  });

  it("renew --lifetime 3d issues a certificate that status marks as expiring soon", () => {
    expect(keys("renew", "--all", "--lifetime", "3d").status).toBe(0);
    const rows = JSON.parse(keys("status", "--json").stdout);
    expect(rows[0].expiringSoon).toBe(true);
    expect(rows[0].daysLeft).toBeLessThanOrEqual(4);
    const table = keys("status").stdout;
    expect(table).toMatch(/^!\s+exit-1\s+CliExitOne/m);
  });

  it("family init prints the FamilyId that tor made", () => {
    const out = keys("family", "init", "fleet");
    expect(out.status).toBe(0);
    expect(out.stdout).toMatch(/^FamilyId [A-Za-z0-9+/]{43}$/m);
  });

  it("refuses a second init of the same relay, keeping its keys", () => {
    const before = torListFingerprint(join(store, "exit-1"), "CliExitOne");
    const out = keys("init", "exit-1", "--nickname", "CliExitOne");
    expect(out.status).toBe(1);
    expect(out.stderr).toMatch(/refusing to overwrite/);
    expect(torListFingerprint(join(store, "exit-1"), "CliExitOne")).toEqual(before);
  });

  it("answers a usage error with exit code 2", () => {
    const out = keys("init", "exit-2", "--nickname", "not-valid");
    expect(out.status).toBe(2);
    expect(out.stderr).toMatch(/tor's rule/);
    expect(keys("frobnicate").status).toBe(2);
  });
});
