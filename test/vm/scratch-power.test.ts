import { join } from "node:path";
import { mkdirSync, writeFileSync } from "node:fs";
import { describe, it, beforeAll } from "vitest";
import { makeTestKeys } from "../support/fleet";
import { bootIso, buildRelayIso, debianBase, hmp, qemuTargetFor, waitFor } from "../support/images";
import { freePort } from "../support/sshd";
import { privateTmpDir } from "../support/tmp";
const RELAY = { name: "boot-1", nickname: "BootTestOne", vmId: 100, mac: "52:54:00:12:34:01", exit: { enabled: true }, nameservers: ["10.0.2.3"] };
describe("repro", () => {
  const dir = privateTmpDir("repro");
  let iso: string;
  beforeAll(() => {
    const base = debianBase();
    makeTestKeys(dir, [{ name: "boot-1", nickname: "BootTestOne", node: "local", vmId: 100, exit: true }]);
    mkdirSync(join(dir, "collected"), { mode: 0o700 });
    iso = buildRelayIso(dir, base, RELAY, join(dir, "collected"), join(dir, "out")).iso;
  }, 900_000);
  for (let n = 0; n < Number(process.env.REPRO_N ?? 4); n++) {
    it(`power ${n}`, async () => {
      const target = qemuTargetFor(dir, RELAY.mac, await freePort());
      const vm = await bootIso(iso, target);
      try {
        await waitFor(vm.console, /Bootstrapped 5%/, 240);
        await new Promise((r) => setTimeout(r, Number(process.env.REPRO_DELAY ?? 3000) + n * 1500));
        await hmp(join(target.runDir, "monitor.sock"), "system_powerdown");
        await waitFor(vm.console, /relay-shutdown: done/, 90);
        const text = vm.console();
        writeFileSync(`/tmp/repro/console-${n}.log`, text);
        console.log(`RUN ${n}: caught=${/Catching signal TERM/.test(text)} blocks=${/blocks SIGTERM/.test(text)} killed=${/killing tor/.test(text)} after5=${/still runs after 5/.test(text)}`);
      } finally { await vm.stop(); }
    }, 400_000);
  }
});
