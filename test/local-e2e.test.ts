/**
 * The project's central promise, shown with real parts throughout: `pulumi
 * up` of a qemu-target stack boots two relays under QEMU and waits until
 * each is healthy; a torrc change redeploys exactly one of them, which comes
 * back with the same identity, the same ntor onion key (byte for byte) and
 * its tor state; a relay that does not come back stops the rollout and is
 * rolled back; faults stop a redeploy without touching the running relay,
 * and an interrupted run converges on the next one.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, symlinkSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { torListFingerprint } from "../lib/key-store";
import type { StepSpec } from "../lib/steps";
import { makeTestKeys } from "./support/fleet";
import { BUILD_CACHE, runStep, waitFor } from "./support/images";
import { TestProject } from "./support/pulumi";
import { freePort } from "./support/sshd";
import { privateTmpDir } from "./support/tmp";

const RELAYS = [
  { name: "e2e-exit", nickname: "EndToEndExit", address: "10.0.2.15" },
  { name: "e2e-guard", nickname: "EndToEndGuard", address: "10.0.2.16" },
] as const;
type RelayName = (typeof RELAYS)[number]["name"];

describe("the local stack, end to end", () => {
  const scratch = privateTmpDir("e2e");
  let project: TestProject;
  let config: Record<string, any>;
  const runDir = (relay: RelayName) => join(project.dir, ".runtime", project.stack, relay);
  const consoleOf = (relay: RelayName) => () => (existsSync(join(runDir(relay), "console.log")) ? readFileSync(join(runDir(relay), "console.log"), "latin1") : "");
  const pidOf = (relay: RelayName) => Number(readFileSync(join(runDir(relay), "qemu.pid"), "utf8"));
  const alive = (pid: number) => spawnSync("kill", ["-0", String(pid)]).status === 0;
  const up = () => project.runAsync("up", "--yes", "--skip-preview");
  const setContact = (index: number, contact: string) => {
    config.relays[index].contactInfo = contact;
    project.configure(config);
  };

  /** What the relay hands over right now, via the real collection step over SSH; returns the collected directory. */
  let collections = 0;
  const collect = (index: number, relayDir: string) => {
    const relay = config.relays[index];
    const imageDigest = (++collections).toString(16).padStart(12, "0").padEnd(64, "0");
    const spec: StepSpec<"collect-state"> = {
      relay: relay.name,
      relayDir,
      imageDigest,
      channel: {
        host: "127.0.0.1",
        port: relay.sshPort,
        user: "root",
        privateKeyFile: join(project.dir, "keys", "collector"),
        hostPublicKey: readFileSync(join(project.dir, "keys", relay.name, "ssh_host_ed25519_key.pub"), "utf8").trim().split(" ").slice(0, 2).join(" "),
        connectTimeoutSeconds: 10,
      },
      target: { kind: "qemu", runDir: runDir(relay.name), mac: relay.mac, memoryMiB: relay.memoryMiB, cores: relay.cores, forwards: [], guestAddress: RELAYS[index]!.address },
      allowFreshOnionKeys: false,
    };
    const result = runStep("collect-state", spec);
    return { ...result, out: join(relayDir, "collected", imageDigest.slice(0, 12)) };
  };

  const expectFingerprints = async (index: number) => {
    const relay = RELAYS[index]!;
    const expected = torListFingerprint(join(project.dir, "keys", relay.name), relay.nickname);
    const rsa = await waitFor(consoleOf(relay.name), new RegExp(`identity key fingerprint is '${relay.nickname} ([0-9A-F]{40})'`), 300);
    const ed = await waitFor(consoleOf(relay.name), new RegExp(`ed25519 fingerprint is '${relay.nickname} ([A-Za-z0-9+/]{43})'`), 60);
    expect(rsa[1]).toBe(expected.rsa);
    expect(ed[1]).toBe(expected.ed25519);
  };

  beforeAll(async () => {
    project = new TestProject("e2e", { passphrase: "" });
    // The default, project-relative build directory, sharing this machine's test base (built once, in the global set-up).
    mkdirSync(join(project.dir, "build"), { mode: 0o700 });
    symlinkSync(join(BUILD_CACHE, "base"), join(project.dir, "build", "base"));
    makeTestKeys(project.dir, RELAYS.map((r, i) => ({ name: r.name, nickname: r.nickname, node: "local", vmId: 100 + i, exit: i === 0 })));
    config = {
      target: "qemu",
      // The default, project-relative build directory, as an operator has it.
      image: { flavour: "debian", release: "bookworm" },
      stateCollection: { privateKeyFile: "keys/collector", connectTimeoutSeconds: 10 },
      // Sized for software emulation: a boot takes tens of seconds here.
      rollout: { healthTimeoutSeconds: 240 },
      relays: await Promise.all(
        RELAYS.map(async (relay, i) => ({
          name: relay.name,
          nickname: relay.nickname,
          node: "local",
          vmId: 100 + i,
          mac: `52:54:00:00:02:0${i + 1}`,
          ipv4: { address: `${relay.address}/24`, gateway: "10.0.2.2" },
          orPort: 9001,
          exit: { enabled: i === 0 },
          nameservers: ["10.0.2.3"],
          contactInfo: "e2e@example.net",
          sshHost: "127.0.0.1",
          sshPort: await freePort(),
          localOrPort: await freePort(),
          memoryMiB: 1024,
          cores: 1,
        })),
      ),
    };
    project.configure(config);
  });

  afterAll(async () => {
    if (project) await project.runAsync("destroy", "--yes", "--skip-preview");
    project?.destroy();
  });

  it("boots both relays, waits until each is healthy, and tor prints the fingerprints of their keys", async () => {
    const result = await up();
    expect(result.status, result.stdout + result.stderr).toBe(0);
    for (const relay of RELAYS) expect(result.stdout).toMatch(new RegExp(`relay ${relay.name}: healthy on image [0-9a-f]{12} after \\d+s`));
    await expectFingerprints(0);
    await expectFingerprints(1);
    // The exit's tor, as debian-tor, reads /etc/resolv.conf: no fallback to 127.0.0.1.
    expect(consoleOf("e2e-exit")()).not.toMatch(/Unable to stat resolver configuration|resolv\.conf.*Permission denied/);
  }, 900_000);

  let before: { ntor: Buffer; lastRotated: string; guardPid: number };

  it("runs tor long enough to write its state", async () => {
    let out = "";
    await waitFor(() => {
      const result = collect(0, join(scratch, "before"));
      out = result.out;
      return result.status === 0 ? result.stdout : "";
    }, /collected .*\bstate\b/, 300);
    const state = readFileSync(join(out, "state"), "utf8");
    before = {
      ntor: readFileSync(join(out, "keys", "secret_onion_key_ntor")),
      lastRotated: /^LastRotatedOnionKey (.+)$/m.exec(state)![1]!,
      guardPid: pidOf("e2e-guard"),
    };
    expect(before.ntor).toHaveLength(96);
  }, 400_000);

  it("redeploys only the relay whose torrc changed, which keeps its identity, onion key and state", async () => {
    setContact(0, "e2e-changed@example.net");
    const preview = await project.preview();
    const changed = preview.steps.filter((s) => s.op !== "same");
    expect(changed.length).toBeGreaterThan(0);
    expect(changed.every((s) => s.urn.includes("e2e-exit")), changed.map((s) => s.urn).join("\n")).toBe(true);
    expect(changed.find((s) => s.urn.endsWith("::e2e-exit-state-collect"))?.op).toBe("update");

    const exitPid = pidOf("e2e-exit");
    const result = await up();
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/relay e2e-exit: collected .*keys\/secret_onion_key_ntor.*state/);
    expect(result.stdout).not.toMatch(/relay e2e-guard: collected/);
    expect(alive(exitPid)).toBe(false);
    await expectFingerprints(0);

    const collected = collect(0, join(scratch, "after"));
    expect(collected.status, collected.stderr).toBe(0);
    expect(readFileSync(join(collected.out, "keys", "secret_onion_key_ntor")).equals(before.ntor)).toBe(true);
    expect(/^LastRotatedOnionKey (.+)$/m.exec(readFileSync(join(collected.out, "state"), "utf8"))![1]).toBe(before.lastRotated);
    // The other relay was not touched: the same QEMU process still runs it.
    expect(pidOf("e2e-guard")).toBe(before.guardPid);
    expect(alive(before.guardPid)).toBe(true);
  }, 900_000);

  it("stops the rollout at a relay that does not come back, leaves the later relay alone, and rolls the sick one back", async () => {
    // Both images change; the exit (lower vmId) rolls first, and its new image's tor refuses to start.
    const exitPid = pidOf("e2e-exit");
    config.image.kernelCmdline = "console=ttyS0 panic=10 quiet";
    project.configure(config);
    const result = await project.runAsyncWith({ DISKLESS_RELAYS_TEST_FAULT: "stop-tor:e2e-exit" }, "up", "--yes", "--skip-preview");
    const text = result.stdout + result.stderr;
    expect(result.status).not.toBe(0);
    expect(text).toMatch(/relay e2e-exit did not come back healthy on image [0-9a-f]{12} within 240s \(the QEMU process of [^)]*\): .*tor is not running.*tor has not run for 90s while the relay answered/);
    expect(text).toMatch(/console, last lines:/);
    expect(text).toMatch(/ROLLED BACK to image [0-9a-f]{12} with its current onion keys and state, and is healthy there/);
    expect(alive(exitPid)).toBe(false);
    // The later relay was not touched: the same QEMU process still runs it.
    expect(pidOf("e2e-guard")).toBe(before.guardPid);
    expect(alive(before.guardPid)).toBe(true);
    // The sick relay is back, with the same identity and the same ntor onion key.
    await expectFingerprints(0);
    const collected = collect(0, join(scratch, "after-rollback"));
    expect(collected.status, collected.stderr).toBe(0);
    expect(readFileSync(join(collected.out, "keys", "secret_onion_key_ntor")).equals(before.ntor)).toBe(true);
    // Nothing in the run printed a key.
    expect(text).not.toContain(before.ntor.subarray(32, 64).toString("base64"));
  }, 1_200_000);

  it("says at once, on the next up, that the relay still runs its rollback image, and changes nothing", async () => {
    const exitPid = pidOf("e2e-exit");
    const started = Date.now();
    const result = await up();
    expect(result.status).not.toBe(0);
    expect(result.stdout + result.stderr).toMatch(/relay e2e-exit: still on its rollback image [0-9a-f]{12} since .*Nothing was changed/s);
    expect(Date.now() - started).toBeLessThan(120_000);
    expect(pidOf("e2e-exit")).toBe(exitPid);
    expect(pidOf("e2e-guard")).toBe(before.guardPid);
  }, 600_000);

  it("rolls out again once the config is fixed", async () => {
    config.image.kernelCmdline = "console=ttyS0 panic=10";
    project.configure(config);
    const result = await up();
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/relay e2e-exit: healthy on image/);
    await expectFingerprints(0);
    before.guardPid = pidOf("e2e-guard");
  }, 900_000);

  it("refuses to redeploy a relay whose SSH server cannot be reached, and leaves it running", async () => {
    const guard = config.relays[1];
    await monitor(join(runDir("e2e-guard"), "monitor.sock"), `hostfwd_remove net0 tcp:127.0.0.1:${guard.sshPort}`);
    setContact(1, "e2e-unreachable@example.net");
    const result = await up();
    expect(result.status).not.toBe(0);
    expect(result.stdout + result.stderr).toMatch(/relay e2e-guard: cannot collect onion keys and state over SSH from 127\.0\.0\.1/);
    expect(pidOf("e2e-guard")).toBe(before.guardPid);
    expect(alive(before.guardPid)).toBe(true);
    await monitor(join(runDir("e2e-guard"), "monitor.sock"), `hostfwd_add net0 tcp:127.0.0.1:${guard.sshPort}-10.0.2.16:${guard.sshPort}`);
  }, 600_000);

  it("leaves the old VM alone when a build step fails midway, and the next up succeeds", async () => {
    const relativeBase = (await project.runAsync("stack", "export")).stdout.match(/\b(build\/base\/debian-[0-9a-f]{12})\b/)?.[1];
    expect(relativeBase, "the base build directory in the stack state").toBeDefined();
    const base = join(project.dir, relativeBase!);
    renameSync(join(base, ".complete"), join(base, ".complete.hidden"));
    try {
      const failed = await up();
      expect(failed.status).not.toBe(0);
      expect(failed.stdout + failed.stderr).toMatch(/is not a finished base build/);
      expect(alive(before.guardPid)).toBe(true);
      expect(pidOf("e2e-guard")).toBe(before.guardPid);
    } finally {
      renameSync(join(base, ".complete.hidden"), join(base, ".complete"));
    }
    const result = await up();
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(alive(before.guardPid)).toBe(false);
    await expectFingerprints(1);
  }, 900_000);

  it("converges after a pulumi up interrupted during a build", async () => {
    setContact(0, "e2e-interrupted@example.net");
    const child = project.spawn("up", "--yes", "--skip-preview");
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    await waitFor(() => output, /e2e-exit-image-build creating/, 300);
    child.kill("SIGINT");
    await new Promise((resolve) => child.on("close", resolve));

    const result = await up();
    expect(result.status, result.stdout + result.stderr).toBe(0);
    const after = await project.preview();
    expect(after.steps.filter((s) => s.op !== "same").map((s) => `${s.op} ${s.urn}`)).toEqual([]);
    await expectFingerprints(0);
  }, 900_000);

  it("leaves no process or runtime file behind after destroy", async () => {
    const pids = RELAYS.map((relay) => pidOf(relay.name));
    const result = await project.runAsync("destroy", "--yes", "--skip-preview");
    expect(result.status, result.stdout + result.stderr).toBe(0);
    for (const pid of pids) expect(alive(pid)).toBe(false);
    for (const relay of RELAYS) expect(existsSync(runDir(relay.name))).toBe(false);
    const relayDir = join(project.dir, "build", `diskless-relays-${project.stack}`, "relays", "e2e-exit");
    expect(existsSync(join(relayDir, "collected"))).toBe(false);
    // No image of the relay, and so no key of it, stays in the build directory.
    expect(readdirSync(relayDir).filter((entry) => /^[0-9a-f]{12}$/.test(entry) || entry === "rollback")).toEqual([]);
  }, 300_000);
});

/** Sends one command to QEMU's human monitor over its unix socket. */
function monitor(socket: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const connection = createConnection(socket);
    let reply = "";
    connection.on("data", (chunk) => (reply += chunk.toString()));
    connection.on("error", reject);
    connection.on("connect", () => {
      connection.write(`${command}\n`);
      setTimeout(() => {
        connection.end();
        resolve(reply);
      }, 500);
    });
  });
}
