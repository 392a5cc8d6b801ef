/**
 * Redeploy downtime on the private Tor network: for each relay, from the
 * moment its old VM stops to the first circuit through its new one that
 * carries a page, while `pulumi up` redeploys it after a torrc change (its
 * onion keys collected and kept), and, as the negative control, after a
 * redeploy with fresh onion keys. Also the testnet's start-up time and how
 * long new relays take to enter its consensus. Prints a table; reproduce with
 *   npm run bench:redeploy
 * (root, QEMU under TCG; about 15 minutes).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseRouterStatuses } from "../lib/consensus";
import { torListFingerprint } from "../lib/key-store";
import { fetchThroughCircuit, TorControl } from "../lib/tor-control";
import { TESTNET, tapName } from "../lib/testnet";
import { startTestnet, stopTestnet } from "../lib/testnet-host";
import { makeTestKeys } from "../test/support/fleet";
import { BUILD_CACHE, debianBase } from "../test/support/images";
import { TestProject } from "../test/support/pulumi";

const now = () => Date.now() / 1000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const work = mkdtempSync(join(tmpdir(), "diskless-relays-bench-redeploy-"));
  const location = { dir: join(work, "testnet"), netns: `drbench-${process.pid}` };
  const rows: [string, string][] = [];
  let project: TestProject | undefined;
  try {
    debianBase();
    let start = now();
    const network = await startTestnet(location, process.cwd());
    rows.push(["testnet start-up (namespace, 3 authorities, client, first consensus)", `${(now() - start).toFixed(1)} s`]);
    const control = await TorControl.connect(network.controlSocket);

    project = new TestProject("bench", { passphrase: "" });
    mkdirSync(join(project.dir, "build"), { mode: 0o700 });
    symlinkSync(join(BUILD_CACHE, "base"), join(project.dir, "build", "base"));
    const relays = [
      { name: "bench-exit", nickname: "BenchExit", host: 11, vmId: 100, exit: true },
      { name: "bench-guard", nickname: "BenchGuard", host: 12, vmId: 101, exit: false },
    ];
    makeTestKeys(project.dir, relays.map((r) => ({ ...r, node: "local" })));
    const fp = Object.fromEntries(relays.map((r) => [r.name, torListFingerprint(join(project!.dir, "keys", r.name), r.nickname).rsa]));
    const config: Record<string, any> = {
      target: "qemu",
      testnet: { dir: location.dir },
      stateCollection: { privateKeyFile: "keys/collector", connectTimeoutSeconds: 10 },
      rollout: { healthTimeoutSeconds: 240 },
      relays: relays.map((r, i) => ({
        name: r.name, nickname: r.nickname, node: "local", vmId: r.vmId, mac: `52:54:00:00:03:0${i + 1}`,
        ipv4: { address: `10.77.0.${r.host}/24`, gateway: TESTNET.hostIPv4 }, ipv6: { address: `fd77:77::${r.host}/64`, gateway: TESTNET.hostIPv6 },
        orPort: 9001, exit: { enabled: r.exit }, nameservers: [TESTNET.hostIPv4], contactInfo: "bench@example.net", memoryMiB: 1024, cores: 1,
      })),
    };
    project.configure(config);
    start = now();
    const first = await project.runAsync("up", "--yes", "--skip-preview");
    if (first.status !== 0) throw new Error(`first up failed:\n${first.stdout}\n${first.stderr}`);
    rows.push(["first pulumi up (2 relays, base cached)", `${(now() - start).toFixed(1)} s`]);
    while (parseRouterStatuses(await control.getInfo("ns/all")).filter((r) => r.nickname.startsWith("Bench")).length < 2) await sleep(1000);
    rows.push(["  then both relays in the consensus", `${(now() - start).toFixed(1)} s after the up began`]);

    /** One circuit through the relay (guard, then exit) that fetches the testnet's page; false if anything fails. */
    const carries = async () => {
      try {
        const circuit = await control.buildCircuit([fp["bench-guard"]!, fp["bench-exit"]!], 10_000);
        const page = await fetchThroughCircuit(control, network.socksSocket, circuit, TESTNET.names[0], TESTNET.httpPort, 10_000);
        await control.closeCircuit(circuit);
        return page.status === 200;
      } catch {
        return false;
      }
    };
    const pidOf = (relay: string) => Number(readFileSync(join(project!.dir, ".runtime", "bench", relay, "qemu.pid"), "utf8"));
    const alive = (pid: number) => spawnSync("kill", ["-0", String(pid)]).status === 0;

    /** Redeploys `relay` (index i) after `change`; returns seconds from its old VM stopping to the first page through the new one. */
    const downtime = async (i: number, change: () => void, prepare: () => void = () => undefined) => {
      change();
      project!.configure(config);
      prepare();
      const oldPid = pidOf(relays[i]!.name);
      let stopped: number | undefined;
      let done = false;
      const deploy = project!.runAsync("up", "--yes", "--skip-preview").finally(() => (done = true));
      while (stopped === undefined && !done) {
        if (!alive(oldPid)) stopped = now();
        await sleep(200);
      }
      if (stopped === undefined) throw new Error(`the VM of ${relays[i]!.name} was not replaced:\n${(await deploy).stdout}`);
      while (!(await carries())) await sleep(1000);
      const seconds = now() - stopped;
      const result = await deploy;
      if (result.status !== 0) throw new Error(`up failed:\n${result.stdout}\n${result.stderr}`);
      return seconds;
    };

    const exitKept = await downtime(0, () => (config.relays[0].contactInfo = "bench-1@example.net"));
    rows.push(["exit redeploy, onion keys kept: old VM stopped → first page through the new one", `${exitKept.toFixed(1)} s`]);
    const guardKept = await downtime(1, () => (config.relays[1].contactInfo = "bench-1@example.net"));
    rows.push(["guard redeploy, onion keys kept: old VM stopped → first page through the new one", `${guardKept.toFixed(1)} s`]);
    const exitFresh = await downtime(
      0,
      () => {
        config.relays[0].contactInfo = "bench-2@example.net";
        config.relays[0].allowFreshOnionKeys = true;
      },
      // The collection cannot reach it: as if it were unplugged.
      () => spawnSync("ip", ["-n", network.netns, "link", "set", tapName(relays[0]!.vmId), "down"]),
    );
    rows.push(["exit redeploy, FRESH onion keys (negative control): the same span", `${exitFresh.toFixed(1)} s (until a consensus carries the new key; every ${TESTNET.votingInterval} s here, every hour on the Tor network)`]);
    control.close();
  } finally {
    if (project) {
      await project.runAsync("destroy", "--yes", "--skip-preview");
      project.destroy();
    }
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
