/**
 * Redeploy downtime on the private Tor network, in both identity modes
 * (image mode: onion keys and state collected over SSH into the new image;
 * broker mode: pushed to the key broker and released to the new image after
 * attestation). For each mode, a fetch loop asks the testnet's web page
 * through a circuit guard → exit once a second while `pulumi up` redeploys
 * the exit after a torrc change, and the table shows:
 *  - the gap: from the last page before the redeploy to the first page after;
 *  - one boot: how long the new VM took to be healthy (the rollout gate's
 *    "healthy after N s"), and whether the gap is within one boot plus 10 s;
 *  - how the old VM stopped (the ACPI power button, or hard after a timeout),
 *    and the last page's distance to the old VM's end;
 *  - the circuits that failed once the new VM ran, with tor's reasons.
 *    CHANNEL_CLOSED is counted apart: a guard that still held a channel to
 *    a VM stopped hard fails its next extension with it, but so does a guard
 *    that cannot yet connect to a VM still booting, so the count alone does
 *    not say which.
 * Also the testnet's start-up time and how long new relays take to enter its
 * consensus. Prints a table; reproduce with
 *   npm run bench:redeploy            (both modes)
 *   npm run bench:redeploy -- image   (or: broker)
 * (root, QEMU under TCG; about 10 minutes a mode).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseRouterStatuses } from "../lib/tor/consensus";
import { torListFingerprint } from "../lib/tor/key-store";
import { CLEAN_SHUTDOWN_SECONDS } from "../lib/local/qemu";
import { fetchThroughCircuit, TorControl } from "../lib/tor/tor-control";
import { TESTNET, type TestnetNetwork } from "../lib/config/testnet";
import { startTestnet, stopTestnet } from "../lib/testnet/testnet-host";
import { TEST_OVMF, TEST_OVMF_SHA256 } from "../test/support/broker";
import { makeTestKeys } from "../test/support/fleet";
import { BUILD_CACHE, debianBase } from "../test/support/images";
import { TestProject } from "../test/support/pulumi";

type Mode = "image" | "broker";
const now = () => Date.now() / 1000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One fetch attempt of the loop: when it began and ended, and why it failed. */
interface Attempt {
  began: number;
  ended: number;
  ok: boolean;
  reason?: string;
}

async function benchMode(mode: Mode, testnetDir: string, network: TestnetNetwork, control: TorControl, rows: [string, string][]): Promise<void> {
  const project = new TestProject(`bench${mode}`, { passphrase: "" });
  try {
    mkdirSync(join(project.dir, "build"), { mode: 0o700 });
    symlinkSync(join(BUILD_CACHE, "base"), join(project.dir, "build", "base"));
    // Own addresses and VM ids per mode: the testnet's consensus still lists the other mode's relays.
    const base = mode === "image" ? 11 : 13;
    const relays = [
      { name: `${mode}-exit`, nickname: mode === "image" ? "BenchImageExit" : "BenchBrokerExit", host: base, vmId: 100 + base, exit: true },
      { name: `${mode}-guard`, nickname: mode === "image" ? "BenchImageGuard" : "BenchBrokerGuard", host: base + 1, vmId: 101 + base, exit: false },
    ];
    makeTestKeys(project.dir, relays.map((r) => ({ ...r, node: "local" })));
    const fp = Object.fromEntries(relays.map((r) => [r.name, torListFingerprint(join(project.dir, "keys", r.name), r.nickname).rsa]));
    const config: Record<string, any> = {
      target: "qemu",
      testnet: { dir: testnetDir },
      image: { flavour: "debian", release: "bookworm" },
      stateCollection: { privateKeyFile: "keys/collector", connectTimeoutSeconds: 10 },
      rollout: { healthTimeoutSeconds: 300 },
      ...(mode === "broker" ? { identity: { mode: "broker", broker: { attestation: "snp", allowSimulatedAttestation: true, pushIntervalSeconds: 30 } } } : {}),
      relays: relays.map((r) => ({
        name: r.name, nickname: r.nickname, node: "local", vmId: r.vmId, mac: `52:54:00:00:03:${String(r.host).padStart(2, "0")}`,
        ipv4: { address: `10.77.0.${r.host}/24`, gateway: TESTNET.hostIPv4 }, ipv6: { address: `fd77:77::${r.host}/64`, gateway: TESTNET.hostIPv6 },
        orPort: 9001, exit: { enabled: r.exit }, nameservers: [TESTNET.hostIPv4], contactInfo: "bench@example.net", memoryMiB: 1024, cores: 1,
        ...(mode === "broker" ? { sev: { enabled: true, ovmf: TEST_OVMF, ovmfSha256: TEST_OVMF_SHA256, vcpuType: "EPYC-v4" } } : {}),
      })),
    };
    project.configure(config);
    let start = now();
    const first = await project.runAsync("up", "--yes", "--skip-preview");
    if (first.status !== 0) throw new Error(`${mode} mode: first up failed:\n${first.stdout}\n${first.stderr}`);
    rows.push([`${mode} mode: first pulumi up (2 relays, base cached)`, `${(now() - start).toFixed(1)} s`]);
    const nicknames = new Set(relays.map((r) => r.nickname));
    while (parseRouterStatuses(await control.getInfo("ns/all")).filter((r) => nicknames.has(r.nickname)).length < 2) await sleep(1000);
    rows.push([`  then both relays in the consensus`, `${(now() - start).toFixed(1)} s after the up began`]);

    /** One circuit guard → exit that fetches the testnet's page. */
    const attempt = async (): Promise<Attempt> => {
      const began = now();
      try {
        const circuit = await control.buildCircuit([fp[relays[1]!.name]!, fp[relays[0]!.name]!], 10_000);
        const page = await fetchThroughCircuit(control, network.socksSocket, circuit, TESTNET.names[0], TESTNET.httpPort, 10_000);
        await control.closeCircuit(circuit);
        return { began, ended: now(), ok: page.status === 200, ...(page.status === 200 ? {} : { reason: `HTTP ${page.status}` }) };
      } catch (err) {
        return { began, ended: now(), ok: false, reason: (err as Error).message.replace(/^circuit \S* ?through \S+ /, "") };
      }
    };
    const runDir = join(project.dir, ".runtime", project.stack, relays[0]!.name);
    const pidOf = () => {
      try {
        return Number(readFileSync(join(runDir, "qemu.pid"), "utf8"));
      } catch {
        return undefined;
      }
    };
    const alive = (pid: number) => spawnSync("kill", ["-0", String(pid)]).status === 0;
    // The fetch loop works before the redeploy begins.
    while (!(await attempt()).ok) await sleep(1000);

    const oldPid = pidOf()!;
    config.relays[0].contactInfo = "bench-redeployed@example.net";
    project.configure(config);
    const attempts: Attempt[] = [];
    let oldGone: number | undefined;
    let newStarted: number | undefined;
    let done = false;
    const deploy = project.runAsync("up", "--yes", "--skip-preview").finally(() => (done = true));
    // The VM watch: when the old QEMU ends and the new one starts.
    const watch = (async () => {
      while (!done || newStarted === undefined) {
        if (oldGone === undefined && !alive(oldPid)) oldGone = now();
        const pid = pidOf();
        if (oldGone !== undefined && newStarted === undefined && pid !== undefined && pid !== oldPid && alive(pid)) newStarted = now();
        if (done && newStarted === undefined) break;
        await sleep(200);
      }
    })();
    // The fetch loop: once a second, until the first page through the new VM.
    for (;;) {
      const result = await attempt();
      attempts.push(result);
      if (result.ok && newStarted !== undefined && result.began > newStarted) break;
      if (done && newStarted === undefined) break;
      await sleep(Math.max(0, 1000 - (result.ended - result.began) * 1000));
    }
    await watch;
    const result = await deploy;
    if (result.status !== 0) throw new Error(`${mode} mode: the redeploy failed:\n${result.stdout}\n${result.stderr}`);
    if (oldGone === undefined || newStarted === undefined) throw new Error(`${mode} mode: the exit's VM was not replaced:\n${result.stdout}`);
    const lastBefore = attempts.filter((a) => a.ok && a.ended <= oldGone!).at(-1);
    const firstAfter = attempts.find((a) => a.ok && a.began > newStarted!)!;
    const boot = Number(new RegExp(`relay ${relays[0]!.name}: healthy on image \\S+ after (\\d+)s`).exec(result.stdout)?.[1] ?? NaN);
    const stoppedHow = /powered off on the ACPI power button/.test(result.stdout) ? "on the ACPI power button" : /stopped hard/.test(result.stdout) ? `hard, after ${CLEAN_SHUTDOWN_SECONDS} s without powering off` : "(not said)";
    const failedAfter = attempts.filter((a) => !a.ok && a.began > newStarted!);
    const gap = lastBefore ? firstAfter.ended - lastBefore.ended : NaN;
    rows.push([`${mode} mode, exit redeployed (onion keys kept): gap, last page before → first page after`, `${gap.toFixed(1)} s`]);
    rows.push([`  one boot: the new VM healthy (the rollout gate)`, `${boot} s → target gap ≤ ${boot + 10} s: ${gap <= boot + 10 ? "met" : "NOT met"}`]);
    rows.push([`  the old VM stopped ${stoppedHow}`, `${lastBefore ? (oldGone - lastBefore.ended).toFixed(1) : "?"} s after the last page before`]);
    rows.push([`  the new VM started → first page through it`, `${(firstAfter.ended - newStarted).toFixed(1)} s`]);
    rows.push([
      `  circuits that failed once the new VM ran`,
      failedAfter.length === 0
        ? "none"
        : `${failedAfter.length}, by tor's reason: ${Object.entries(
            failedAfter.reduce<Record<string, number>>((counts, a) => {
              const why = /REMOTE_REASON=(\S+)/.exec(a.reason ?? "")?.[1] ?? /REASON=(\S+)/.exec(a.reason ?? "")?.[1] ?? (/not built within/.test(a.reason ?? "") ? "timeout" : (a.reason ?? "?"));
              counts[why] = (counts[why] ?? 0) + 1;
              return counts;
            }, {}),
          )
            .map(([why, n]) => `${why} ${n}`)
            .join(", ")} (CONNECTFAILED: nothing listens yet while the new VM boots)`,
    ]);
    rows.push([
      `  of them, CHANNEL_CLOSED (the guard lost its channel to the exit, or could not open one yet)`,
      String(failedAfter.filter((a) => /CHANNEL_CLOSED/.test(a.reason ?? "")).length),
    ]);
  } finally {
    await project.runAsync("destroy", "--yes", "--skip-preview");
    project.destroy();
  }
}

async function main() {
  const asked = process.argv.slice(2).filter((arg) => arg !== "--");
  for (const mode of asked) if (mode !== "image" && mode !== "broker") throw new Error(`unknown mode "${mode}": image or broker`);
  const modes: Mode[] = asked.length > 0 ? (asked as Mode[]) : ["image", "broker"];
  const work = mkdtempSync(join(tmpdir(), "diskless-relays-bench-redeploy-"));
  const location = { dir: join(work, "testnet"), netns: `drbench-${process.pid}` };
  // Each row is printed as it comes too: a run cut short still leaves its numbers.
  const rows: [string, string][] = [];
  const push = rows.push.bind(rows);
  rows.push = (...items: [string, string][]) => {
    for (const [key, value] of items) console.log(`# ${key}: ${value}`);
    return push(...items);
  };
  try {
    debianBase();
    const start = now();
    const network = await startTestnet(location, process.cwd());
    rows.push(["testnet start-up (namespace, 3 authorities, broker, client, first consensus)", `${(now() - start).toFixed(1)} s`]);
    const control = await TorControl.connect(network.controlSocket);
    try {
      for (const mode of modes) await benchMode(mode, location.dir, network, control, rows);
    } finally {
      control.close();
    }
  } finally {
    await stopTestnet(location);
    if (existsSync(work)) rmSync(work, { recursive: true, force: true });
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  console.log(`diskless-relays redeploy benchmark (${new Date().toISOString()}, ${cpus().length} cores, QEMU TCG, voting interval ${TESTNET.votingInterval} s)`);
  for (const [key, value] of rows) console.log(`${key.padEnd(width)}  ${value}`);
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
