/**
 * Before the first pulumi up at a Proxmox VE cluster: does the cluster have
 * what this stack needs?
 *   npm run preflight [-- --stack NAME] [--json]
 * One line per check (the API and its version, the credentials' privileges,
 * root@pam's login for SEV-SNP relays, each node, its bridges, the
 * datastore, VMIDs, MAC addresses and IP addresses (other VMs' cloud-init), and for SNP relays each node's kernel,
 * CPU and free memory), each naming the config field or node setting to
 * change. Read-only: GET requests, and root@pam's login when the stack has
 * SNP relays; nothing is created or changed.
 * Exit status: 0 when every check passes, 1 when any fails, 2 when the stack
 * cannot be read or is not a Proxmox VE stack.
 */
import { parseArgs } from "node:util";
import { readStackConfig, selectedStack } from "../lib/config/stack-config";
import { gatherPreflightFacts } from "../lib/ops/preflight-facts";
import { judgePreflight, type PreflightStack } from "../lib/ops/preflight";
import type { ProxmoxConnection } from "../lib/proxmox/proxmox-api";

class CannotRead extends Error {}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { stack: { type: "string" }, json: { type: "boolean", default: false } } });
  const stack = values.stack ?? (await selectedStack());
  const config = await readStackConfig(stack, { showSecrets: true });
  if (config.target !== "proxmox" || !config.proxmox) throw new CannotRead(`stack ${stack} runs its relays under QEMU on this machine: there is no Proxmox VE to check`);
  // A token in PROXMOX_API_TOKEN takes the place of the stack's, as for npm run status.
  const apiToken = process.env.PROXMOX_API_TOKEN ?? config.proxmoxApiToken;
  const base = { endpoint: config.proxmox.endpoint, verifyTls: config.proxmox.verifyTls };
  const rootConnection: ProxmoxConnection | undefined = config.proxmoxRootPassword ? { ...base, rootPassword: config.proxmoxRootPassword } : undefined;
  const connection: ProxmoxConnection | undefined = apiToken ? { ...base, apiToken } : rootConnection;
  if (!connection) throw new CannotRead("the stack has no Proxmox VE credentials: pulumi config set --secret proxmoxApiToken USER@REALM!TOKENID=SECRET");
  const preflightStack: PreflightStack = {
    proxmox: { nodes: config.proxmox.nodes, datastore: config.proxmox.datastore, bridge: config.proxmox.bridge, isoDir: config.proxmox.isoDir },
    hasRootPassword: config.proxmoxRootPassword !== undefined,
    relays: config.relays.map((relay) => ({ name: relay.name, nickname: relay.nickname, node: relay.node, vmId: relay.vmId, mac: relay.mac, ipv4: relay.ipv4.address, ipv6: relay.ipv6?.address, bridge: relay.bridge, memoryMiB: relay.memoryMiB, snp: relay.sev?.enabled === true })),
  };
  const lines = judgePreflight(preflightStack, await gatherPreflightFacts(connection, preflightStack, rootConnection));
  const failed = lines.filter((line) => !line.ok);
  if (values.json) {
    process.stdout.write(JSON.stringify({ stack, ok: failed.length === 0, checks: lines }, null, 2) + "\n");
    return failed.length === 0 ? 0 : 1;
  }
  const width = Math.max(...lines.map((line) => line.check.length));
  for (const line of lines) process.stdout.write(`${line.ok ? "ok  " : "FAIL"} ${line.check.padEnd(width)}  ${line.detail}\n`);
  process.stdout.write(failed.length === 0 ? `\nstack ${stack}: the cluster has what the stack needs\n` : `\nstack ${stack}: ${failed.length} check(s) failed; fix them before pulumi up\n`);
  return failed.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`preflight: ${err.message}`);
    process.exit(2);
  },
);
