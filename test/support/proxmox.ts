/** Runs the Proxmox VE API double (test/support/proxmox-double) as its own process, over HTTPS. */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { request } from "node:https";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ClusterModel, RecordedRequest } from "./proxmox-double/server";
import { repoRoot, tsNode } from "./pulumi";

/** The double's cluster model, written beside its log for --cluster. */
function clusterFile(dir: string, cluster: ClusterModel): string {
  const file = join(dir, "cluster.json");
  writeFileSync(file, JSON.stringify(cluster));
  return file;
}

/** A self-signed certificate for an HTTPS server of the tests on 127.0.0.1: DIR/NAME.crt and DIR/NAME.key. */
export function loopbackCertificate(dir: string, name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert], { stdio: "ignore" });
  return { cert, key };
}

export class ProxmoxDoubleProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly endpoint: string,
    private readonly log: string,
    private readonly token: string,
  ) {}

  /** Calls the double's API as a client would (form body), with the API token or, given root@pam's password, a ticket. */
  async api(method: string, path: string, form: Record<string, string> = {}, rootPassword?: string): Promise<unknown> {
    let auth: Record<string, string> = { Authorization: `PVEAPIToken=${this.token}` };
    if (rootPassword) {
      const login = (await this.send("POST", "/access/ticket", { username: "root@pam", password: rootPassword }, {})) as { ticket: string; CSRFPreventionToken: string };
      auth = { Cookie: `PVEAuthCookie=${encodeURIComponent(login.ticket)}`, CSRFPreventionToken: login.CSRFPreventionToken };
    }
    return this.send(method, path, form, auth);
  }

  private send(method: string, path: string, form: Record<string, string>, auth: Record<string, string>): Promise<unknown> {
    const body = new URLSearchParams(form).toString();
    return new Promise((resolve, reject) => {
      // agent: false, as the program's own calls (lib/proxmox/proxmox-api.ts): a kept-alive socket the double is
      // closing failed a test with "socket hang up" under load.
      const req = request(
        new URL(`/api2/json${path}`, this.endpoint),
        { method, rejectUnauthorized: false, agent: false, headers: { ...auth, "Content-Type": "application/x-www-form-urlencoded", "Content-Length": Buffer.byteLength(body) } },
        (res) => {
          let text = "";
          res.on("data", (chunk) => (text += chunk));
          res.on("end", () => ((res.statusCode ?? 500) < 300 ? resolve(JSON.parse(text).data) : reject(new Error(`${method} ${path}: ${res.statusCode} ${text}`))));
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  }

  /** A VM in the double, as the provider would have made it; running or stopped. */
  async createVm(node: string, vmId: number, running: boolean): Promise<void> {
    await this.api("POST", `/nodes/${node}/qemu`, { vmid: String(vmId), name: `vm${vmId}`, ide2: "none,media=cdrom" });
    if (running) await this.waitForTask((await this.api("POST", `/nodes/${node}/qemu/${vmId}/status/start`)) as string);
  }

  /** Waits for a task of the double to end (tasks run for a while there, as on Proxmox VE). */
  async waitForTask(upid: string): Promise<void> {
    const node = upid.split(":")[1]!;
    for (let i = 0; i < 600; i++) {
      const status = (await this.api("GET", `/nodes/${node}/tasks/${encodeURIComponent(upid)}/status`)) as { status: string; exitstatus?: string };
      if (status.status !== "running") {
        if (status.exitstatus !== "OK") throw new Error(`task ${upid} ended with ${status.exitstatus}`);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`task ${upid} still runs after 60 s`);
  }

  /** Replaces the cluster the preflight reads (nodes, storages, the token's privileges, foreign VMs). */
  async setCluster(cluster: ClusterModel): Promise<void> {
    await this.api("POST", "/_double/cluster", { json: JSON.stringify(cluster) });
  }

  /** The next task of this type (imgcopy, qmstart, qmcreate, …), for this VMID if given, fails with `exitstatus`. */
  async failNext(type: string, exitstatus: string, id?: string): Promise<void> {
    await this.api("POST", "/_double/fail-next", { type, exitstatus, ...(id ? { id } : {}) });
  }

  /** Where the double keeps uploaded files (with `boot`). */
  datastoreDir(dir: string): string {
    return join(dir, "datastore");
  }

  /**
   * With `boot`, uploaded ISOs are kept and VMs "boot" their ISO's label into
   * <dir>/boot/<vmid>/etc (see the double). `rootPassword` lets root@pam log
   * in with a ticket; `taskSeconds` is how long each task runs (default 1).
   */
  static async start(dir: string, token: string, options: { boot?: boolean; rootPassword?: string; taskSeconds?: number; cluster?: ClusterModel } = {}): Promise<ProxmoxDoubleProcess> {
    const { cert, key } = loopbackCertificate(dir, "double");
    const log = join(dir, "requests.jsonl");
    const child = spawn(...tsNode(join(repoRoot, "test/support/proxmox-double/server.ts"), "--cert", cert, "--key", key, "--log", log, "--token", token,
      ...(options.boot ? ["--datastore-dir", join(dir, "datastore"), "--boot-dir", join(dir, "boot")] : []),
      ...(options.rootPassword ? ["--root-password", options.rootPassword] : []),
      ...(options.taskSeconds !== undefined ? ["--task-seconds", String(options.taskSeconds)] : []),
      ...(options.cluster ? ["--cluster", clusterFile(dir, options.cluster)] : [])), {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const endpoint = await new Promise<string>((resolve, reject) => {
      child.stdout!.on("data", (chunk: Buffer) => {
        const match = /listening (https:\/\/\S+)/.exec(chunk.toString());
        if (match) resolve(match[1]!);
      });
      child.on("exit", (code) => reject(new Error(`the Proxmox double exited with ${code}`)));
    });
    return new ProxmoxDoubleProcess(child, endpoint, log, token);
  }

  /** The stand-in relay's / of a VMID (with `boot`), where the double puts the booted image's label. */
  rootOf(dir: string, vmId: number): string {
    return join(dir, "boot", String(vmId));
  }

  /** Every request so far, in order. */
  requests(): RecordedRequest[] {
    if (!existsSync(this.log)) return [];
    return readFileSync(this.log, "utf8").trim().split("\n").filter(Boolean).map((line) => JSON.parse(line) as RecordedRequest);
  }

  stop(): void {
    this.child.kill("SIGTERM");
  }
}

/** Requests that change something (everything but reads). */
export const writes = (requests: RecordedRequest[]) => requests.filter((r) => r.method !== "GET");
