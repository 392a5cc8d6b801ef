/**
 * What the Proxmox VE API says of the relays' VMs, read at plan time
 * (lib/deploy/vm-generation.ts says why). I/O: HTTPS to the endpoint, in a
 * child process (cli/observe-vms.ts), because the program must know before it
 * registers a VM whether to start it again, and Pulumi's program is
 * synchronous. The credentials reach the child on its standard input, never
 * on its command line or in its environment.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { z } from "zod";
import { tsScriptCommand } from "../core/run";
import { HOSTNAME } from "../config/config";
import { vmConfig, vmState, type ProxmoxConnection } from "./proxmox-api";

/** Long enough for a slow node to answer every relay's two reads; a preview must not hang on an endpoint that never answers. */
const OBSERVE_TIMEOUT_MS = 20_000;

export const ObserveRequest = z
  .object({
    connection: z.object({ endpoint: z.string().url(), verifyTls: z.boolean(), apiToken: z.string().min(1) }).strict(),
    // The stack config checked both already (lib/config/config.ts); here they are checked again as what they become: an API path's segments.
    vms: z.array(z.object({ node: z.string().regex(HOSTNAME), vmId: z.number().int().positive() }).strict()),
  })
  .strict();
export type ObserveRequest = z.infer<typeof ObserveRequest>;

const ObserveAnswer = z.array(
  z.discriminatedUnion("kind", [
    z.object({ kind: z.literal("absent") }).strict(),
    z.object({ kind: z.enum(["running", "stopped"]), description: z.string() }).strict(),
    z.object({ kind: z.literal("unreadable"), reason: z.string() }).strict(),
  ]),
);

/** What the Proxmox VE API said of a relay's VM before this update. */
export type VmObservation = z.infer<typeof ObserveAnswer>[number];

/** One VM: whether it exists and runs, and its description (where its generation is kept). */
export async function observeVm(connection: ProxmoxConnection, node: string, vmId: number): Promise<VmObservation> {
  try {
    const state = await vmState(connection, node, vmId);
    if (state === "absent") return { kind: "absent" };
    const { description } = await vmConfig(connection, node, vmId);
    return { kind: state, description: typeof description === "string" ? description : "" };
  } catch (err) {
    // Without the request line ("GET /api2/json/nodes/…: "), so that one cause for every VM reads as one.
    return { kind: "unreadable", reason: (err as Error).message.replace(/^[A-Z]+ \/\S*: /, "") };
  }
}

/** Every VM of the request, read by the child process; each VM the child could not read is "unreadable", with why. */
export function observeVmsNow(projectDir: string, request: ObserveRequest): VmObservation[] {
  const checked = ObserveRequest.parse(request);
  if (checked.vms.length === 0) return [];
  const failed = (reason: string) => checked.vms.map((): VmObservation => ({ kind: "unreadable", reason }));
  let reader: [string, string[]];
  try {
    reader = tsScriptCommand(projectDir, join(projectDir, "cli", "observe-vms.ts"));
  } catch (err) {
    return failed((err as Error).message);
  }
  const child = spawnSync(...reader, {
    input: JSON.stringify(checked),
    encoding: "utf8",
    timeout: OBSERVE_TIMEOUT_MS,
    maxBuffer: 16 << 20,
  });
  if (child.error) return failed(child.error.message.includes("ETIMEDOUT") ? `no answer within ${OBSERVE_TIMEOUT_MS / 1000} s` : child.error.message);
  if (child.status !== 0) return failed(child.stderr.trim().split("\n").at(-1) ?? `the reader exited with ${child.status}`);
  let answer: ReturnType<typeof ObserveAnswer.safeParse> | undefined;
  try {
    answer = ObserveAnswer.safeParse(JSON.parse(child.stdout));
  } catch {
    // not JSON: malformed, below
  }
  if (!answer?.success || answer.data.length !== checked.vms.length) return failed("the reader's answer was malformed");
  return answer.data;
}
