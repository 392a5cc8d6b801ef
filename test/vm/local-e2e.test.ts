/**
 * The project's central promise, shown with real parts throughout, on a
 * private Tor network on this machine (lib/testnet/testnet-host.ts: three directory
 * authorities, a client, a web server and a DNS zone in a network namespace
 * of the test's own). `pulumi up` of a qemu-target stack boots two relays on
 * the testnet's bridge and waits until each is healthy; they enter the
 * consensus; the client fetches a page through the local exit, which
 * resolves the name with its own resolver. A torrc redeploy keeps the
 * relay's identity, ntor key and state, so a circuit through it carries
 * traffic right after it is back and before any new consensus; with fresh
 * onion keys (the negative control) extensions to it fail until a consensus
 * carries its new key. A relay that does not come back stops the rollout and
 * is rolled back; an unreachable relay stops its redeploy without being
 * touched. (A build that fails midway and an interrupted run are shown
 * against the Proxmox VE double, test/engine/deploy.test.ts: they need no booted VM.)
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRouterStatuses } from "../../lib/tor/consensus";
import { alive as processAlive, holdsOpen } from "../../lib/core/pid-file";
import { MAX_CLOCK_SKEW_SECONDS } from "../../lib/ops/relay-health";
import { torSigningKeyExpiration } from "../../lib/tor/key-store";
import { MONITORING_FILES, TOR_SERIES } from "../../lib/render/monitoring";
import { DEFAULT_METRICS_PORT } from "../../lib/tor/tor-values";
import { fetchThroughCircuit, SocksRefusal, TorControl } from "../../lib/tor/tor-control";
import { TESTNET, tapName, type TestnetNetwork } from "../../lib/config/testnet";
import { startTestnet, stopTestnet } from "../../lib/testnet/testnet-host";
import { TEST_IMAGE } from "../support/fleet";
import { holdConsensus, releaseConsensus } from "../support/consensus-hold";
import { floodInNetns } from "../support/flood";
import { fetchMetricsTextInNetns, parseMetricsText } from "../support/metrics";
import { runStep, waitFor } from "../support/images";
import { TestProject } from "../support/pulumi";
import { privateTmpDir } from "../support/tmp";
import { collectStateSpec, localRelayConfig, localStackProject, type LocalStack } from "../support/local-stack";

const RELAYS = [
  { name: "e2e-exit", nickname: "EndToEndExit", host: 11, vmId: 100 },
  { name: "e2e-guard", nickname: "EndToEndGuard", host: 12, vmId: 101 },
] as const;
type RelayName = (typeof RELAYS)[number]["name"];

describe("the local stack on a private Tor network, end to end", () => {
  const scratch = privateTmpDir("e2e");
  // A namespace of the test's own: an operator's testnet on this machine is left alone.
  const testnetLocation = { dir: join(scratch, "testnet"), netns: `dre2e-${process.pid}` };
  let network: TestnetNetwork;
  let project: TestProject;
  let config: Record<string, any>;
  let control: TorControl;
  const fingerprints = {} as Record<RelayName, { rsa: string; ed25519: string }>;

  let stack: LocalStack;
  const runDir = (relay: RelayName) => stack.runDir(relay);
  const consoleOf = (relay: RelayName) => () => (existsSync(join(runDir(relay), "console.log")) ? readFileSync(join(runDir(relay), "console.log"), "latin1") : "");
  const pidOf = (relay: RelayName) => Number(readFileSync(join(runDir(relay), "qemu.pid"), "utf8"));
  // That relay's QEMU runs as `pid`: alive, not a zombie, and not another process that reused the number.
  const runs = (relay: RelayName, pid: number) => processAlive(pid) && holdsOpen(pid, join(runDir(relay), "qemu.pid"));
  const up = () => project.runAsync("up", "--yes", "--skip-preview");
  const setContact = (index: number, contact: string) => {
    config.relays[index].contactInfo = contact;
    project.configure(config);
  };
  /** The relay's link on the bridge, as unplugging its cable would. */
  const link = (index: number, state: "up" | "down") => spawnSync("ip", ["-n", network.netns, "link", "set", tapName(RELAYS[index]!.vmId), state]);
  /**
   * Holds the consensus (the authorities stop hearing each other's votes),
   * then waits until a consensus they made just before (which the relays, as
   * directory caches, still serve) has reached the client; returns the
   * client's consensus from then on.
   */
  const pauseConsensus = async () => {
    holdConsensus(network.netns);
    let current = await validAfter();
    for (let settled = 0; settled < 3; ) {
      await new Promise((resolve) => setTimeout(resolve, 10_000));
      const now = await validAfter();
      settled = now === current ? settled + 1 : 0;
      current = now;
    }
    return current;
  };

    /** What the relay hands over right now, via the real collection step over SSH; returns the collected directory. */
  let collections = 0;
  const collect = (index: number, relayDir: string) => {
    const relay = config.relays[index];
    const imageDigest = (++collections).toString(16).padStart(12, "0").padEnd(64, "0");
    const result = runStep("collect-state", collectStateSpec(stack, network, relay, relayDir, imageDigest));
    return { ...result, out: join(relayDir, "collected", imageDigest.slice(0, 12)) };
  };

  const expectFingerprints = async (index: number) => {
    const relay = RELAYS[index]!;
    const rsa = await waitFor(consoleOf(relay.name), new RegExp(`identity key fingerprint is '${relay.nickname} ([0-9A-F]{40})'`), 300);
    const ed = await waitFor(consoleOf(relay.name), new RegExp(`ed25519 fingerprint is '${relay.nickname} ([A-Za-z0-9+/]{43})'`), 60);
    expect(rsa[1]).toBe(fingerprints[relay.name].rsa);
    expect(ed[1]).toBe(fingerprints[relay.name].ed25519);
  };

  /** The ntor key the client would extend to a relay with: from its microdescriptor. */
  const clientNtorKey = async (fingerprint: string) => /^ntor-onion-key (\S+)$/m.exec((await control.microdescriptor(fingerprint)) ?? "")?.[1]?.replace(/=+$/, "");
  /** The ntor public key in a collected secret_onion_key_ntor (header, secret, public). */
  const ntorPublicKey = (file: string) => readFileSync(file).subarray(64, 96).toString("base64").replace(/=+$/, "");
  const validAfter = () => control.getInfo("consensus/valid-after");
  const exitFp = () => fingerprints["e2e-exit"].rsa;
  const guardFp = () => fingerprints["e2e-guard"].rsa;
  /**
   * Guard, then exit (no authority on the path, so paused authorities do not
   * matter), tried up to three times as a tor client retries a circuit: the
   * guard may still hold a channel to the VM that was just replaced, and the
   * first extension over it fails with CHANNEL_CLOSED. Rejects with every
   * attempt's failure.
   */
  const fetchThroughExit = async (port: number = TESTNET.httpPort) => {
    await control.waitForMicrodescriptors([guardFp(), exitFp()], 120_000);
    const failures: string[] = [];
    for (let attempt = 1; attempt <= 3; attempt++) {
      let circuit: string | undefined;
      try {
        circuit = await control.buildCircuit([guardFp(), exitFp()], 30_000);
        const page = await fetchThroughCircuit(control, network.socksSocket, circuit, TESTNET.names[0], port, 60_000);
        if (failures.length) console.log(`fetch through the exit succeeded at attempt ${attempt}; before: ${failures.join(" | ")}`);
        return page;
      } catch (err) {
        failures.push((err as Error).message);
        await new Promise((resolve) => setTimeout(resolve, 3000));
      } finally {
        if (circuit) await control.closeCircuit(circuit);
      }
    }
    throw new Error(`no page through the exit in 3 attempts: ${failures.join(" | ")}`);
  };

  beforeAll(async () => {
    network = await startTestnet(testnetLocation, process.cwd());
    control = await TorControl.connect(network.controlSocket);
    stack = localStackProject("e2e", RELAYS);
    project = stack.project;
    Object.assign(fingerprints, stack.fingerprints);
    config = {
      target: "qemu",
      testnet: { dir: testnetLocation.dir },
      image: TEST_IMAGE,
      stateCollection: { privateKeyFile: "keys/collector", connectTimeoutSeconds: 10 },
      // Tor's MetricsPort on each relay's address, for a Prometheus server on the testnet host.
      metrics: { allowFrom: TESTNET.hostIPv4 },
      // Sized for software emulation on a busy machine (npm test runs the VM files beside the others): a boot takes
      // tens of seconds, and a relay without tor must answer for 90 s before the gate gives up on it.
      rollout: { healthTimeoutSeconds: 360 },
      relays: RELAYS.map((relay, i) => ({ ...localRelayConfig(relay, i, 2, "e2e@example.net"), ipv6: { address: `fd77:77::${relay.host}/64`, gateway: TESTNET.hostIPv6 } })),
    };
    project.configure(config);
  }, 600_000);

  afterAll(async () => {
    control?.close();
    if (project) await project.runAsync("destroy", "--yes", "--skip-preview");
    project?.destroy();
    await stopTestnet(testnetLocation);
  }, 600_000);

  it("boots both relays, waits until each is healthy, and tor prints the fingerprints of their keys", async () => {
    const result = await up();
    expect(result.status, result.stdout + result.stderr).toBe(0);
    for (const relay of RELAYS) {
      const healthy = new RegExp(`relay ${relay.name}: healthy on image [0-9a-f]{12} after \\d+s: .*, clock (-?\\d+)s off ours`).exec(result.stdout);
      expect(healthy, result.stdout).not.toBeNull();
      // The VM takes the host's clock at boot; the gate refuses a relay further off than tor tolerates. Under TCG
      // (no KVM here) the guest clock drifts: the offset is printed for the record.
      console.log(`${relay.name}: clock ${healthy![1]}s off the build host's when it was healthy`);
      expect(Math.abs(Number(healthy![1]))).toBeLessThanOrEqual(MAX_CLOCK_SKEW_SECONDS);
    }
    await expectFingerprints(0);
    await expectFingerprints(1);
    // The exit's tor, as debian-tor, reads /etc/resolv.conf: no fallback to 127.0.0.1, no refusal.
    expect(consoleOf("e2e-exit")()).not.toMatch(/Unable to stat resolver configuration|resolv\.conf.*Permission denied/);
    // Its own resolver runs and says so on the console.
    expect(consoleOf("e2e-exit")()).toMatch(/unbound\[\d+:0\] info: start of service/);
  }, 900_000);

  it("puts both relays in the testnet's consensus, with the fingerprints tor derives from their keys and the expected flags", async () => {
    const inConsensus = async () => parseRouterStatuses(await control.getInfo("ns/all"));
    let routers = await inConsensus();
    for (let i = 0; i < 90 && RELAYS.some((relay) => !routers.some((r) => r.nickname === relay.nickname)); i++) {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      routers = await inConsensus();
    }
    const exit = routers.find((r) => r.nickname === "EndToEndExit");
    const guard = routers.find((r) => r.nickname === "EndToEndGuard");
    expect(exit?.fingerprint).toBe(exitFp());
    expect(guard?.fingerprint).toBe(guardFp());
    expect(exit!.address).toBe("10.77.0.11");
    expect(exit!.flags).toEqual(expect.arrayContaining(["Exit", "Running", "Valid"]));
    expect(guard!.flags).toEqual(expect.arrayContaining(["Guard", "Running", "Valid"]));
    expect(guard!.flags).not.toContain("Exit");
    // What the client needs to extend circuits to them follows the consensus.
    await control.waitForMicrodescriptors([exitFp(), guardFp()], 120_000);
  }, 300_000);

  it("exposes tor's MetricsPort to the testnet host: every series the fleet's alert rules use is scraped from the booted relays, at the targets pulumi up wrote", async () => {
    // What pulumi up wrote for Prometheus, checked by Prometheus's own promtool.
    const dir = join(project.dir, "artifacts", "monitoring", project.stack);
    const checked = spawnSync("promtool", ["check", "config", join(dir, MONITORING_FILES.config)], { encoding: "utf8" });
    expect(checked.status, checked.stdout + checked.stderr).toBe(0);
    const targets = JSON.parse(readFileSync(join(dir, MONITORING_FILES.targets), "utf8")) as { targets: string[]; labels: Record<string, string> }[];
    expect(targets.map((t) => [t.labels.relay, t.targets[0], t.labels.fingerprint]).sort()).toEqual(
      RELAYS.map((relay) => [relay.name, `10.77.0.${relay.host}:${DEFAULT_METRICS_PORT}`, fingerprints[relay.name].rsa]).sort(),
    );
    for (const target of targets) {
      // From the testnet host's address, inside its namespace, as Prometheus there would.
      const relay = target.labels.relay as RelayName;
      const scraped = await fetchMetricsTextInNetns(network.netns, `http://${target.targets[0]}/metrics`).catch((error: Error) => {
        // What tor said about its listeners, to tell a port never opened from one closed to this source.
        const listeners = consoleOf(relay)().split("\n").filter((line) => /Metrics|MetricsPort|listener/.test(line));
        throw new Error(`${error.message}\n${relay}'s console:\n${listeners.join("\n")}`);
      });
      const series = parseMetricsText(scraped);
      const wanted = target.labels.exit === "true" ? Object.values(TOR_SERIES) : Object.values(TOR_SERIES).filter((name) => !name.startsWith("tor_relay_exit_"));
      for (const name of wanted) expect(series.has(name), `${target.labels.relay} exports no ${name}`).toBe(true);
      // The certificate's expiry, as tor itself dates the relay's key.
      expect(series.get(TOR_SERIES.signingCertExpiry)![0]!.value * 1000).toBe(torSigningKeyExpiration(join(project.dir, "keys", target.labels.relay!)).getTime());
    }
  }, 180_000);

  it("fetches http://web.testnet/ through the local exit, which resolves the name itself; a port outside its policy is refused", async () => {
    // Guard, an authority, the exit: a full three-hop circuit, extended by fingerprint.
    const circuit = await control.buildCircuit([guardFp(), network.authorities[0]!.fingerprint, exitFp()]);
    const page = await fetchThroughCircuit(control, network.socksSocket, circuit, "web.testnet", TESTNET.httpPort);
    expect(page.status).toBe(200);
    expect(page.body).toBe("diskless-relays testnet: web.testnet reached through Tor\n");
    // Port 25 (SMTP) is not in the reduced exit policy: the exit itself refuses it.
    const refused = await fetchThroughCircuit(control, network.socksSocket, circuit, "web.testnet", TESTNET.refusedPort).catch((err: Error) => err);
    expect(refused).toBeInstanceOf(SocksRefusal);
    expect((refused as SocksRefusal).reason).toMatch(/REMOTE_REASON=EXITPOLICY/);
    await control.closeCircuit(circuit);
  }, 180_000);

  it("serves the Tor Project's exit notice with the exit's contact on port 80 of its IPv4 and IPv6 addresses; the guard serves nothing there", async () => {
    for (const address of ["10.77.0.11", "[fd77:77::11]"]) {
      // From the testnet host, as someone who looks up the address behind an abuse report.
      const page = await fetchMetricsTextInNetns(network.netns, `http://${address}/`);
      expect(page).toContain("<h1>This is a Tor Exit Router</h1>");
      expect(page).toContain('<a href="mailto:e2e@example.net">maintainer</a> (e2e@example.net)');
      expect(page).toContain("10.77.0.11 or fd77:77::11");
      expect(page).not.toContain("FIXME_");
    }
    for (const address of ["10.77.0.12", "[fd77:77::12]"]) {
      const refused = await fetchMetricsTextInNetns(network.netns, `http://${address}/`, 10_000).catch((error: Error) => error);
      expect(refused, `the guard answered on port 80 of ${address}`).toBeInstanceOf(Error);
      expect((refused as Error).message).toMatch(/ECONNREFUSED/);
    }
  }, 120_000);

  it("drops a flood from one testnet address beyond the per-source limit, counts it on the status board, and still carries a page through guard → exit meanwhile", async () => {
    // An address of the testnet's own, on its bridge: neither an authority nor the client, whose connections must not be limited.
    const flooder = "10.77.0.250";
    spawnSync("ip", ["-n", network.netns, "addr", "add", `${flooder}/24`, "dev", network.bridge]);
    try {
      // 40 connection attempts to the exit's ORPort at once, then one every 250 ms for 30 s, each held open: over
      // both the rate (8 a minute, burst 8) and the count (8 at once) that the exit allows one source by default.
      const flood = floodInNetns(network.netns, { from: flooder, host: "10.77.0.11", port: 9001, burst: 40, trickle: 120, intervalMs: 250, connectTimeoutMs: 3000 });
      await new Promise((resolve) => setTimeout(resolve, 2000));
      const page = await fetchThroughExit();
      expect(page.status).toBe(200);
      const flooded = await flood;
      console.log(`flood from ${flooder}: ${JSON.stringify(flooded)}`);
      expect(flooded.attempts).toBe(160);
      expect(flooded.connected).toBeGreaterThan(0);
      expect(flooded.connected).toBeLessThanOrEqual(8 + 5);
      expect(flooded.timedOut).toBeGreaterThanOrEqual(160 - 13);
      // The exit's own health answer counts what its limits dropped, and the status board shows it.
      const board = await project.status();
      const exit = board.rows.get("e2e-exit");
      expect(exit.limits?.dropped, JSON.stringify(exit)).toBeGreaterThanOrEqual(flooded.timedOut);
      expect(exit.attention).toEqual([]);
      expect(board.rows.get("e2e-guard").limits?.dropped).toBe(0);
    } finally {
      spawnSync("ip", ["-n", network.netns, "addr", "del", `${flooder}/24`, "dev", network.bridge]);
    }
  }, 300_000);

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
    // The client extends to the exit with the very key the exit holds.
    expect(await clientNtorKey(exitFp())).toBe(ntorPublicKey(join(out, "keys", "secret_onion_key_ntor")));
  }, 400_000);

  it("redeploys only the exit whose torrc changed; right after it is healthy, before any new consensus, a circuit through it carries traffic", async () => {
    setContact(0, "e2e-changed@example.net");
    const preview = await project.preview();
    const changed = preview.steps.filter((s) => s.op !== "same");
    expect(changed.length).toBeGreaterThan(0);
    expect(changed.every((s) => s.urn.includes("e2e-exit")), changed.map((s) => s.urn).join("\n")).toBe(true);

    const exitPid = pidOf("e2e-exit");
    const consensusBefore = await pauseConsensus();
    try {
      const result = await up();
      expect(result.status, result.stdout + result.stderr).toBe(0);
      expect(result.stdout).toMatch(/relay e2e-exit: collected .*keys\/secret_onion_key_ntor.*state/);
      expect(result.stdout).not.toMatch(/relay e2e-guard: collected/);
      expect(runs("e2e-exit", exitPid)).toBe(false);
      const page = await fetchThroughExit();
      expect(page.status).toBe(200);
      // No consensus came in between: the client still extends with the key it knew before.
      expect(await validAfter()).toBe(consensusBefore);
      expect(await clientNtorKey(exitFp())).toBe(before.ntor.subarray(64, 96).toString("base64").replace(/=+$/, ""));
    } finally {
      releaseConsensus(network.netns);
    }
    await expectFingerprints(0);
    const collected = collect(0, join(scratch, "after"));
    expect(collected.status, collected.stderr).toBe(0);
    expect(readFileSync(join(collected.out, "keys", "secret_onion_key_ntor")).equals(before.ntor)).toBe(true);
    expect(/^LastRotatedOnionKey (.+)$/m.exec(readFileSync(join(collected.out, "state"), "utf8"))![1]).toBe(before.lastRotated);
    // The other relay was not touched: the same QEMU process still runs it.
    expect(pidOf("e2e-guard")).toBe(before.guardPid);
    expect(runs("e2e-guard", before.guardPid)).toBe(true);
  }, 900_000);

  it("negative control: redeployed with fresh onion keys, the exit fails extensions until a consensus carries its new key", async () => {
    // The previous redeploy changed the exit's descriptor: the client fetches its new microdescriptor first.
    await control.waitForMicrodescriptors([guardFp(), exitFp()], 120_000);
    const oldKey = await clientNtorKey(exitFp());
    // The collection cannot reach the relay; the operator lets the redeploy through.
    config.relays[0].allowFreshOnionKeys = true;
    setContact(0, "e2e-fresh-keys@example.net");
    await pauseConsensus();
    let failure: Error | undefined;
    try {
      link(0, "down");
      const result = await up();
      expect(result.status, result.stdout + result.stderr).toBe(0);
      expect(result.stdout + result.stderr).toMatch(/WARNING allowFreshOnionKeys is set: the new image gets FRESH onion keys/);
      // Healthy (its own checks pass), yet the network still knows its old key.
      expect(await clientNtorKey(exitFp())).toBe(oldKey);
      failure = await fetchThroughExit().then(
        () => undefined,
        (err: Error) => err,
      );
    } finally {
      releaseConsensus(network.netns);
      config.relays[0].allowFreshOnionKeys = false;
      project.configure(config);
    }
    expect(failure?.message, "the extension to the relay with fresh keys must fail before a new consensus").toMatch(/no page through the exit in 3 attempts: circuit (through .* (FAILED|CLOSED)|.* was not built within)/);
    // Once a consensus carries the new key (the one the relay holds), the same circuit works.
    const fresh = collect(0, join(scratch, "after-fresh"));
    expect(fresh.status, fresh.stderr).toBe(0);
    const freshKey = ntorPublicKey(join(fresh.out, "keys", "secret_onion_key_ntor"));
    expect(freshKey).not.toBe(oldKey);
    let clientKey = await clientNtorKey(exitFp());
    // Up to 8 minutes: 227 s was enough on an idle machine, 240 s was not with the machine's load at 8
    // (the authorities test the new exit's reachability, and its emulated tor answers slowly).
    for (let i = 0; i < 240 && clientKey !== freshKey; i++) {
      // The test's client failed its directory fetches while the consensus was held, and tor backs off after
      // failures; a reload (tor's do_hup resets its download schedules) makes it retry at once, as an operator's HUP would.
      if (i % 15 === 14) await control.command("SIGNAL RELOAD");
      await new Promise((resolve) => setTimeout(resolve, 2000));
      clientKey = await clientNtorKey(exitFp());
    }
    // On failure, the client's own account of its directory fetches.
    const clientLog = join(testnetLocation.dir, "client", "notice.log");
    const clientLogTail = () => (existsSync(clientLog) ? readFileSync(clientLog, "utf8").trimEnd().split("\n").slice(-40).join("\n") : "(no client log)");
    expect(clientKey, `the client's ntor key for the exit; its log:\n${clientLogTail()}`).toBe(freshKey);
    expect((await fetchThroughExit()).status).toBe(200);
    before.ntor = readFileSync(join(fresh.out, "keys", "secret_onion_key_ntor"));
  }, 1_200_000);

  it("stops the rollout at a relay that does not come back, leaves the later relay alone, and rolls the sick one back", async () => {
    // Both images change; the exit (lower vmId) rolls first, and its new image's tor refuses to start. relay-health may
    // catch tor between its restarts (relay-tor relaunches it every few seconds), so the gate says either that tor is
    // not running or that it never wrote its fingerprint nor opened its ORPort.
    const exitPid = pidOf("e2e-exit");
    config.image.kernelCmdline = "console=ttyS0 panic=10 quiet";
    project.configure(config);
    const result = await project.runAsyncWith({ DISKLESS_RELAYS_TEST_FAULT: "stop-tor:e2e-exit" }, "up", "--yes", "--skip-preview");
    const text = result.stdout + result.stderr;
    expect(result.status).not.toBe(0);
    expect(text).toMatch(/relay e2e-exit did not come back healthy on image [0-9a-f]{12} within 360s \(the QEMU process of [^)]*\): .*(tor is not running.*tor has not run for 90s while the relay answered|tor has not written its fingerprint; nothing listens on its ORPort 9001)/);
    expect(text).toMatch(/console, last lines:/);
    expect(text).toMatch(/ROLLED BACK to image [0-9a-f]{12} with its current onion keys and state, and is healthy there/);
    expect(runs("e2e-exit", exitPid)).toBe(false);
    // The later relay was not touched: the same QEMU process still runs it.
    expect(pidOf("e2e-guard")).toBe(before.guardPid);
    expect(runs("e2e-guard", before.guardPid)).toBe(true);
    // The sick relay is back, with the same identity and the same ntor onion key, and carries traffic.
    await expectFingerprints(0);
    const collected = collect(0, join(scratch, "after-rollback"));
    expect(collected.status, collected.stderr).toBe(0);
    expect(readFileSync(join(collected.out, "keys", "secret_onion_key_ntor")).equals(before.ntor)).toBe(true);
    expect((await fetchThroughExit()).status).toBe(200);
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
    const contact = config.relays[1].contactInfo;
    link(1, "down");
    try {
      setContact(1, "e2e-unreachable@example.net");
      const result = await up();
      expect(result.status).not.toBe(0);
      expect(result.stdout + result.stderr).toMatch(/relay e2e-guard: cannot collect onion keys and state over SSH from 10\.77\.0\.12:22/);
      expect(pidOf("e2e-guard")).toBe(before.guardPid);
      expect(runs("e2e-guard", before.guardPid)).toBe(true);
    } finally {
      link(1, "up");
      // Back to what runs: the refused change stays unapplied.
      setContact(1, contact);
    }
  }, 600_000);

  it("npm run status: both relays healthy on the images their QEMU processes boot; a relay whose QEMU was killed is down, exit 1", async () => {
    const outputs = JSON.parse((await project.runAsync("stack", "output", "relayOutputs", "--json")).stdout);
    const board = () => project.status();
    const healthy = await board();
    expect(healthy.status, JSON.stringify([...healthy.rows.values()], null, 1)).toBe(0);
    for (const relay of RELAYS) {
      const row = healthy.rows.get(relay.name)!;
      // What runs, read here on its own: the ISO on the QEMU process's command line is the stack's image.
      const cmdline = readFileSync(`/proc/${pidOf(relay.name)}/cmdline`, "utf8");
      expect(cmdline).toContain(`relay-${relay.nickname}-${outputs[relay.name].imageDigest.slice(0, 12)}-`);
      expect(row).toMatchObject({ desiredImage: outputs[relay.name].imageDigest, runningImage: outputs[relay.name].imageDigest, machine: "running", tor: "up", fingerprint: "ok", attention: [] });
      expect(row.signingCert.source).toBe("relay");
      expect(row.onionKey.ageDays).toBeGreaterThanOrEqual(0);
    }

    const killed = pidOf("e2e-exit");
    process.kill(killed, "SIGKILL");
    // Dead once it is gone or a zombie (what reaps it here may be slow), as status judges it.
    await waitFor(() => (runs("e2e-exit", killed) ? "" : "dead"), /dead/, 30);
    const down = await board();
    expect(down.status).toBe(1);
    // Started by an up, and gone: stopped, which the next up starts again (the test after this one).
    expect(down.rows.get("e2e-exit")).toMatchObject({ machine: "stopped", tor: "down" });
    expect(down.rows.get("e2e-exit").attention[0]).toBe(`the QEMU process of ${runDir("e2e-exit")} is not running: the next pulumi up starts it again`);
    expect(down.rows.get("e2e-guard").attention).toEqual([]);
  }, 300_000);

  it("brings the killed exit back with the next pulumi up: preview says why; it keeps its identity and ntor key, so a circuit carries a page before any new consensus", async () => {
    const guardPid = pidOf("e2e-guard");
    const preview = await project.preview();
    const replaced = preview.steps.filter((step) => step.op !== "same" && step.type === "command:local:Command");
    expect(replaced.some((step) => step.name === "e2e-exit-vm" && /replace/.test(step.op)), replaced.map((s) => `${s.op} ${s.name}`).join("\n")).toBe(true);
    expect(replaced.every((step) => step.urn.includes("e2e-exit")), replaced.map((s) => s.urn).join("\n")).toBe(true);
    const warnings = (preview.raw.diagnostics ?? []).map((d: { message: string }) => d.message).join("\n");
    // The run directory as the stack config names it (relative to the project).
    expect(warnings).toMatch(/relay e2e-exit: the QEMU process of \S*\/e2e-exit is gone since the last up; this update starts it again/);
    // The key the client knows for the exit, from the consensus before the kill.
    const knownKey = await clientNtorKey(exitFp());
    const consensusBefore = await pauseConsensus();
    try {
      const result = await up();
      expect(result.status, result.stdout + result.stderr).toBe(0);
      expect(result.stdout).toMatch(/relay e2e-exit: healthy on image/);
      expect(result.stdout).not.toMatch(/relay e2e-guard: healthy on image/);
      const page = await fetchThroughExit();
      expect(page.status).toBe(200);
      expect(await validAfter()).toBe(consensusBefore);
      expect(await clientNtorKey(exitFp())).toBe(knownKey);
    } finally {
      releaseConsensus(network.netns);
    }
    await expectFingerprints(0);
    expect(pidOf("e2e-guard")).toBe(guardPid);
    // Up again: nothing to do, the machine stays.
    const exitPid = pidOf("e2e-exit");
    const again = await project.preview();
    // preview --json lists no step for an unchanged resource: none for the machine but "same".
    expect(again.steps.filter((step) => step.name === "e2e-exit-vm" && step.op !== "same").map((step) => step.op)).toEqual([]);
    expect((again.raw.diagnostics ?? []).map((d: { message: string }) => d.message).join("\n")).not.toContain("is gone since the last up");
    expect(runs("e2e-exit", exitPid)).toBe(true);
  }, 900_000);

  it("leaves no process or runtime file behind after destroy", async () => {
    const pids = RELAYS.filter((relay) => existsSync(join(runDir(relay.name), "qemu.pid"))).map((relay) => [relay.name, pidOf(relay.name)] as const);
    const result = await project.runAsync("destroy", "--yes", "--skip-preview");
    expect(result.status, result.stdout + result.stderr).toBe(0);
    for (const [relay, pid] of pids) expect(runs(relay, pid)).toBe(false);
    for (const relay of RELAYS) expect(existsSync(runDir(relay.name))).toBe(false);
    const relayDir = join(project.dir, "build", `diskless-relays-${project.stack}`, "relays", "e2e-exit");
    expect(existsSync(join(relayDir, "collected"))).toBe(false);
    // No image of the relay, and so no key of it, stays in the build directory.
    expect(readdirSync(relayDir).filter((entry) => /^[0-9a-f]{12}-[0-9a-f]{8}$/.test(entry) || entry === "rollback")).toEqual([]);
  }, 300_000);
});
