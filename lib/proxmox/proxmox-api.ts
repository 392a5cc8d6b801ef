/**
 * The few Proxmox VE HTTP API calls the program makes itself (the provider
 * makes the rest): whether a relay's VM exists and runs, booting another
 * image on it for a rollback (upload, CD-ROM, restart), and pruning old ISO
 * images. Requests as the bpg provider sends them: /api2/json, PVEAPIToken
 * (or root@pam's ticket, which SNP relays' args need), form bodies,
 * multipart upload, UPID tasks polled to completion.
 * I/O: HTTPS to the Proxmox VE endpoint.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { basename } from "node:path";
import { CLEAN_SHUTDOWN_SECONDS } from "../local/qemu";
import { setTimeout as sleep } from "node:timers/promises";

export interface ProxmoxConnection {
  endpoint: string;
  verifyTls: boolean;
  /** USER@REALM!TOKENID=SECRET */
  apiToken?: string;
  /** root@pam's password: a ticket is asked for once per connection (POST /access/ticket). */
  rootPassword?: string;
}

interface Ticket {
  ticket: string;
  csrf: string;
}
const tickets = new WeakMap<ProxmoxConnection, Promise<Ticket>>();

export interface IsoVolume {
  volid: string;
  ctime: number;
}

class ProxmoxApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "ProxmoxApiError";
  }
}

/** A value as one segment of an API path. */
export const segment = (value: string | number) => encodeURIComponent(String(value));

async function authHeaders(connection: ProxmoxConnection, method: string): Promise<Record<string, string>> {
  if (connection.apiToken) return { Authorization: `PVEAPIToken=${connection.apiToken}` };
  if (!connection.rootPassword) throw new Error("no Proxmox VE credentials: an API token or root@pam's password is needed");
  let ticket = tickets.get(connection);
  if (!ticket) {
    ticket = send(connection, "POST", "/access/ticket", {}, { form: { username: "root@pam", password: connection.rootPassword } }).then((data) => {
      const { ticket, CSRFPreventionToken } = (data ?? {}) as { ticket?: string; CSRFPreventionToken?: string };
      if (!ticket || !CSRFPreventionToken) throw new Error("Proxmox VE answered the login without a ticket");
      return { ticket, csrf: CSRFPreventionToken };
    });
    tickets.set(connection, ticket);
  }
  const { ticket: cookie, csrf } = await ticket;
  return { Cookie: `PVEAuthCookie=${encodeURIComponent(cookie)}`, ...(method === "GET" ? {} : { CSRFPreventionToken: csrf }) };
}

async function call(connection: ProxmoxConnection, method: string, path: string, body?: { form?: Record<string, string>; multipart?: { boundary: string; bytes: Buffer } }): Promise<unknown> {
  return send(connection, method, path, await authHeaders(connection, method), body);
}

function send(connection: ProxmoxConnection, method: string, path: string, auth: Record<string, string>, body?: { form?: Record<string, string>; multipart?: { boundary: string; bytes: Buffer } }): Promise<unknown> {
  const url = new URL(`/api2/json${path}`, connection.endpoint);
  let payload: Buffer | undefined;
  const headers: Record<string, string> = { ...auth };
  if (body?.form) {
    payload = Buffer.from(new URLSearchParams(body.form).toString());
    headers["Content-Type"] = "application/x-www-form-urlencoded";
  } else if (body?.multipart) {
    payload = body.multipart.bytes;
    headers["Content-Type"] = `multipart/form-data; boundary=${body.multipart.boundary}`;
  }
  if (payload) headers["Content-Length"] = String(payload.length);
  return new Promise((resolve, reject) => {
    // agent: false, a connection per call: Node keeps idle sockets open by default (since 19), and a request
    // written to one the server is closing fails with "socket hang up", not telling whether a POST was acted on.
    const req = request(url, { method, headers, rejectUnauthorized: connection.verifyTls, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let parsed: { data?: unknown; message?: string } = {};
        try {
          parsed = JSON.parse(text) as typeof parsed;
        } catch {
          // not JSON: reported below with the status
        }
        const status = res.statusCode ?? 500;
        if (status >= 300) return reject(new ProxmoxApiError(status, `${method} ${url.pathname}: HTTP ${status} ${parsed.message ?? text.slice(0, 200)}`.trim()));
        resolve(parsed.data);
      });
    });
    req.on("error", (err) => reject(new Error(`${method} ${url.pathname}: ${err.message}`)));
    if (payload) req.write(payload);
    req.end();
  });
}

/** Waits for a UPID task to finish; throws unless it ended OK. */
async function waitForTask(connection: ProxmoxConnection, upid: unknown, timeoutSeconds = 600): Promise<void> {
  if (typeof upid !== "string" || !upid.startsWith("UPID:")) return;
  const node = upid.split(":")[1]!;
  const deadline = Date.now() + timeoutSeconds * 1000;
  for (;;) {
    const status = (await call(connection, "GET", `/nodes/${segment(node)}/tasks/${segment(upid)}/status`)) as { status?: string; exitstatus?: string };
    if (status.status !== "running") {
      if (status.exitstatus !== "OK") throw new Error(`Proxmox VE task ${upid} ended with "${status.exitstatus}"`);
      return;
    }
    if (Date.now() > deadline) throw new Error(`Proxmox VE task ${upid} still runs after ${timeoutSeconds}s`);
    await sleep(1000);
  }
}

/** A read of the API (GET PATH), as the preflight makes them: nothing is changed. */
export async function apiGet(connection: ProxmoxConnection, path: string): Promise<unknown> {
  return call(connection, "GET", path);
}

/** Whether root@pam logs in with the connection's password (POST /access/ticket: a login, which changes nothing). */
export async function rootLogin(connection: ProxmoxConnection): Promise<void> {
  if (!connection.rootPassword) throw new Error("no root@pam password given");
  await authHeaders({ ...connection, apiToken: undefined }, "GET");
}

/** Whether the VM exists and runs; "absent" when Proxmox VE says it does not exist. */
export async function vmState(connection: ProxmoxConnection, node: string, vmId: number): Promise<"absent" | "stopped" | "running"> {
  try {
    const status = (await call(connection, "GET", `/nodes/${segment(node)}/qemu/${vmId}/status/current`)) as { status?: string };
    return status.status === "running" ? "running" : "stopped";
  } catch (err) {
    if (err instanceof ProxmoxApiError && (err.status === 404 || /does not exist/.test(err.message))) return "absent";
    throw err;
  }
}

/** The VM's configuration as Proxmox VE holds it (GET …/config): description, ide2, args and the rest. */
export async function vmConfig(connection: ProxmoxConnection, node: string, vmId: number): Promise<Record<string, unknown>> {
  return ((await call(connection, "GET", `/nodes/${segment(node)}/qemu/${vmId}/config`)) ?? {}) as Record<string, unknown>;
}

/** Uploads an ISO to the datastore (content iso), as the provider's FileLegacy does. */
export async function uploadIso(connection: ProxmoxConnection, node: string, datastore: string, file: string, name = basename(file)): Promise<string> {
  const boundary = `diskless-relays-${randomBytes(12).toString("hex")}`;
  const part = (headers: string, content: Buffer | string) => Buffer.concat([Buffer.from(`--${boundary}\r\n${headers}\r\n\r\n`), Buffer.from(content), Buffer.from("\r\n")]);
  const bytes = Buffer.concat([
    part('Content-Disposition: form-data; name="content"', "iso"),
    part(`Content-Disposition: form-data; name="filename"; filename="${name}"\r\nContent-Type: application/octet-stream`, readFileSync(file)),
    Buffer.from(`--${boundary}--\r\n`),
  ]);
  await waitForTask(connection, await call(connection, "POST", `/nodes/${segment(node)}/storage/${segment(datastore)}/upload`, { multipart: { boundary, bytes } }));
  return `${datastore}:iso/${name}`;
}

/**
 * Powers the VM off as the provider's VM delete does (its stopOnDestroy
 * false): an ACPI shutdown, which the relay honours (tor stops at once, its
 * agent pushes once more), and qemu-server's hard stop only if the VM is
 * still up after `timeoutSeconds` (forceStop).
 */
async function shutdownVm(connection: ProxmoxConnection, node: string, vmId: number, timeoutSeconds = CLEAN_SHUTDOWN_SECONDS): Promise<void> {
  const upid = await call(connection, "POST", `/nodes/${segment(node)}/qemu/${vmId}/status/shutdown`, { form: { forceStop: "1", timeout: String(timeoutSeconds) } });
  await waitForTask(connection, upid, timeoutSeconds + 60);
}

/**
 * Boots another ISO on the VM: its CD-ROM (ide2) changed, then a stop and a
 * start, because Proxmox VE applies a CD-ROM change live without a reboot.
 * The stop is a clean shutdown (shutdownVm).
 * An SNP relay's `args` (its measured -kernel) change with it.
 */
export async function bootIso(connection: ProxmoxConnection, node: string, vmId: number, volid: string, args?: string): Promise<void> {
  const vm = `/nodes/${segment(node)}/qemu/${vmId}`;
  // The config's digest: Proxmox VE refuses the change if someone else changed the VM since it was read.
  const { digest } = (await call(connection, "GET", `${vm}/config`)) as { digest?: string };
  await call(connection, "PUT", `${vm}/config`, { form: { ide2: `${volid},media=cdrom`, ...(args !== undefined ? { args } : {}), ...(digest ? { digest } : {}) } });
  if ((await vmState(connection, node, vmId)) === "running") await shutdownVm(connection, node, vmId);
  await waitForTask(connection, await call(connection, "POST", `${vm}/status/start`, { form: {} }));
}

/** The ISO volumes on a datastore whose file names start with `prefix`. */
export async function listIsos(connection: ProxmoxConnection, node: string, datastore: string, prefix: string): Promise<IsoVolume[]> {
  const data = (await call(connection, "GET", `/nodes/${segment(node)}/storage/${segment(datastore)}/content?content=iso`)) as IsoVolume[];
  return data.filter((volume) => volume.volid.startsWith(`${datastore}:iso/${prefix}`));
}

export async function deleteVolume(connection: ProxmoxConnection, node: string, datastore: string, volid: string): Promise<void> {
  await call(connection, "DELETE", `/nodes/${segment(node)}/storage/${segment(datastore)}/content/${segment(volid)}`);
}

/** The volumes to remove: all but the current one and the newest `keep - 1` others. */
export function isosToPrune(volumes: IsoVolume[], currentVolid: string, keep: number): IsoVolume[] {
  const others = volumes.filter((volume) => volume.volid !== currentVolid).sort((a, b) => b.ctime - a.ctime);
  return others.slice(Math.max(keep - 1, 0));
}
