/**
 * The child process lib/proxmox/observe-vms.ts runs at plan time: reads a
 * request (connection and VMs, JSON on standard input, checked against the
 * same schema), asks Proxmox VE about each VM, and prints one observation per
 * VM as JSON. Read-only: GET requests.
 */
import { readFileSync } from "node:fs";
import { observeVm, ObserveRequest } from "../lib/proxmox/observe-vms";

async function main(): Promise<void> {
  const request = ObserveRequest.parse(JSON.parse(readFileSync(0, "utf8")));
  const observations = await Promise.all(request.vms.map((vm) => observeVm(request.connection, vm.node, vm.vmId)));
  process.stdout.write(JSON.stringify(observations));
}

main().catch((err: Error) => {
  process.stderr.write(`${err.message}\n`);
  process.exit(1);
});
