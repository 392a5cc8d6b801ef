/**
 * What reading the relays' VMs costs each preview and up of a Proxmox VE
 * stack (lib/proxmox/observe-vms.ts: a child process, two GETs per VM, all
 * VMs at once), against the Proxmox VE API double on this machine: the
 * child's start dominates; a real node adds its round trips. Prints a
 * table; reproduce with
 *   npm run bench:observe
 */
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { observeVmsNow } from "../lib/proxmox/observe-vms";
import { TEST_API_TOKEN } from "../test/support/fleet";
import { ProxmoxDoubleProcess } from "../test/support/proxmox";

const RUNS = 5;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function main() {
  const scratch = mkdtempSync(join(tmpdir(), "diskless-relays-bench-observe-"));
  const double = await ProxmoxDoubleProcess.start(scratch, TEST_API_TOKEN, { taskSeconds: 0.05 });
  try {
    const rows: [string, string][] = [];
    let made = 0;
    for (const count of [1, 4, 20]) {
      for (; made < count; made++) await double.createVm("pve1", 9100 + made, made % 2 === 0);
      const vms = Array.from({ length: count }, (_, i) => ({ node: "pve1", vmId: 9100 + i }));
      const times: number[] = [];
      for (let run = 0; run < RUNS; run++) {
        const start = process.hrtime.bigint();
        const seen = observeVmsNow(process.cwd(), { connection: { endpoint: double.endpoint, verifyTls: false, apiToken: TEST_API_TOKEN }, vms });
        times.push(Number(process.hrtime.bigint() - start) / 1e6);
        if (seen.some((vm) => vm.kind === "unreadable")) throw new Error(`a VM could not be read: ${JSON.stringify(seen)}`);
      }
      rows.push([`read ${count} VM${count === 1 ? "" : "s"} at plan time (child process, 2 GETs each)`, `${median(times).toFixed(0)} ms`]);
    }
    const width = Math.max(...rows.map(([k]) => k.length));
    console.log(`diskless-relays plan-time VM read benchmark (${new Date().toISOString()}, ${cpus().length} cores, median of ${RUNS}, the API double on this machine)`);
    for (const [key, value] of rows) console.log(`${key.padEnd(width)}  ${value}`);
  } finally {
    double.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}

void main();
