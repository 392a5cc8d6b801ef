/**
 * Removes a relay's old ISO images from Proxmox VE once its new VM is up,
 * keeping the newest ones for rollback. Run by the ProxmoxRelayVm component:
 *   tsx cli/prune-isos.ts --node N --datastore D --prefix relay-NICK- --current VOLID --keep K
 * The endpoint and token come from PROXMOX_ENDPOINT, PROXMOX_API_TOKEN and
 * PROXMOX_VERIFY_TLS, never from the command line.
 */
import { parseArgs } from "node:util";
import { deleteVolume, isosToPrune, listIsos } from "../lib/proxmox-api";

async function main() {
  const { values } = parseArgs({
    options: {
      node: { type: "string" },
      datastore: { type: "string" },
      prefix: { type: "string" },
      current: { type: "string" },
      keep: { type: "string" },
    },
  });
  const { node, datastore, prefix, current, keep } = values;
  if (!node || !datastore || !prefix || !current || !keep) throw new Error("prune-isos needs --node, --datastore, --prefix, --current and --keep");
  const connection = {
    endpoint: process.env.PROXMOX_ENDPOINT ?? "",
    apiToken: process.env.PROXMOX_API_TOKEN ?? "",
    verifyTls: process.env.PROXMOX_VERIFY_TLS !== "false",
  };
  const volumes = await listIsos(connection, node, datastore, prefix);
  const prune = isosToPrune(volumes, current, Number(keep));
  for (const volume of prune) await deleteVolume(connection, node, datastore, volume.volid);
  console.log(`${prefix}*: kept ${volumes.length - prune.length}, removed ${prune.length}${prune.length ? `: ${prune.map((v) => v.volid).join(", ")}` : ""}`);
}

main().catch((err: Error) => {
  console.error(`prune-isos: ${err.message}`);
  process.exit(1);
});
