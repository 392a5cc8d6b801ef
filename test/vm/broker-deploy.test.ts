/**
 * Broker mode through the real engine, on a private Tor network of the
 * test's own (its key broker included, lib/testnet/testnet-broker.ts): `pulumi up`
 * uploads each relay's shipped keys, registers the launch measurement of
 * each new image, boots the key-free images under QEMU beside a simulated
 * SEV-SNP secure processor, and its rollout gate waits for the health report
 * each relay pushes, attested, to the broker. No SSH server runs in them. A
 * redeploy gets the onion key the relay pushed, and retires the old image
 * once the new one is healthy. A guest reset comes back with the onion key
 * it had. No private key byte is in the Pulumi state, the engine's output,
 * the build directory, the consoles or the broker's files.
 */
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { brokerStatus, type BrokerAdminEndpoint, type BrokerRelayStatus } from "../../lib/broker/broker-admin";
import { brokerAdminEndpoint } from "../../lib/broker/broker-endpoint";
import { TESTNET, type TestnetNetwork } from "../../lib/config/testnet";
import { DEFAULT_PUBLIC_ATTESTATION_PORT } from "../../lib/config/config";
import { BROKER_MIN_TCB } from "../../lib/testnet/testnet-broker";
import { fetchThroughCircuit, TorControl } from "../../lib/tor/tor-control";
import { startTestnet, stopTestnet } from "../../lib/testnet/testnet-host";
import { TEST_IMAGE } from "../support/fleet";
import { TEST_OVMF_SHA256 } from "../support/broker";
import { hmp, waitFor } from "../support/images";
import { occurrences, occurrencesInTree, secrets } from "../support/key-scan";
import { TestProject, toolEnv, type PulumiResult } from "../support/pulumi";
import { privateTmpDir } from "../support/tmp";
import { fixturePath } from "../support/snp-fixtures";
import { localRelayConfig, localStackProject, type LocalStack } from "../support/local-stack";

const RELAYS = [
  { name: "bd-exit", nickname: "BrokerExit", host: 21, vmId: 110 },
  { name: "bd-guard", nickname: "BrokerGuard", host: 22, vmId: 111 },
] as const;
/** The public AmdSevX64 OVMF description measurements are computed with (test/fixtures/snp/VECTORS.md), as the local stack uses. */
const OVMF = fixturePath("ovmf_AmdSev_suffix.bin");
/** Its pin, as an operator would set it (sha256sum). */
const OVMF_SHA256 = TEST_OVMF_SHA256;

/**
 * POSTs at a relay's public attestation endpoint from one address for `durationMs`, `parallel` at a time; prints
 * how many got each status. Constant: its parameters travel as one JSON argument.
 */
const FLOOD_ATTESTATION_SCRIPT = `
const spec = JSON.parse(process.argv[1]);
const counts = {};
const end = Date.now() + spec.durationMs;
async function worker() {
  while (Date.now() < end) {
    const nonce = require("node:crypto").randomBytes(32).toString("base64");
    let status = "error";
    try {
      const res = await fetch(spec.url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ nonce }) });
      await res.arrayBuffer();
      status = String(res.status);
    } catch {}
    counts[status] = (counts[status] || 0) + 1;
  }
}
Promise.all(Array.from({ length: spec.parallel }, worker)).then(() => console.log(JSON.stringify(counts)));
`;

describe("broker mode through pulumi up, on a private Tor network", () => {
  const scratch = privateTmpDir("broker-deploy");
  const testnetLocation = { dir: join(scratch, "testnet"), netns: `drbd-${process.pid}` };
  let network: TestnetNetwork;
  let project: TestProject;
  let stack: LocalStack;
  let admin: BrokerAdminEndpoint;
  let config: Record<string, any>;
  const outputs: PulumiResult[] = [];
  const fingerprints: Record<string, { rsa: string; ed25519: string }> = {};

  const up = async () => {
    const result = await project.runAsync("up", "--yes", "--skip-preview");
    outputs.push(result);
    return result;
  };
  const consoleOf = (relay: string) => () => readFileSync(join(project.dir, ".runtime", project.stack, relay, "console.log"), "latin1");
  const statusOf = async (relay: string): Promise<BrokerRelayStatus> => (await brokerStatus(admin)).relays.find((entry) => entry.relay === relay)!;
  // The volunteer's side of verify-relay: run in the testnet's namespace (where the relays' addresses are), with
  // public files only: the client's consensus, a clone of the log, its signers file, the simulator's test root.
  const volunteer = join(scratch, "volunteer");
  const volunteerLog = join(volunteer, "measurement-log");
  const volunteerSigners = join(volunteer, "measurement-log.allowed_signers");
  const answerFile = (relay: string) => join(volunteer, `${relay}.answer.json`);
  const nonces: Record<string, string> = {};
  const relayAddress = (relay: (typeof RELAYS)[number]) => `10.77.0.${relay.host}:${DEFAULT_PUBLIC_ATTESTATION_PORT}`;
  const git = (args: string[]) => {
    const result = spawnSync("git", args, { encoding: "utf8" });
    if (result.status !== 0) throw new Error(`git ${args.join(" ")}: ${result.stderr}`);
    return result.stdout;
  };
  const verifyRelay = (relay: (typeof RELAYS)[number], args: string[], log = volunteerLog) =>
    spawnSync(
      "ip",
      [
        "netns", "exec", network.netns, "verify-relay", "--fingerprint", fingerprints[relay.name]!.rsa, "--tor-data-dir", join(testnetLocation.dir, "client"),
        "--log", log, "--allowed-signers", volunteerSigners, "--min-tcb", BROKER_MIN_TCB, "--allow-simulated-root", join(network.broker.simulatorDir, "ark-ask.pem"), ...args,
      ],
      { encoding: "utf8", env: toolEnv(), cwd: volunteer, timeout: 180_000 },
    );
  const ntorKeys = (text: string, what: "installed" | "stored") => [...text.matchAll(new RegExp(`relay-agent: .*(?:boot: ${what}|push: ${what}) .*ntor public key (\\S+)`, "g"))].map((match) => match[1]!);

  beforeAll(async () => {
    network = await startTestnet(testnetLocation, process.cwd());
    admin = brokerAdminEndpoint({ admin: { socket: network.broker.adminSocket, tokenFile: network.broker.tokenFile } });
    stack = localStackProject("brokerdeploy", RELAYS);
    project = stack.project;
    Object.assign(fingerprints, stack.fingerprints);
    spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "broker-deploy image signing", "-f", join(project.dir, "keys", "image-signing")]);
    config = {
      target: "qemu",
      testnet: { dir: testnetLocation.dir },
      stateCollection: { privateKeyFile: "keys/collector", connectTimeoutSeconds: 10 },
      rollout: { healthTimeoutSeconds: 300 },
      // Signs each image's records and its launch's entry in the public measurement log.
      image: { ...TEST_IMAGE, signingKeyFile: "keys/image-signing" },
      // The testnet's own broker: its url, keys and admin socket come from network.json.
      identity: { mode: "broker", broker: { attestation: "snp", allowSimulatedAttestation: true, pushIntervalSeconds: 30 } },
      relays: RELAYS.map((relay, i) => ({ ...localRelayConfig(relay, i, 3, "broker-deploy@example.net"), sev: { enabled: true, ovmf: OVMF, ovmfSha256: OVMF_SHA256, vcpuType: "EPYC-v4" } })),
    };
    project.configure(config);
  }, 600_000);

  afterAll(async () => {
    if (project) await project.runAsync("destroy", "--yes", "--skip-preview");
    project?.destroy();
    await stopTestnet(testnetLocation);
  }, 600_000);

  it("boots key-free images that get their keys after attestation; the gate judges the health each relay pushes to the broker", async () => {
    const result = await up();
    expect(result.status, result.stdout + result.stderr).toBe(0);
    for (const relay of RELAYS) {
      expect(result.stdout).toMatch(new RegExp(`relay ${relay.name}: the key broker will release its keys to image [0-9a-f]{12} with launch measurement [0-9a-f]{96}`));
      expect(result.stdout).toMatch(new RegExp(`relay ${relay.name}: healthy on image [0-9a-f]{12} after \\d+s: tor runs with fingerprint ${fingerprints[relay.name]!.rsa}.*came with its attested push to the key broker`));
      // tor, as the oracle, prints the fingerprints of the keys the broker released.
      const text = consoleOf(relay.name)();
      expect(text).toContain(`identity key fingerprint is '${relay.nickname} ${fingerprints[relay.name]!.rsa}'`);
      expect(text).toContain(`ed25519 fingerprint is '${relay.nickname} ${fingerprints[relay.name]!.ed25519}'`);
      expect(text).toMatch(/relay-agent: .*boot: SNP report obtained/);
      const status = await statusOf(relay.name);
      expect(status.lastAttestation?.verdict).toBe("accepted");
      expect(status.images.filter((image) => !image.retired)).toHaveLength(1);
    }
    // No SSH server in a broker-mode image.
    const ssh = spawnSync("ip", ["netns", "exec", network.netns, "timeout", "5", "bash", "-c", `echo > /dev/tcp/10.77.0.${RELAYS[0].host}/22`]);
    expect(ssh.status).not.toBe(0);
  }, 1_500_000);

  it("lets anyone verify each relay by fingerprint: verify-relay, from a volunteer's copy of the log, the testnet client's consensus and the simulator's test root, passes every check", async () => {
    // The volunteer's files: a clone of the published log and its signers file, nothing of the project's.
    mkdirSync(volunteer, { recursive: true, mode: 0o700 });
    git(["clone", "--quiet", "--bare", "--", join(project.dir, "artifacts", "measurement-log"), volunteerLog]);
    copyFileSync(join(project.dir, "artifacts", "measurement-log.allowed_signers"), volunteerSigners);
    for (const relay of RELAYS) {
      // The relay enters the client's consensus a voting round or two after it boots.
      // No --address: verify-relay asks the address the consensus lists for the fingerprint, on the default port.
      let result = verifyRelay(relay, ["--save", answerFile(relay.name)]);
      for (let i = 0; i < 40 && result.status !== 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 15_000));
        result = verifyRelay(relay, ["--save", answerFile(relay.name)]);
      }
      expect(result.status, `${relay.name}:\n${result.stdout}${result.stderr}`).toBe(0);
      expect(result.stderr).toContain(`asking ${relayAddress(relay)} (the consensus's address for ${fingerprints[relay.name]!.rsa}`);
      const lines = result.stdout.trim().split("\n");
      expect(lines.map((line) => line.split(/\s+/)[1])).toEqual(["amd_chain", "policy", "tcb", "freshness", "report_data", "signing_cert", "signature", "measurement_in_log"]);
      expect(lines.every((line) => line.startsWith("ok "))).toBe(true);
      expect(lines[0]).toContain("SIMULATED ROOT");
      nonces[relay.name] = /it answers --nonce ([0-9a-f]{64})/.exec(result.stderr)![1]!;
      console.log(`verify-relay ${relay.nickname} (${fingerprints[relay.name]!.rsa}):\n${result.stdout}`);
    }
  }, 900_000);

  it("refuses a replayed answer, one relay's answer for another, a measurement the log lacks and a log rewritten after the fact, naming the check", () => {
    const [exit, guard] = RELAYS;
    const failing = (result: ReturnType<typeof verifyRelay>) => {
      expect(result.status, result.stdout + result.stderr).toBe(1);
      return result.stdout.split("\n").filter((line) => line.startsWith("FAIL")).map((line) => line.split(/\s+/)[1]);
    };
    // Genuine saved answers pass with the nonce they answered.
    expect(verifyRelay(exit, ["--evidence", answerFile(exit.name), "--nonce", nonces[exit.name]!]).status).toBe(0);
    // A replay: the exit's genuine answer, to a nonce this run did not ask.
    expect(failing(verifyRelay(exit, ["--evidence", answerFile(exit.name), "--nonce", "ab".repeat(32)]))).toEqual(["freshness"]);
    // The guard's genuine answer presented as the exit's.
    expect(failing(verifyRelay(exit, ["--evidence", answerFile(guard.name), "--nonce", nonces[guard.name]!]))).toEqual(expect.arrayContaining(["report_data", "signing_cert"]));
    // A copy of the log without its last entry: that relay's measurement is not in it.
    const head = git(["--git-dir", volunteerLog, "rev-parse", "HEAD"]).trim();
    const lastRelay = JSON.parse(git(["--git-dir", volunteerLog, "show", `HEAD:${git(["--git-dir", volunteerLog, "diff-tree", "--no-commit-id", "--name-only", "-r", "HEAD"]).trim()}`])).relay as string;
    const shortLog = join(volunteer, "short-log");
    git(["clone", "--quiet", "--bare", "--", volunteerLog, shortLog]);
    git(["--git-dir", shortLog, "update-ref", "HEAD", `${head}~1`]);
    const last = RELAYS.find((relay) => relay.name === lastRelay)!;
    expect(failing(verifyRelay(last, ["--evidence", answerFile(last.name), "--nonce", nonces[last.name]!], shortLog))).toEqual(["measurement_in_log"]);
    // The operator rewrites the last entry after the fact, signed with the genuine key: a volunteer who saw the old head notices.
    const rewritten = join(volunteer, "rewritten");
    git(["clone", "--quiet", "--", volunteerLog, rewritten]);
    const entryPath = git(["-C", rewritten, "diff-tree", "--no-commit-id", "--name-only", "-r", "HEAD"]).trim();
    // One field changed in the entry's own text, so that the entry still reads as one (only its history is wrong).
    const text = readFileSync(join(rewritten, entryPath), "utf8");
    const changed = text.replace(/"vcpus": (\d+)/, (_all, vcpus: string) => `"vcpus": ${Number(vcpus) + 1}`);
    expect(changed).not.toBe(text);
    writeFileSync(join(rewritten, entryPath), changed);
    git(["-C", rewritten, "-c", "gpg.format=ssh", "-c", `user.signingKey=${join(project.dir, "keys", "image-signing")}`, "-c", "user.name=operator", "-c", "user.email=operator@example.net", "commit", "--quiet", "--amend", "-S", "-a", "--no-edit"]);
    expect(failing(verifyRelay(last, ["--evidence", answerFile(last.name), "--nonce", nonces[last.name]!, "--log-seen", head], rewritten))).toEqual(["measurement_in_log"]);
  }, 300_000);

  it("rate-limits a flood at the endpoint, and the relays keep carrying pages meanwhile", async () => {
    const [exit, guard] = RELAYS;
    const control = await TorControl.connect(network.controlSocket);
    try {
      await control.waitForMicrodescriptors([fingerprints[guard.name]!.rsa, fingerprints[exit.name]!.rsa], 120_000);
      const flood = spawn("ip", ["netns", "exec", network.netns, process.execPath, "-e", FLOOD_ATTESTATION_SCRIPT, JSON.stringify({ url: `http://${relayAddress(exit)}/v1/attestation`, durationMs: 45_000, parallel: 10 })], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let flooding = true;
      flood.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
      const finished = new Promise<number | null>((resolve) => flood.on("close", (code) => ((flooding = false), resolve(code))));
      // Pages through guard → exit while the flood runs.
      await new Promise((resolve) => setTimeout(resolve, 3000));
      for (let i = 0; i < 2; i++) {
        const circuit = await control.buildCircuit([fingerprints[guard.name]!.rsa, fingerprints[exit.name]!.rsa], 60_000);
        const page = await fetchThroughCircuit(control, network.socksSocket, circuit, TESTNET.names[0], TESTNET.httpPort, 30_000);
        await control.closeCircuit(circuit);
        expect(page.status).toBe(200);
      }
      expect(flooding, "the pages came while the flood ran").toBe(true);
      expect(await finished).toBe(0);
      const counts = JSON.parse(out) as Record<string, number>;
      console.log(`flood of the exit's attestation endpoint for 45 s: ${JSON.stringify(counts)}`);
      // Burst 5 per source, then one every 5 s: at most 5 + 45/5 + 1 answers; everything else is told to come back later.
      expect(counts["429"] ?? 0).toBeGreaterThanOrEqual(500);
      expect((counts["200"] ?? 0) + (counts["503"] ?? 0)).toBeLessThanOrEqual(15);
    } finally {
      control.close();
    }
  }, 600_000);

  it("redeploys a changed torrc with the onion key the relay pushed, and retires the old image once the new one is healthy", async () => {
    const relay = RELAYS[0];
    const before = await statusOf(relay.name);
    const oldImage = before.images.find((image) => !image.retired)!.imageDigest;
    const pushed = ntorKeys(consoleOf(relay.name)(), "stored").at(-1);
    expect(pushed).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    config.relays[0].contactInfo = "broker-deploy redeployed <broker-deploy@example.net>";
    project.configure(config);
    const result = await up();
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`relay ${relay.name}: .* runs; the key broker holds the onion keys and state it pushed at`));
    expect(result.stdout).toContain(`relay ${relay.name}: image ${oldImage.slice(0, 12)} retired at the key broker`);
    // The new VM's agent installed the ntor key the old one pushed (the console is the new VM's).
    expect(ntorKeys(consoleOf(relay.name)(), "installed")[0]).toBe(pushed);
    const after = await statusOf(relay.name);
    const current = after.images.filter((image) => !image.retired);
    expect(current).toHaveLength(1);
    expect(current[0]!.imageDigest).not.toBe(oldImage);
    expect(after.images.find((image) => image.imageDigest === oldImage)?.retired).toBe(true);
    // The guard's image did not change: it was not touched.
    expect(result.stdout).not.toMatch(/relay bd-guard: healthy on image/);
  }, 1_500_000);

  it("after a guest reset (system_reset), the relay's ntor key is the one it had just before, from its push-back", async () => {
    const relay = RELAYS[1];
    const read = consoleOf(relay.name);
    // Wait for a push after boot, so the broker holds the key the relay uses now.
    const lastPush = (await statusOf(relay.name)).lastPush!;
    for (let i = 0; i < 60 && (await statusOf(relay.name)).lastPush === lastPush; i++) await new Promise((resolve) => setTimeout(resolve, 2000));
    const before = ntorKeys(read(), "stored").at(-1);
    expect(before).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    const installedBefore = ntorKeys(read(), "installed").length;
    await hmp(join(project.dir, ".runtime", project.stack, relay.name, "monitor.sock"), "system_reset");
    const deadline = Date.now() + 600_000;
    while (ntorKeys(read(), "installed").length === installedBefore && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 2000));
    expect(ntorKeys(read(), "installed").at(-1)).toBe(before);
    await waitFor(read, new RegExp(`(identity key fingerprint is '${relay.nickname} ${fingerprints[relay.name]!.rsa}'[\\s\\S]*){2}`), 300);
  }, 900_000);

  it("leaves no private key byte in the Pulumi state, the engine's output, the build directory, the consoles or the broker's files", () => {
    const keys = new Map<string, Buffer>();
    for (const relay of RELAYS) for (const [file, bytes] of secrets(join(project.dir, "keys", relay.name))) keys.set(`${relay.name}/${file}`, bytes);
    const state = project.must("stack", "export", "--show-secrets");
    const places = {
      state: occurrences(Buffer.from(state), keys),
      output: occurrences(Buffer.from(outputs.map((result) => result.stdout + result.stderr).join("\n")), keys),
      build: occurrencesInTree(join(project.dir, "build", `diskless-relays-${project.stack}`), keys),
      runtime: occurrencesInTree(join(project.dir, ".runtime"), keys),
      artifacts: occurrencesInTree(join(project.dir, "artifacts"), keys),
      broker: occurrencesInTree(join(testnetLocation.dir, "key-broker"), keys),
    };
    expect(places).toEqual({ state: [], output: [], build: [], runtime: [], artifacts: [], broker: [] });
    // The positive control: the same scan finds them where they are, in the key store.
    const control = occurrencesInTree(join(project.dir, "keys"), keys);
    for (const relay of RELAYS) {
      for (const file of ["secret_id_key", "ed25519_signing_secret_key"]) expect(control.some((hit) => hit.includes(`${relay.name}/${file}`)), `${relay.name}/${file}`).toBe(true);
    }
  });
});
