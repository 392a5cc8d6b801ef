/**
 * The collection step (cli/steps/collect-state.ts), run as its resource runs
 * it, against a real OpenSSH server on 127.0.0.1 that serves a relay-like tor
 * data directory through the relay's own scripts, and the Proxmox VE double
 * answering whether the relay's VM exists and runs.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { revokeRelay, uploadRelayKeys } from "../../lib/broker/broker-admin";
import { writeRunningRecord } from "../../lib/steps/rollout-records";
import { RELAY_EXPORT_FILES, type StepSpec } from "../../lib/steps/steps";
import { IDENTITY_FILES } from "../../lib/tor/tor-keys";
import { makeTestKeys, TEST_API_TOKEN } from "../support/fleet";
import { runStep } from "../support/images";
import { ProxmoxDoubleProcess } from "../support/proxmox";
import { toolEnv } from "../support/pulumi";
import { freePort, RelaySshd } from "../support/sshd";
import { privateTmpDir } from "../support/tmp";
import { makeGuestRoot } from "../support/guest-root";
import { poll } from "../support/poll";
import { BROKER_MIN_TCB } from "../../lib/testnet/testnet-broker";

describe("collecting a relay's onion keys and state", () => {
  const dir = privateTmpDir("collect");
  // The relay's /, as its scripts see it (RELAY_ROOT), with tor's DataDirectory in it.
  const guest = makeGuestRoot(join(dir, "relay-root"));
  const data = guest.at("RELAY_TOR_DATA");
  const relayDir = join(dir, "build", "relays", "alpha");
  let sshd: RelaySshd;
  let double: ProxmoxDoubleProcess;
  const hostKey = (relay: string) => readFileSync(join(dir, "keys", relay, "ssh_host_ed25519_key.pub"), "utf8").trim().split(" ").slice(0, 2).join(" ");
  let digestCounter = 0;

  /** Runs the step for a fresh image digest, so every call writes its own collection. */
  const collect = (options: { port?: number; hostKeyOf?: string; vmId?: number; allowFreshOnionKeys?: boolean; broker?: StepSpec<"collect-state">["broker"] } = {}) => {
    const imageDigest = (++digestCounter).toString(16).padStart(12, "0").padEnd(64, "0");
    const spec: StepSpec<"collect-state"> = {
      relay: "alpha",
      relayDir,
      imageDigest,
      channel: { host: "127.0.0.1", port: options.port ?? sshd.port, user: "root", privateKeyFile: join(dir, "keys", "collector"), hostPublicKey: hostKey(options.hostKeyOf ?? "alpha"), connectTimeoutSeconds: 3 },
      target: { kind: "proxmox", endpoint: double.endpoint, verifyTls: false, node: "pve1", vmId: options.vmId ?? 9101, datastore: "local" },
      allowFreshOnionKeys: options.allowFreshOnionKeys ?? false,
      ...(options.broker ? { broker: options.broker } : {}),
    };
    const result = runStep("collect-state", spec, { PROXMOX_API_TOKEN: TEST_API_TOKEN });
    return { ...result, out: join(relayDir, "collected", imageDigest.slice(0, 12)) };
  };
  /** Nothing of the relay's may stay anywhere but the one collection the step reports. */
  const leftovers = () => (existsSync(join(relayDir, "collected")) ? readdirSync(join(relayDir, "collected")).filter((entry) => entry.startsWith(".")) : []);

  beforeAll(async () => {
    makeTestKeys(dir, [
      { name: "alpha", nickname: "Alpha", node: "n", vmId: 100, exit: false },
      { name: "beta", nickname: "Beta", node: "n", vmId: 101, exit: false },
    ]);
    mkdirSync(join(data, "keys"), { recursive: true, mode: 0o700 });
    for (const file of ["secret_onion_key", "secret_onion_key_ntor"]) copyFileSync(join(dir, "keys", "alpha", file), join(data, "keys", file));
    copyFileSync(join(dir, "keys", "beta", "secret_onion_key_ntor"), join(data, "keys", "secret_onion_key_ntor.old"));
    writeFileSync(join(data, "state"), "# Tor state file last generated on 2026-11-24 10:00:00\nLastRotatedOnionKey 2026-11-20 10:00:00\n");
    writeFileSync(guest.at("RELAY_EXPORT_LIST"), RELAY_EXPORT_FILES.join("\n") + "\n");
    sshd = await RelaySshd.start(join(dir, "sshd"), join(dir, "keys", "alpha", "ssh_host_ed25519_key"), join(dir, "keys", "collector.pub"), guest.root);
    double = await ProxmoxDoubleProcess.start(dir, TEST_API_TOKEN);
    await double.createVm("pve1", 9101, true);
    await double.createVm("pve1", 9102, false);
  });
  afterAll(() => {
    sshd?.stop();
    double?.stop();
  });

  it("accepts the relay's pinned host key and hands over the keys and state, byte for byte", () => {
    const result = collect();
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^relay alpha: collected keys\/secret_onion_key, keys\/secret_onion_key_ntor, keys\/secret_onion_key_ntor\.old, state \(onion key last rotated 2026-11-20 10:00:00\) at \S+\n$/);
    for (const file of ["keys/secret_onion_key_ntor", "keys/secret_onion_key_ntor.old", "state"]) {
      expect(readFileSync(join(result.out, file)).equals(readFileSync(join(data, file)))).toBe(true);
    }
    expect(leftovers()).toEqual([]);
  });

  it("finds nothing to collect where the target has no VM: a first deploy", () => {
    const result = collect({ vmId: 9999 });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/relay alpha: nothing runs there yet \(VM 9999 on pve1\): first deploy, nothing to collect/);
    expect(readdirSync(result.out)).toEqual([]);
  });

  it("refuses to redeploy over a stopped VM whose onion keys died with its RAM, unless told so", () => {
    const result = collect({ vmId: 9102 });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/relay alpha: VM 9102 on pve1 exists but is stopped.*Start it.*allowFreshOnionKeys/s);
    expect(collect({ vmId: 9102, allowFreshOnionKeys: true }).status).toBe(0);
  });

  it("refuses a server presenting any other host key", () => {
    const result = collect({ hostKeyOf: "beta" });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/relay alpha: cannot collect .*Host key verification failed/s);
    expect(existsSync(result.out)).toBe(false);
    expect(leftovers()).toEqual([]);
  });

  it("pins the host key of the image the relay runs, not the one the next image ships", () => {
    // The key store's host key was rotated to beta's; the running image (on record) still answers with alpha's.
    writeRunningRecord(relayDir, { imageDigest: "f".repeat(64), recipe: {} as never, hostPublicKey: hostKey("alpha"), isoName: "x.iso", orPort: 9001, exit: false, since: "2026-11-29T00:00:00Z" });
    try {
      const result = collect({ hostKeyOf: "beta" });
      expect(result.status, result.stderr).toBe(0);
    } finally {
      rmSync(join(relayDir, "running.json"));
    }
  });

  it("stops on an unreachable relay, saying what to do", async () => {
    const result = collect({ port: await freePort() });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/Connection refused/);
    expect(result.stderr).toMatch(/running relay was left alone.*allowFreshOnionKeys: true/s);
  });

  it("lets an unreachable relay through only with allowFreshOnionKeys, with a loud warning and nothing collected", async () => {
    const result = collect({ port: await freePort(), allowFreshOnionKeys: true });
    expect(result.status).toBe(0);
    expect(result.stderr).toMatch(/WARNING allowFreshOnionKeys is set: the new image gets FRESH onion keys/);
    expect(existsSync(join(result.out, "keys"))).toBe(false);
  });

  it("refuses an export that points outside itself (a symlink to a file of the build host), and keeps no byte of it", () => {
    const ntor = join(data, "keys", "secret_onion_key_ntor");
    const saved = readFileSync(ntor);
    rmSync(ntor);
    // A relay that tried to pull another relay's onion key into its own image.
    symlinkSync(join(dir, "keys", "beta", "secret_onion_key_ntor"), ntor);
    try {
      const result = collect();
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(/collected state entry "keys\/secret_onion_key_ntor" is not a plain file/);
      expect(existsSync(result.out)).toBe(false);
      expect(leftovers()).toEqual([]);
    } finally {
      rmSync(ntor);
      writeFileSync(ntor, saved, { mode: 0o600 });
    }
  });

  it("brings the relay's directory documents along, and refuses one that is not what its name says", () => {
    // First lines as tor writes them (dir-spec.txt, sections 3.4.1 and 1.4 of the certificate format).
    writeFileSync(join(data, "cached-microdesc-consensus"), "network-status-version 3 microdesc\nvote-status consensus\n");
    writeFileSync(join(data, "cached-certs"), "dir-key-certificate-version 3\nfingerprint 0000\n");
    try {
      const result = collect();
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/collected keys\/secret_onion_key, .*state, cached-certs, cached-microdesc-consensus \(onion key/);
      expect(readFileSync(join(result.out, "cached-microdesc-consensus"), "utf8")).toBe(readFileSync(join(data, "cached-microdesc-consensus"), "utf8"));
      writeFileSync(join(data, "cached-certs"), "network-status-version 3\n");
      const refused = collect();
      expect(refused.status).toBe(1);
      expect(refused.stderr).toMatch(/collected cached-certs: does not start with "dir-key-certificate-version 3"/);
      expect(leftovers()).toEqual([]);
    } finally {
      rmSync(join(data, "cached-microdesc-consensus"));
      rmSync(join(data, "cached-certs"));
    }
  });

  it("refuses a corrupt onion key instead of building an image with it, and keeps no byte of it", () => {
    const ntor = readFileSync(join(data, "keys", "secret_onion_key_ntor"));
    const corrupt = Buffer.from(ntor);
    corrupt[70]! ^= 0xff;
    writeFileSync(join(data, "keys", "secret_onion_key_ntor"), corrupt);
    try {
      const result = collect();
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(/collected keys\/secret_onion_key_ntor: holds a public key that does not match its secret key/);
      // The extracted keys of the failed collection are gone: only earlier, validated collections remain.
      expect(leftovers()).toEqual([]);
      expect(existsSync(result.out)).toBe(false);
    } finally {
      writeFileSync(join(data, "keys", "secret_onion_key_ntor"), ntor);
    }
  });

  describe("in broker mode, against a real key broker", () => {
    const brokerData = join(dir, "key-broker");
    const socket = join(dir, "broker-admin.sock");
    let broker: ChildProcess;
    let watch: NonNullable<StepSpec<"collect-state">["broker"]>;
    const brokerRecipe = { broker: { agentBinary: "/x", agentConfig: "{}" } } as never;

    beforeAll(async () => {
      const init = spawnSync("key-broker", ["init", "--data", brokerData, "--admin-token", `${brokerData}.admin.token`], { encoding: "utf8", env: toolEnv() });
      expect(init.status, init.stderr).toBe(0);
      broker = spawn("key-broker", ["serve", "--data", brokerData, "--listen", "127.0.0.1:0", "--admin-listen", `unix:${socket}`, "--min-tcb", BROKER_MIN_TCB], { env: toolEnv(), stdio: "ignore" });
      await poll(() => existsSync(socket), { seconds: 5, intervalMs: 50 });
      watch = { admin: { socket, tokenFile: `${brokerData}.admin.token` }, pushIntervalSeconds: 30, attestation: "snp" };
      const token = readFileSync(`${brokerData}.admin.token`, "utf8").trim();
      await uploadRelayKeys({ socket, token }, "alpha", Object.fromEntries(IDENTITY_FILES.map((file) => [`keys/${file}`, readFileSync(join(dir, "keys", "alpha", file))])));
    });
    afterAll(() => broker?.kill());

    it("stops a redeploy over a running broker-mode relay that never pushed its onion keys, and changes nothing", () => {
      writeRunningRecord(relayDir, { imageDigest: "e".repeat(64), recipe: brokerRecipe, hostPublicKey: "", isoName: "x.iso", orPort: 9001, exit: false, since: "2026-11-29T00:00:00Z" });
      try {
        const result = collect({ broker: watch });
        expect(result.status).toBe(1);
        expect(result.stderr).toMatch(/relay alpha: .* runs, but it never pushed its onion keys to the key broker\. Nothing was changed\..*allowFreshOnionKeys/s);
        expect(existsSync(result.out)).toBe(false);
        // A stopped one's keys died with its RAM and were never pushed: the same.
        const stopped = collect({ broker: watch, vmId: 9102 });
        expect(stopped.status).toBe(1);
        expect(stopped.stderr).toMatch(/is stopped, but it never pushed/);
      } finally {
        rmSync(join(relayDir, "running.json"));
      }
    });

    it("collects a relay still on an image-mode image over SSH: it is moving to broker mode", () => {
      writeRunningRecord(relayDir, { imageDigest: "d".repeat(64), recipe: {} as never, hostPublicKey: hostKey("alpha"), isoName: "x.iso", orPort: 9001, exit: false, since: "2026-11-29T00:00:00Z" });
      try {
        const result = collect({ broker: watch });
        expect(result.status, result.stderr).toBe(0);
        expect(readFileSync(join(result.out, "keys", "secret_onion_key_ntor")).equals(readFileSync(join(data, "keys", "secret_onion_key_ntor")))).toBe(true);
      } finally {
        rmSync(join(relayDir, "running.json"));
      }
    });

    it("refuses a revoked relay: a new image would get nothing", async () => {
      const token = readFileSync(`${brokerData}.admin.token`, "utf8").trim();
      await revokeRelay({ socket, token }, "alpha");
      const result = collect({ broker: watch });
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(/relay alpha: it is revoked at the key broker; .*npm run broker -- reenroll alpha/);
    });
  });
});
