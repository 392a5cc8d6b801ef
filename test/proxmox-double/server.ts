/**
 * A Proxmox VE API test double: the one part of the deployment that cannot
 * run on a build machine. It speaks the real HTTP API (HTTPS, /api2/json,
 * PVEAPIToken auth, form bodies, multipart upload, UPID tasks) for the calls
 * the proxmoxve provider and the ISO pruner make, keeps VMs and ISO volumes
 * in memory, and records every request so tests can assert what was sent.
 * It is not a Proxmox VE: it boots nothing and checks only what it must.
 * With --datastore-dir it keeps uploaded ISOs there; with --boot-dir, a VM
 * that starts "boots" as far as a test's stand-in relay needs: the label at
 * its ISO's root (relay.json) becomes <boot-dir>/<vmid>/etc/relay/image, and
 * is removed again when the VM stops.
 *
 *   tsx test/proxmox-double/server.ts --cert C --key K [--port 0] [--log FILE] [--token USER@REALM!ID=SECRET]
 *     [--datastore-dir DIR] [--boot-dir DIR]
 * prints `listening https://127.0.0.1:PORT` when ready.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { appendFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer } from "node:https";
import { parseArgs } from "node:util";

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  form: Record<string, string>;
  upload?: { filename: string; bytes: number; sha256: string; content?: string };
}

interface Vm {
  vmid: number;
  node: string;
  config: Record<string, string | number>;
  status: "running" | "stopped";
}

interface Volume {
  volid: string;
  node: string;
  size: number;
  ctime: number;
  sha256: string;
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class ProxmoxDouble {
  readonly vms = new Map<number, Vm>();
  readonly volumes = new Map<string, Volume>();
  private taskCounter = 0;
  private clock = 1_700_000_000;

  constructor(
    private readonly token: string,
    private readonly record: (request: RecordedRequest) => void,
    private readonly dirs: { datastore?: string; boot?: string } = {},
  ) {}

  /** A VM "boots" its CD-ROM: the stand-in relay of this VMID now answers with the ISO's label. */
  private boot(vm: Vm): void {
    if (!this.dirs.boot || !this.dirs.datastore) return;
    const label = join(this.dirs.boot, String(vm.vmid), "etc", "relay", "image");
    const ide2 = String(vm.config.ide2 ?? "");
    const file = /^[^:]+:iso\/([^,]+)/.exec(ide2)?.[1];
    mkdirSync(join(label, ".."), { recursive: true });
    if (!file) throw new ApiError(500, `VM ${vm.vmid} has no bootable CD-ROM (ide2 "${ide2}")`);
    execFileSync("xorriso", ["-osirrox", "on", "-indev", join(this.dirs.datastore, file), "-extract", "/relay.json", label], { stdio: "ignore" });
  }

  private halt(vm: Vm): void {
    if (this.dirs.boot) rmSync(join(this.dirs.boot, String(vm.vmid), "etc", "relay", "image"), { force: true });
  }

  private upid(node: string, type: string, id: string): string {
    this.taskCounter += 1;
    const hex = (n: number) => n.toString(16).toUpperCase().padStart(8, "0");
    return `UPID:${node}:${hex(1000 + this.taskCounter)}:${hex(this.taskCounter)}:${hex(this.clock + this.taskCounter)}:${type}:${id}:${this.token.split("=")[0]}:`;
  }

  private vm(vmid: number, node?: string): Vm {
    const vm = this.vms.get(vmid);
    if (!vm || (node && vm.node !== node)) throw new ApiError(500, `Configuration file 'nodes/${node}/qemu-server/${vmid}.conf' does not exist`);
    return vm;
  }

  handle(method: string, segments: string[], form: Record<string, string>, upload?: RecordedRequest["upload"], file?: Buffer): unknown {
    const route = `${method} /${segments.map((s, i) => (["nodes", "storage", "qemu", "tasks", "content"].includes(segments[i - 1] ?? "") ? "*" : s)).join("/")}`;
    switch (route) {
      case "GET /version":
        return { version: "8.3.0", release: "8.3", repoid: "double" };
      case "GET /pools":
        return [];
      case "GET /nodes":
        return [...new Set([...this.vms.values()].map((vm) => vm.node))].map((node) => ({ node, status: "online" }));
      case "GET /cluster/resources":
        return [...this.vms.values()].map((vm) => ({ vmid: vm.vmid, node: vm.node, type: "qemu", id: `qemu/${vm.vmid}`, status: vm.status, name: vm.config.name }));
      case "GET /nodes/*/tasks/*/status":
        return { status: "stopped", exitstatus: "OK", upid: segments[3] };
      case "GET /nodes/*/storage/*/content": {
        const [, node, , datastore] = segments;
        return [...this.volumes.values()]
          .filter((v) => v.node === node && v.volid.startsWith(`${datastore}:`))
          .map((v) => ({ volid: v.volid, content: "iso", format: "iso", size: v.size, ctime: v.ctime }));
      }
      case "POST /nodes/*/storage/*/upload": {
        const [, node, , datastore] = segments;
        if (form.content !== "iso" || !upload) throw new ApiError(400, "upload needs content=iso and a file part named filename");
        const volid = `${datastore}:iso/${upload.filename}`;
        if (this.dirs.datastore && file) {
          mkdirSync(this.dirs.datastore, { recursive: true });
          writeFileSync(join(this.dirs.datastore, upload.filename), file);
        }
        this.clock += 1;
        this.volumes.set(volid, { volid, node: node!, size: upload.bytes, ctime: this.clock, sha256: upload.sha256 });
        return this.upid(node!, "imgcopy", "");
      }
      case "DELETE /nodes/*/storage/*/content/*": {
        const volid = segments[5]!;
        if (!this.volumes.delete(volid)) throw new ApiError(500, `volume '${volid}' does not exist`);
        return null;
      }
      case "GET /cluster/nextid":
        return String(Math.max(100, ...this.vms.keys()) + 1);
      case "GET /nodes/*/qemu":
        return [...this.vms.values()].filter((vm) => vm.node === segments[1]).map((vm) => ({ vmid: vm.vmid, status: vm.status, name: vm.config.name }));
      case "POST /nodes/*/qemu": {
        const node = segments[1]!;
        const vmid = Number(form.vmid);
        if (this.vms.has(vmid)) throw new ApiError(500, `unable to create VM ${vmid} - VM ${vmid} already exists on node '${node}'`);
        const config: Record<string, string | number> = {};
        for (const [key, value] of Object.entries(form)) if (key !== "vmid") config[key] = storedValue(key, value);
        this.vms.set(vmid, { vmid, node, config, status: "stopped" });
        return this.upid(node, "qmcreate", String(vmid));
      }
      case "GET /nodes/*/qemu/*/config":
      case "GET /nodes/*/qemu/*/pending": {
        const vm = this.vm(Number(segments[3]), segments[1]);
        if (route.endsWith("pending")) return Object.entries(vm.config).map(([key, value]) => ({ key, value }));
        return { ...vm.config, digest: createHash("sha1").update(JSON.stringify(vm.config)).digest("hex") };
      }
      case "POST /nodes/*/qemu/*/config":
      case "PUT /nodes/*/qemu/*/config": {
        const vm = this.vm(Number(segments[3]), segments[1]);
        for (const key of (form.delete ?? "").split(",").filter(Boolean)) delete vm.config[key];
        for (const [key, value] of Object.entries(form)) {
          if (key === "delete" || key === "digest" || key === "background_delay") continue;
          vm.config[key] = storedValue(key, value);
        }
        return method === "POST" ? this.upid(vm.node, "qmconfig", String(vm.vmid)) : null;
      }
      case "GET /nodes/*/qemu/*/status/current": {
        const vm = this.vm(Number(segments[3]), segments[1]);
        return { vmid: vm.vmid, status: vm.status, qmpstatus: vm.status, name: vm.config.name };
      }
      case "POST /nodes/*/qemu/*/status/start":
      case "POST /nodes/*/qemu/*/status/stop":
      case "POST /nodes/*/qemu/*/status/shutdown":
      case "POST /nodes/*/qemu/*/status/reboot":
      case "POST /nodes/*/qemu/*/status/reset": {
        const vm = this.vm(Number(segments[3]), segments[1]);
        const action = segments[5]!;
        vm.status = action === "stop" || action === "shutdown" ? "stopped" : "running";
        if (vm.status === "stopped") this.halt(vm);
        else this.boot(vm);
        return this.upid(vm.node, `qm${action}`, String(vm.vmid));
      }
      case "DELETE /nodes/*/qemu/*": {
        const vm = this.vm(Number(segments[3]), segments[1]);
        if (vm.status === "running") throw new ApiError(500, `VM ${vm.vmid} is running - destroy failed`);
        this.halt(vm);
        this.vms.delete(vm.vmid);
        return this.upid(vm.node, "qmdestroy", String(vm.vmid));
      }
      default:
        throw new ApiError(501, `the Proxmox VE test double does not implement ${route}`);
    }
  }

  async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "https://double");
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json;charset=UTF-8" });
      res.end(JSON.stringify(body));
    };
    const auth = req.headers.authorization ?? "";
    if (auth !== `PVEAPIToken=${this.token}`) return reply(401, { data: null, message: "authentication failure" });
    if (!url.pathname.startsWith("/api2/json/")) return reply(404, { data: null, message: "no such path" });
    const segments = url.pathname.slice("/api2/json/".length).split("/").filter(Boolean).map(decodeURIComponent);
    const query = Object.fromEntries(url.searchParams);
    const body = await readBody(req);
    const contentType = req.headers["content-type"] ?? "";
    let form: Record<string, string> = {};
    let upload: RecordedRequest["upload"];
    let file: Buffer | undefined;
    if (contentType.startsWith("multipart/form-data")) ({ form, upload, file } = parseMultipart(body, contentType));
    else if (body.length > 0) form = Object.fromEntries(new URLSearchParams(body.toString("utf8")));
    const method = req.method ?? "GET";
    this.record({ method, path: `/${segments.join("/")}`, query, form, ...(upload ? { upload } : {}) });
    try {
      reply(200, { data: this.handle(method, segments, form, upload, file) ?? null });
    } catch (err) {
      if (err instanceof ApiError) reply(err.status, { data: null, message: err.message, errors: {} });
      else reply(500, { data: null, message: (err as Error).message });
    }
  }
}

/**
 * How Proxmox VE stores a config value and returns it from GET …/config:
 * flags and counts as JSON numbers, drives as "volume,opt=…" without the
 * "file=" key the client may send or a trailing comma.
 */
function storedValue(key: string, value: string): string | number {
  if (/^(ide|sata|scsi|virtio)\d+$/.test(key)) return value.replace(/^file=/, "").replace(/,$/, "");
  const textual = /^(ide|sata|scsi|virtio|net|serial|usb|hostpci|unused|efidisk|tpmstate)\d*$|^(name|description|tags|boot|cpu|vga|agent|ostype|bios|machine|smbios1|vmgenid|amd-sev|args)$/;
  return /^\d+$/.test(value) && !textual.test(key) ? Number(value) : value;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

/** Just enough multipart/form-data for Proxmox's upload: text fields and one file. */
function parseMultipart(body: Buffer, contentType: string): { form: Record<string, string>; upload?: RecordedRequest["upload"]; file?: Buffer } {
  const boundary = /boundary="?([^";]+)"?/.exec(contentType)?.[1];
  if (!boundary) throw new ApiError(400, "multipart body without boundary");
  const form: Record<string, string> = {};
  let upload: RecordedRequest["upload"];
  let file: Buffer | undefined;
  const delimiter = Buffer.from(`--${boundary}`);
  let start = body.indexOf(delimiter);
  while (start !== -1) {
    const next = body.indexOf(delimiter, start + delimiter.length);
    if (next === -1) break;
    const part = body.subarray(start + delimiter.length + 2, next - 2);
    const headerEnd = part.indexOf("\r\n\r\n");
    const headers = part.subarray(0, headerEnd).toString("utf8");
    const content = part.subarray(headerEnd + 4);
    const name = /name="([^"]+)"/.exec(headers)?.[1];
    const filename = /filename="([^"]+)"/.exec(headers)?.[1];
    if (name === "filename" && filename) {
      upload = { filename, bytes: content.length, sha256: createHash("sha256").update(content).digest("hex") };
      file = content;
    } else if (name) form[name] = content.toString("utf8");
    start = next;
  }
  return { form, ...(upload ? { upload, file } : {}) };
}

if (require.main === module) {
  const { values } = parseArgs({
    options: {
      cert: { type: "string" },
      key: { type: "string" },
      port: { type: "string", default: "0" },
      log: { type: "string" },
      token: { type: "string", default: "root@pam!diskless-relays=00000000-0000-0000-0000-000000000000" },
      "datastore-dir": { type: "string" },
      "boot-dir": { type: "string" },
    },
  });
  const double = new ProxmoxDouble(
    values.token!,
    (request) => {
      if (values.log) appendFileSync(values.log, JSON.stringify(request) + "\n");
    },
    { ...(values["datastore-dir"] ? { datastore: values["datastore-dir"] } : {}), ...(values["boot-dir"] ? { boot: values["boot-dir"] } : {}) },
  );
  const server = createServer({ cert: readFileSync(values.cert!), key: readFileSync(values.key!) }, (req, res) => void double.serve(req, res));
  server.listen(Number(values.port), "127.0.0.1", () => {
    const address = server.address();
    if (address && typeof address === "object") console.log(`listening https://127.0.0.1:${address.port}`);
  });
  process.on("SIGTERM", () => server.close(() => process.exit(0)));
}
