/**
 * The state collector against a real OpenSSH server on 127.0.0.1 that serves
 * a relay-like tor data directory through the relay's own export script.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestKeys } from "./support/fleet";
import { repoRoot } from "./support/pulumi";
import { freePort, RelaySshd } from "./support/sshd";
import { privateTmpDir } from "./support/tmp";

describe("collecting a relay's onion keys and state over SSH", () => {
  const dir = privateTmpDir("collect");
  const data = join(dir, "relay-data");
  let sshd: RelaySshd;

  const collect = (out: string, options: { port?: number; hostKeyOf?: string; extra?: string[] } = {}) =>
    spawnSync(
      join(repoRoot, "node_modules/.bin/tsx"),
      [join(repoRoot, "cli/collect-state.ts"), "--relay", "alpha", "--host", "127.0.0.1", "--port", String(options.port ?? sshd.port),
        "--key", join(dir, "keys", "collector"), "--host-key", join(dir, "keys", options.hostKeyOf ?? "alpha", "ssh_host_ed25519_key.pub"),
        "--out", join(dir, out), "--connect-timeout", "3", ...(options.extra ?? [])],
      { encoding: "utf8" },
    );

  beforeAll(async () => {
    makeTestKeys(dir, [
      { name: "alpha", nickname: "Alpha", node: "n", vmId: 100, exit: false },
      { name: "beta", nickname: "Beta", node: "n", vmId: 101, exit: false },
    ]);
    mkdirSync(join(data, "keys"), { recursive: true, mode: 0o700 });
    for (const file of ["secret_onion_key", "secret_onion_key_ntor"]) copyFileSync(join(dir, "keys", "alpha", file), join(data, "keys", file));
    copyFileSync(join(dir, "keys", "beta", "secret_onion_key_ntor"), join(data, "keys", "secret_onion_key_ntor.old"));
    writeFileSync(join(data, "state"), "# Tor state file last generated on 2026-11-24 10:00:00\nLastRotatedOnionKey 2026-11-20 10:00:00\n");
    sshd = await RelaySshd.start(join(dir, "sshd"), join(dir, "keys", "alpha", "ssh_host_ed25519_key"), join(dir, "keys", "collector.pub"), data);
  });
  afterAll(() => sshd?.stop());

  it("accepts the relay's pinned host key and hands over the keys and state, byte for byte", () => {
    const result = collect("ok");
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toBe("relay alpha: collected keys/secret_onion_key, keys/secret_onion_key_ntor, keys/secret_onion_key_ntor.old, state (onion key last rotated 2026-11-20 10:00:00)\n");
    for (const file of ["keys/secret_onion_key_ntor", "keys/secret_onion_key_ntor.old", "state"]) {
      expect(readFileSync(join(dir, "ok", file)).equals(readFileSync(join(data, file)))).toBe(true);
    }
  });

  it("refuses a server presenting any other host key", () => {
    const result = collect("impostor", { hostKeyOf: "beta" });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/relay alpha: cannot collect .*Host key verification failed/s);
    expect(existsSync(join(dir, "impostor"))).toBe(false);
  });

  it("stops on an unreachable relay, saying what to do", async () => {
    const result = collect("unreachable", { port: await freePort() });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/Connection refused/);
    expect(result.stderr).toMatch(/running relay was left alone.*allowFreshOnionKeys: true/s);
  });

  it("lets an unreachable relay through only with allowFreshOnionKeys, with a loud warning and nothing collected", async () => {
    const result = collect("fresh", { port: await freePort(), extra: ["--allow-fresh-onion-keys"] });
    expect(result.status).toBe(0);
    expect(result.stderr).toMatch(/WARNING allowFreshOnionKeys is set: the new image gets FRESH onion keys/);
    expect(existsSync(join(dir, "fresh", "keys"))).toBe(false);
  });

  it("refuses an export that points outside itself (a symlink to a file of the build host)", () => {
    const ntor = join(data, "keys", "secret_onion_key_ntor");
    const saved = readFileSync(ntor);
    rmSync(ntor);
    // A relay that tried to pull another relay's onion key into its own image.
    symlinkSync(join(dir, "keys", "beta", "secret_onion_key_ntor"), ntor);
    try {
      const result = collect("symlinked");
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(/collected state entry "keys\/secret_onion_key_ntor" is not a plain file/);
      expect(existsSync(join(dir, "symlinked"))).toBe(false);
    } finally {
      rmSync(ntor);
      writeFileSync(ntor, saved, { mode: 0o600 });
    }
  });

  it("refuses a corrupt onion key instead of building an image with it", () => {
    const ntor = readFileSync(join(data, "keys", "secret_onion_key_ntor"));
    const corrupt = Buffer.from(ntor);
    corrupt[70]! ^= 0xff;
    writeFileSync(join(data, "keys", "secret_onion_key_ntor"), corrupt);
    try {
      const result = collect("corrupt");
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(/collected keys\/secret_onion_key_ntor: holds a public key that does not match its secret key/);
    } finally {
      writeFileSync(join(data, "keys", "secret_onion_key_ntor"), ntor);
    }
  });
});
