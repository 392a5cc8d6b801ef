/**
 * Power-on to tor running, per identity mode: the same relay booted from its
 * image-mode ISO (keys inside) and from its broker-mode ISO (keys fetched
 * after simulated SNP attestation, over TLS from a broker on the bridge).
 * "tor running" is tor's line naming the relay's identity fingerprint: it
 * has loaded the keys. QEMU under TCG here; relative, not absolute, numbers.
 * Reproduce with
 *   npm run bench:boot [-- ROUNDS]      (root; about 5 minutes for 2 rounds)
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { brokerModeImage, brokerTarget, startTestBroker } from "../test/support/broker";
import { makeTestKeys } from "../test/support/fleet";
import { bootIso, buildRelayIso, debianBase, waitFor } from "../test/support/images";

const RELAY = { name: "bench-1", nickname: "BenchBoot", vmId: 100, mac: "52:54:00:00:06:01", host: 11 };

async function main() {
  const rounds = Number(process.argv[2] ?? 2);
  const work = mkdtempSync(join(tmpdir(), "diskless-relays-bench-boot-"));
  const broker = await startTestBroker(work, `drboot-${process.pid}`);
  const samples: Record<"image" | "broker", number[]> = { image: [], broker: [] };
  try {
    const base = debianBase();
    makeTestKeys(work, [{ name: RELAY.name, nickname: RELAY.nickname, node: "local", vmId: RELAY.vmId, exit: false }]);
    const collected = join(work, "collected-none");
    mkdirSync(collected, { recursive: true, mode: 0o700 });
    const imageMode = buildRelayIso(work, base, { name: RELAY.name, nickname: RELAY.nickname, vmId: RELAY.vmId, mac: RELAY.mac, ipv4: { address: `10.77.0.${RELAY.host}/24`, gateway: "10.77.0.1" } }, collected, join(work, "image-mode"));
    const { built: brokerMode } = await brokerModeImage(work, base, broker, RELAY, join(work, "broker-mode"));
    for (let round = 0; round < rounds; round++) {
      for (const [mode, iso] of [["image", imageMode.iso], ["broker", brokerMode.iso]] as const) {
        const started = Date.now();
        const vm = await bootIso(iso, { ...brokerTarget(broker, RELAY, join(work, `run-${mode}`)), ...(mode === "image" ? { snp: undefined } : {}) });
        await waitFor(vm.console, new RegExp(`identity key fingerprint is '${RELAY.nickname} [0-9A-F]{40}'`), 600);
        samples[mode].push((Date.now() - started) / 1000);
        await vm.stop();
      }
    }
  } finally {
    broker.stop();
    rmSync(work, { recursive: true, force: true });
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  console.log(`diskless-relays boot benchmark (${new Date().toISOString()}, ${cpus().length} cores, QEMU TCG, 1 vCPU, ${rounds} rounds)`);
  console.log(`power-on → tor running, image mode:  median ${median(samples.image).toFixed(1)} s  (${samples.image.map((s) => s.toFixed(1)).join(", ")})`);
  console.log(`power-on → tor running, broker mode: median ${median(samples.broker).toFixed(1)} s  (${samples.broker.map((s) => s.toFixed(1)).join(", ")})`);
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
