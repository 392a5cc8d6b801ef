/**
 * What checking the fleet costs before anything is registered: planFleet
 * reads and cross-checks every relay's keys, runs each rendered torrc
 * through `tor --verify-config`, and has tor compute each exit's effective
 * exit policy (one offline tor per exit, side by side); planBasePackages
 * resolves the Debian base's package set from Debian's mirrors (cold:
 * apt-get update and a simulated install; warm, a no-op preview's case: the
 * InRelease files only, and the cache). Prints a table; reproduce with
 *   npm run bench:plan
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseStackConfig } from "../lib/config/config";
import { planFleet } from "../lib/plan/fleet";
import { planBasePackages } from "../lib/image/package-set";
import { initRelayKeys } from "../lib/tor/key-store";
import { verifyTorrcsWithTor } from "../lib/render/torrc-check";
import { checkPublication } from "../lib/plan/publication";

const seconds = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e9;
const RUNS = 5;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

function fleetConfig(count: number) {
  return parseStackConfig(fleetConfigRaw(count));
}

function fleetConfigRaw(count: number) {
  return {
    proxmox: { endpoint: "https://pve.example.net:8006", nodes: ["pve1"], datastore: "local", bridge: "vmbr0" },
    proxmoxApiToken: "root@pam!bench=0a1b",
    stateCollection: { privateKeyFile: "keys/collector" },
    relays: Array.from({ length: count }, (_, i) => ({
      name: `bench-${i}`,
      nickname: `BenchRelay${i}`,
      node: "pve1",
      vmId: 9100 + i,
      mac: `BC:24:11:00:01:${i.toString(16).padStart(2, "0")}`,
      ipv4: { address: `198.51.100.${10 + i}/24`, gateway: "198.51.100.1" },
      exit: { enabled: i % 2 === 0 },
      nameservers: ["198.51.100.53"],
      contactInfo: "email:abuse[]example.net ciissversion:2",
      bandwidth: { rate: "100 MBytes", burst: "125 MBytes" },
    })),
  };
}

function main() {
  const work = mkdtempSync(join(tmpdir(), "diskless-relays-bench-plan-"));
  try {
    for (let i = 0; i < 20; i++) initRelayKeys(join(work, "keys"), `bench-${i}`, { nickname: `BenchRelay${i}` });
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(work, "keys", "collector")]);
    const rows: [string, string][] = [];
    for (const count of [1, 4, 20]) {
      const config = fleetConfig(count);
      const plans: number[] = [];
      const checks: number[] = [];
      const policies: number[] = [];
      for (let run = 0; run < RUNS; run++) {
        let start = process.hrtime.bigint();
        const fleet = planFleet(config, { projectDir: work, now: new Date() });
        plans.push(seconds(start));
        start = process.hrtime.bigint();
        verifyTorrcsWithTor(fleet.relays.map((relay, index) => ({ index, relay: relay.config.name, lines: relay.torrcLines })));
        checks.push(seconds(start));
        start = process.hrtime.bigint();
        checkPublication(fleet.relays.map((relay, index) => ({ index, config: relay.config, torrcLines: relay.torrcLines })), { target: config.target });
        policies.push(seconds(start));
      }
      const exits = config.relays.filter((relay) => relay.exit.enabled).length;
      rows.push([`planFleet, ${count} relay${count === 1 ? "" : "s"} (keys, torrc, tor --verify-config, exit policies)`, `${(median(plans) * 1000).toFixed(0)} ms`]);
      rows.push([`  of which tor --verify-config, ${count} torrc${count === 1 ? "" : "s"}`, `${(median(checks) * 1000).toFixed(0)} ms (${((median(checks) * 1000) / count).toFixed(0)} ms each)`]);
      rows.push([`  of which tor's effective exit policies, ${exits} exit${exits === 1 ? "" : "s"} side by side`, `${(median(policies) * 1000).toFixed(0)} ms`]);
    }
    // The Debian base's package set, from Debian's own mirrors (the default image.mirrors), in a cache of this run's own.
    const image = parseStackConfig({ ...fleetConfigRaw(1), image: { flavour: "debian", release: "bookworm" } });
    const resolve = () => planBasePackages(image, { projectDir: join(__dirname, ".."), stack: "bench", release: "bookworm", now: new Date(), cacheDir: join(work, "package-cache") })!;
    let start = process.hrtime.bigint();
    const cold = resolve();
    rows.push([`planBasePackages, cold cache (apt-get update, --simulate install: ${cold.packages.length} packages)`, `${(seconds(start) * 1000).toFixed(0)} ms`]);
    const warm: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      start = process.hrtime.bigint();
      resolve();
      warm.push(seconds(start));
    }
    rows.push(["planBasePackages, no index changed (3 InRelease fetches, the cache)", `${(median(warm) * 1000).toFixed(0)} ms`]);
    const width = Math.max(...rows.map(([k]) => k.length));
    console.log(`diskless-relays plan benchmark (${new Date().toISOString()}, ${cpus().length} cores, median of ${RUNS})`);
    for (const [key, value] of rows) console.log(`${key.padEnd(width)}  ${value}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main();
