/**
 * What the preflight reads from the stack's Proxmox VE cluster: GET requests
 * only (and root@pam's login for SNP stacks), each answer kept with its
 * error, so that one missing privilege does not hide the other checks.
 * I/O: HTTPS to the Proxmox VE endpoint.
 */
import { apiGet, rootLogin, segment, type ProxmoxConnection } from "../proxmox/proxmox-api";
import type { Answer, ClusterVm, NodeFacts, PreflightFacts, PreflightStack } from "./preflight";

async function answer<T>(read: () => Promise<T>): Promise<Answer<T>> {
  try {
    return { ok: true, value: await read() };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}

const text = (value: unknown) => (typeof value === "string" ? value : "");

/** The kernel release of GET /nodes/NODE/status: current-kernel.release (8.2+), else the second word of kversion. */
function kernelRelease(status: Record<string, unknown>): string {
  const current = status["current-kernel"] as { release?: unknown } | undefined;
  return text(current?.release) || text(status.kversion).split(" ")[1] || "";
}

async function nodeFacts(connection: ProxmoxConnection, node: string, snp: boolean): Promise<NodeFacts> {
  const [status, bridges] = await Promise.all([
    snp
      ? answer(async () => {
          const value = ((await apiGet(connection, `/nodes/${segment(node)}/status`)) ?? {}) as Record<string, unknown>;
          const cpuinfo = (value.cpuinfo ?? {}) as { model?: unknown };
          const memory = (value.memory ?? {}) as { free?: unknown };
          return { kernelRelease: kernelRelease(value), cpuModel: text(cpuinfo.model), memoryFree: typeof memory.free === "number" ? memory.free : 0 };
        })
      : Promise.resolve<Answer<{ kernelRelease: string; cpuModel: string; memoryFree: number }>>({ ok: false, error: "not read (no SNP relay on this node)" }),
    answer(async () => (((await apiGet(connection, `/nodes/${segment(node)}/network?type=any_bridge`)) ?? []) as { iface?: unknown }[]).map((entry) => text(entry.iface)).filter(Boolean)),
  ]);
  return { status, bridges };
}

export async function gatherPreflightFacts(connection: ProxmoxConnection, stack: PreflightStack, rootConnection?: ProxmoxConnection): Promise<PreflightFacts> {
  const version = await answer(async () => text(((await apiGet(connection, "/version")) as { version?: unknown } | undefined)?.version));
  const unreachable: Answer<never> = { ok: false, error: version.ok ? "" : version.error };
  if (!version.ok) return { version, permissions: unreachable, nodes: unreachable, byNode: {}, storage: unreachable, vms: unreachable };
  const snpNodes = new Set(stack.relays.filter((relay) => relay.snp).map((relay) => relay.node));
  const relayNodes = [...new Set(stack.relays.map((relay) => relay.node))];
  const [permissions, nodes, storage, vms, rootAnswer, perNode] = await Promise.all([
    answer(async () => ((await apiGet(connection, "/access/permissions")) ?? {}) as Record<string, Record<string, number>>),
    answer(async () => (((await apiGet(connection, "/nodes")) ?? []) as { node?: unknown; status?: unknown }[]).map((entry) => ({ node: text(entry.node), status: text(entry.status) }))),
    answer(async () => {
      const value = ((await apiGet(connection, `/storage/${segment(stack.proxmox.datastore)}`)) ?? {}) as Record<string, unknown>;
      return { type: text(value.type), content: text(value.content), ...(text(value.path) ? { path: text(value.path) } : {}) };
    }),
    answer(async () => {
      const listed = (((await apiGet(connection, "/cluster/resources?type=vm")) ?? []) as { vmid?: unknown; node?: unknown; name?: unknown; type?: unknown; status?: unknown }[]).filter((entry) => entry.type === "qemu" && typeof entry.vmid === "number");
      return Promise.all(
        listed.map(async (entry): Promise<ClusterVm> => {
          const config = ((await apiGet(connection, `/nodes/${segment(text(entry.node))}/qemu/${entry.vmid as number}/config`)) ?? {}) as Record<string, unknown>;
          const macs = Object.entries(config)
            .filter(([key]) => /^net\d+$/.test(key))
            .map(([, value]) => /(?:^|,)(?:[a-z0-9]+)=([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5})/.exec(text(value))?.[1] ?? "")
            .filter(Boolean);
          // qemu-server's ipconfigN: "[gw=…][,gw6=…][,ip=ADDR/LEN|dhcp][,ip6=ADDR/LEN|dhcp|auto]".
          const addresses = Object.entries(config)
            .filter(([key]) => /^ipconfig\d+$/.test(key))
            .flatMap(([, value]) => text(value).split(","))
            .map((part) => /^ip6?=([0-9A-Fa-f.:]+)(?:\/\d+)?$/.exec(part)?.[1] ?? "")
            .filter(Boolean);
          return { vmid: entry.vmid as number, node: text(entry.node), ...(text(entry.name) ? { name: text(entry.name) } : {}), ...(text(config.description) ? { description: text(config.description) } : {}), macs, addresses, running: entry.status === "running" };
        }),
      );
    }),
    stack.hasRootPassword && rootConnection ? answer(async () => (await rootLogin(rootConnection), true as const)) : Promise.resolve(undefined),
    Promise.all(relayNodes.map(async (node) => [node, await nodeFacts(connection, node, snpNodes.has(node))] as const)),
  ]);
  return { version, permissions, ...(rootAnswer ? { rootLogin: rootAnswer } : {}), nodes, byNode: Object.fromEntries(perNode), storage, vms };
}
