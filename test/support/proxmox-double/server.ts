/**
 * A Proxmox VE API test double: the one part of the deployment that cannot
 * run on a build machine. It speaks the real HTTP API (HTTPS, /api2/json,
 * PVEAPIToken or root@pam's ticket, form bodies, multipart upload, UPID
 * tasks) for the calls the proxmoxve provider and the program make, keeps
 * VMs and volumes in memory, and records every request so tests can assert
 * what was sent.
 *
 * It refuses what Proxmox VE 9.2 refuses, as read in its sources (the rules
 * and where they come from: ./pve-schema.ts): unknown parameters, malformed
 * values (net0, ide2, amd-sev, rng0, tags, boot, name, status calls' timeout
 * and forceStop, …), a stale config digest,
 * a missing ISO volume, `args` or `amd-sev` set by anyone but root@pam with a
 * ticket, uploads of other content types or extensions. Tasks run for
 * --task-seconds (default 1) and can be made to fail (failNext below). A
 * start fails as QEMU would when an SNP VM asks for kernel hashes with
 * Proxmox's own firmware (no hashes table), or when args names a file that
 * is not in the ISO directory (--iso-dir, the `local` storage's by default).
 * It reports version 9.2.11, the pve-manager release those sources belong to
 * (SEV-SNP first shipped in 8.4).
 *
 * It is not a Proxmox VE: it boots nothing. With --datastore-dir it keeps
 * uploaded files there; with --boot-dir, a VM that starts "boots" as far as
 * a test's stand-in relay needs: the label at its ISO's root (relay.json)
 * becomes <boot-dir>/<vmid>/etc/relay/image (GUEST_PATHS.RELAY_IMAGE_LABEL), and is removed again when the
 * VM stops.
 *
 *   tsx test/support/proxmox-double/server.ts --cert C --key K [--port 0] [--log FILE] [--token USER@REALM!ID=SECRET]
 *     [--root-password P] [--datastore-dir DIR] [--boot-dir DIR] [--iso-dir /var/lib/vz/template/iso] [--task-seconds 1]
 *     [--cluster FILE]   (the nodes, storages, privileges and foreign VMs the preflight reads: ClusterModel)
 * prints `listening https://127.0.0.1:PORT` when ready.
 */
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { appendFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer } from "node:https";
import { parseArgs } from "node:util";
import { checkStatusCall, checkUpload, checkVmCreate, checkVmUpdate, ROOT_ONLY, storedFileName, type Problems } from "./pve-schema";
import { GUEST_PATHS } from "../../../lib/image/guest-paths";

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
    readonly errors: Problems = {},
  ) {
    super(message);
  }
}

/** Proxmox VE's answer to parameters its schema refuses: 400, one message per parameter. */
function refuseParameters(problems: Problems): void {
  if (Object.keys(problems).length > 0) throw new ApiError(400, "Parameter verification failed.", problems);
}

interface Task {
  node: string;
  startedAt: number;
  /** undefined: OK. */
  failure?: string;
  log: string[];
  /** Runs when the task ends well. */
  done?: () => void;
}

/**
 * The cluster the preflight reads (--cluster FILE, JSON): its nodes with their
 * status, kernel, CPU, free memory and bridges, its storages, the
 * credentials' privileges and VMs that are not the stack's. Without it the
 * double answers as before: nodes are those its VMs are on, and the
 * endpoints below answer from DEFAULT_CLUSTER.
 */
export interface ClusterModel {
  version: string;
  nodes: { node: string; status: "online" | "offline"; kernelRelease: string; cpuModel: string; memoryFree: number; bridges: string[] }[];
  storages: { storage: string; type: string; content: string; path?: string }[];
  /** What GET /access/permissions answers for the API token (root@pam's ticket holds every privilege). */
  tokenPermissions: Record<string, Record<string, number>>;
  /** VMs made before the test (by someone else, or by an earlier deploy when they carry the program's description). */
  /** addresses: CIDR prefixes its cloud-init config (ipconfigN, qemu-server's `ip=`/`ip6=` format) gives it, one per interface. */
  otherVms: { vmid: number; node: string; name: string; macs: string[]; addresses?: string[]; description?: string }[];
}

/** Every privilege the preflight asks about, as Proxmox VE names them (the administration guide's "Privileges"). */
export const ALL_PRIVILEGES = [
  "VM.Allocate", "VM.Audit", "VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options", "VM.Config.HWType", "VM.PowerMgmt",
  "Datastore.Audit", "Datastore.AllocateSpace", "Datastore.AllocateTemplate", "Sys.Audit", "SDN.Use",
];

export const DEFAULT_CLUSTER: ClusterModel = {
  version: "9.2.11",
  nodes: [{ node: "pve1", status: "online", kernelRelease: "6.14.8-2-pve", cpuModel: "AMD EPYC 9354P 32-Core Processor", memoryFree: 64 * 1024 ** 3, bridges: ["vmbr0"] }],
  storages: [{ storage: "local", type: "dir", content: "iso,vztmpl,backup", path: "/var/lib/vz" }],
  tokenPermissions: { "/": Object.fromEntries(ALL_PRIVILEGES.map((privilege) => [privilege, 1])) },
  otherVms: [],
};

export interface DoubleOptions {
  cluster?: ClusterModel;
  datastore?: string;
  boot?: string;
  /** The ISO directory on the node: what a path in args must be under. */
  isoDir?: string;
  taskSeconds?: number;
  rootPassword?: string;
}

export class ProxmoxDouble {
  readonly vms = new Map<number, Vm>();
  readonly volumes = new Map<string, Volume>();
  private readonly tasks = new Map<string, Task>();
  /** Failures asked for by a test: the next task of this type (and id) fails with this exit status. */
  private readonly failures: { type: string; id?: string; exitstatus: string }[] = [];
  private readonly tickets = new Map<string, { user: string; csrf: string }>();
  private taskCounter = 0;
  private clock = 1_700_000_000;

  constructor(
    private readonly token: string,
    private readonly record: (request: RecordedRequest) => void,
    private readonly dirs: DoubleOptions = {},
  ) {
    if (dirs.cluster) this.setCluster(dirs.cluster);
  }

  private otherVmIds: number[] = [];

  /** A test's cluster (also POST /_double/cluster): its foreign VMs replace the last model's. */
  setCluster(cluster: ClusterModel): void {
    for (const vmid of this.otherVmIds) this.vms.delete(vmid);
    this.dirs.cluster = cluster;
    this.otherVmIds = cluster.otherVms.map((vm) => vm.vmid);
    for (const vm of cluster.otherVms) {
      this.vms.set(vm.vmid, { vmid: vm.vmid, node: vm.node, status: "running", config: { name: vm.name, ...(vm.description ? { description: vm.description } : {}), ...Object.fromEntries(vm.macs.map((mac, i) => [`net${i}`, `virtio=${mac},bridge=vmbr0`])), ...Object.fromEntries((vm.addresses ?? []).map((prefix, i) => [`ipconfig${i}`, prefix.includes(":") ? `ip6=${prefix}` : `ip=${prefix},gw=${prefix.replace(/\.\d+\/\d+$/, ".1")}`])) } });
    }
  }

  private get cluster(): ClusterModel {
    return this.dirs.cluster ?? DEFAULT_CLUSTER;
  }

  private clusterNode(node: string) {
    const found = this.cluster.nodes.find((entry) => entry.node === node);
    // As Proxmox VE answers for a node name it does not know (pve-cluster's node check).
    if (!found) throw new ApiError(500, `hostname lookup '${node}' failed - failed to get address info for: ${node}: Name or service not known`);
    return found;
  }

  private get isoDir(): string {
    return (this.dirs.isoDir ?? "/var/lib/vz/template/iso").replace(/\/+$/, "");
  }

  /** Starts a task; `effect` happens if and when it ends well. */
  private task(node: string, type: string, id: string, effect?: () => void): string {
    const upid = this.upid(node, type, id);
    const at = this.failures.findIndex((f) => f.type === type && (f.id === undefined || f.id === id));
    const failure = at >= 0 ? this.failures.splice(at, 1)[0]!.exitstatus : undefined;
    this.tasks.set(upid, { node, startedAt: Date.now(), ...(failure ? { failure } : {}), log: [failure ? `TASK ERROR: ${failure}` : "TASK OK"], ...(effect ? { done: effect } : {}) });
    if ((this.dirs.taskSeconds ?? 1) <= 0) this.finish(upid);
    return upid;
  }

  private finish(upid: string): Task {
    const task = this.tasks.get(upid)!;
    if (task.done) {
      const done = task.done;
      delete task.done;
      if (!task.failure) {
        try {
          done();
        } catch (err) {
          task.failure = (err as Error).message;
          task.log = [`TASK ERROR: ${task.failure}`];
        }
      }
    }
    return task;
  }

  private taskStatus(upid: string): unknown {
    const task = this.tasks.get(upid);
    if (!task) throw new ApiError(500, `no such task '${upid}'`);
    if (Date.now() - task.startedAt < (this.dirs.taskSeconds ?? 1) * 1000) return { status: "running", upid, node: task.node };
    const ended = this.finish(upid);
    return { status: "stopped", exitstatus: ended.failure ?? "OK", upid, node: task.node };
  }

  /** The next task of this type (qmstart, imgcopy, qmcreate, …), for this id if given, fails with `exitstatus`. */
  failNext(type: string, id: string | undefined, exitstatus: string): void {
    this.failures.push({ type, ...(id ? { id } : {}), exitstatus });
  }

  /** Every ISO a CD-ROM names must be on the node's storage (the create and config update check it). */
  private checkVolumes(node: string, config: Record<string, string | number>): void {
    for (const [key, value] of Object.entries(config)) {
      if (!/^ide\d$/.test(key)) continue;
      const volid = /^([a-z][a-z0-9_.-]*:iso\/[^,]+)/.exec(String(value).replace(/^file=/, ""))?.[1];
      if (volid && !this.volumes.has(volumeKey(node, volid))) throw new ApiError(500, `volume '${volid}' does not exist`);
    }
  }

  /** A start as QEMU would take it: the firmware and kernel args names must exist, and SNP kernel hashes need a hashes table. */
  private checkLaunch(vm: Vm): void {
    const amdSev = vm.config["amd-sev"];
    const words = typeof vm.config.args === "string" ? vm.config.args.trim().split(/\s+/).filter(Boolean) : [];
    for (let i = 0; i < words.length; i++) {
      const option = words[i]!;
      if (!["-bios", "-kernel", "-initrd"].includes(option)) continue;
      const path = words[i + 1] ?? "";
      const name = path.startsWith(`${this.isoDir}/`) ? path.slice(this.isoDir.length + 1) : undefined;
      const found = name !== undefined && !name.includes("/") && [...this.volumes.values()].some((v) => v.node === vm.node && v.volid.endsWith(`:iso/${name}`));
      if (!found) throw new Error(`kvm: ${option} ${path}: could not open: No such file or directory`);
    }
    if (typeof amdSev === "string") {
      if (vm.config.bios !== "ovmf") throw new Error("To use AMD SEV, you need to change the BIOS to OVMF.");
      const sev = Object.fromEntries(amdSev.split(",").map((part) => (part.includes("=") ? part.split("=") : ["type", part])));
      // Proxmox's OVMF_SEV_4M.fd is built from OvmfPkgX64.dsc: no hashes table for QEMU to fill.
      if (sev.type === "snp" && sev["kernel-hashes"] === "1" && !words.includes("-bios")) throw new Error("qemu-system-x86_64: SEV: guest firmware hashes table area is invalid (base=0x0 size=0x0)");
      if (sev["kernel-hashes"] === "1" && !words.includes("-kernel")) throw new Error("qemu-system-x86_64: SEV: kernel-hashes=on needs -kernel");
    }
  }

  /** A VM "boots" its CD-ROM: the stand-in relay of this VMID now answers with the ISO's label. */
  private boot(vm: Vm): void {
    if (!this.dirs.boot || !this.dirs.datastore) return;
    const label = join(this.dirs.boot, String(vm.vmid), GUEST_PATHS.RELAY_IMAGE_LABEL);
    const ide2 = String(vm.config.ide2 ?? "");
    const file = /^[^:]+:iso\/([^,]+)/.exec(ide2)?.[1];
    mkdirSync(join(label, ".."), { recursive: true });
    if (!file) throw new ApiError(500, `VM ${vm.vmid} has no bootable CD-ROM (ide2 "${ide2}")`);
    execFileSync("xorriso", ["-osirrox", "on", "-indev", join(this.dirs.datastore, file), "-extract", "/relay.json", label], { stdio: "ignore" });
  }

  private halt(vm: Vm): void {
    if (this.dirs.boot) rmSync(join(this.dirs.boot, String(vm.vmid), GUEST_PATHS.RELAY_IMAGE_LABEL), { force: true });
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

  handle(method: string, segments: string[], form: Record<string, string>, upload?: RecordedRequest["upload"], file?: Buffer, user = "root@pam", query: Record<string, string> = {}): unknown {
    const route = `${method} /${segments.map((s, i) => (["nodes", "storage", "qemu", "tasks", "content"].includes(segments[i - 1] ?? "") ? "*" : s)).join("/")}`;
    // check_vm_modify_config_perm (after the schema check): `args` and `amd-sev` are root@pam's; an API token is never root, even root@pam's.
    const checkRootOnly = () => {
      const rootOnly = Object.keys(form).find((key) => ROOT_ONLY.has(key));
      if (rootOnly && user !== "root@pam") throw new ApiError(403, `only root can set '${rootOnly}' config`);
    };
    switch (route) {
      case "POST /_double/cluster":
        this.setCluster(JSON.parse(form.json ?? "null") as ClusterModel);
        return null;
      case "POST /_double/fail-next":
        this.failNext(form.type ?? "", form.id, form.exitstatus ?? "simulated failure");
        return null;
      case "GET /version":
        return { version: this.cluster.version, release: this.cluster.version.split(".").slice(0, 2).join("."), repoid: "double" };
      case "GET /pools":
        return [];
      case "GET /nodes":
        if (this.dirs.cluster) return this.dirs.cluster.nodes.map((node) => ({ node: node.node, status: node.status, type: "node", id: `node/${node.node}` }));
        return [...new Set([...this.vms.values()].map((vm) => vm.node))].map((node) => ({ node, status: "online" }));
      // PVE/API2/AccessControl.pm permissions: privileges by ACL path for the caller.
      case "GET /access/permissions":
        return user === "root@pam" ? { "/": Object.fromEntries(ALL_PRIVILEGES.map((privilege) => [privilege, 1])) } : this.cluster.tokenPermissions;
      // PVE/API2/Nodes.pm status: kversion, current-kernel (8.2+), cpuinfo, memory in bytes.
      case "GET /nodes/*/status": {
        const node = this.clusterNode(segments[1]!);
        const total = node.memoryFree * 2;
        return {
          kversion: `Linux ${node.kernelRelease} #1 SMP PREEMPT_DYNAMIC PMX ${node.kernelRelease} x86_64`,
          "current-kernel": { sysname: "Linux", release: node.kernelRelease, version: "#1 SMP PREEMPT_DYNAMIC", machine: "x86_64" },
          cpuinfo: { model: node.cpuModel, cpus: 64, sockets: 1, cores: 32, flags: "sev sev_es sev_snp" },
          memory: { total, used: total - node.memoryFree, free: node.memoryFree },
          pveversion: `pve-manager/${this.cluster.version}/double`,
        };
      }
      // PVE/API2/Network.pm index: interfaces with iface and type; type=any_bridge lists bridges (Linux and OVS).
      case "GET /nodes/*/network": {
        const node = this.clusterNode(segments[1]!);
        const all = [{ iface: "eno1", type: "eth", active: 1 }, ...node.bridges.map((iface) => ({ iface, type: "bridge", active: 1, bridge_ports: "eno1" }))];
        return query.type === "any_bridge" || query.type === "bridge" ? all.filter((entry) => entry.type === "bridge") : all;
      }
      // PVE/API2/Storage/Config.pm read: the storage's configuration (type, content, path for a dir storage).
      case "GET /storage/*": {
        const storage = this.cluster.storages.find((entry) => entry.storage === segments[1]);
        if (!storage) throw new ApiError(500, `storage '${segments[1]}' does not exist`);
        return { ...storage, digest: createHash("sha1").update(JSON.stringify(storage)).digest("hex") };
      }
      case "GET /cluster/resources":
        return [...this.vms.values()].map((vm) => ({ vmid: vm.vmid, node: vm.node, type: "qemu", id: `qemu/${vm.vmid}`, status: vm.status, name: vm.config.name }));
      case "GET /nodes/*/tasks/*/status":
        return this.taskStatus(segments[3]!);
      case "GET /nodes/*/tasks/*/log": {
        const task = this.tasks.get(segments[3]!);
        if (!task) throw new ApiError(500, `no such task '${segments[3]}'`);
        return task.log.map((t, i) => ({ n: i + 1, t }));
      }
      case "GET /nodes/*/storage/*/content": {
        const [, node, , datastore] = segments;
        return [...this.volumes.values()]
          .filter((v) => v.node === node && v.volid.startsWith(`${datastore}:`))
          .map((v) => ({ volid: v.volid, content: "iso", format: "iso", size: v.size, ctime: v.ctime }));
      }
      case "POST /nodes/*/storage/*/upload": {
        const [, node, , datastore] = segments;
        refuseParameters(checkUpload(form, upload?.filename));
        if (form.content !== "iso") throw new ApiError(500, `storage '${datastore}' does not support '${form.content}' content`);
        const name = storedFileName(upload!.filename);
        const volid = `${datastore}:iso/${name}`;
        return this.task(node!, "imgcopy", "", () => {
          if (this.dirs.datastore && file) {
            mkdirSync(this.dirs.datastore, { recursive: true });
            writeFileSync(join(this.dirs.datastore, name), file);
          }
          this.clock += 1;
          this.volumes.set(volumeKey(node!, volid), { volid, node: node!, size: upload!.bytes, ctime: this.clock, sha256: upload!.sha256 });
        });
      }
      case "DELETE /nodes/*/storage/*/content/*": {
        const volid = segments[5]!;
        if (!this.volumes.delete(volumeKey(segments[1]!, volid))) throw new ApiError(500, `volume '${volid}' does not exist`);
        return null;
      }
      case "GET /cluster/nextid":
        return String(Math.max(100, ...this.vms.keys()) + 1);
      case "GET /nodes/*/qemu":
        return [...this.vms.values()].filter((vm) => vm.node === segments[1]).map((vm) => ({ vmid: vm.vmid, status: vm.status, name: vm.config.name }));
      case "POST /nodes/*/qemu": {
        const node = segments[1]!;
        refuseParameters(checkVmCreate(form));
        checkRootOnly();
        const vmid = Number(form.vmid);
        if (this.vms.has(vmid)) throw new ApiError(500, `unable to create VM ${vmid} - VM ${vmid} already exists on node '${node}'`);
        const config: Record<string, string | number> = {};
        for (const [key, value] of Object.entries(form)) if (key !== "vmid") config[key] = storedValue(key, value);
        this.checkVolumes(node, config);
        // The config exists from the start (the task holds its lock); a failed create removes it again.
        this.vms.set(vmid, { vmid, node, config, status: "stopped" });
        const upid = this.task(node, "qmcreate", String(vmid));
        if (this.tasks.get(upid)!.failure) this.vms.delete(vmid);
        return upid;
      }
      case "GET /nodes/*/qemu/*/config":
      case "GET /nodes/*/qemu/*/pending": {
        const vm = this.vm(Number(segments[3]), segments[1]);
        if (route.endsWith("pending")) return Object.entries(vm.config).map(([key, value]) => ({ key, value }));
        return { ...vm.config, digest: configDigest(vm.config) };
      }
      case "POST /nodes/*/qemu/*/config":
      case "PUT /nodes/*/qemu/*/config": {
        const vm = this.vm(Number(segments[3]), segments[1]);
        refuseParameters(checkVmUpdate(form, method as "PUT" | "POST"));
        checkRootOnly();
        if (form.digest !== undefined && form.digest !== configDigest(vm.config)) throw new ApiError(500, "detected modified configuration - file changed by other user? Try again.");
        const next = { ...vm.config };
        for (const key of (form.delete ?? "").split(/[,;\s]+/).filter(Boolean)) delete next[key];
        for (const [key, value] of Object.entries(form)) {
          if (key === "delete" || key === "digest" || key === "background_delay") continue;
          next[key] = storedValue(key, value);
        }
        this.checkVolumes(vm.node, next);
        vm.config = next;
        return method === "POST" ? this.task(vm.node, "qmconfig", String(vm.vmid)) : null;
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
        refuseParameters(checkStatusCall(action, form));
        const stopping = action === "stop" || action === "shutdown";
        if (!stopping && action !== "start" && vm.status !== "running") throw new ApiError(500, `VM ${vm.vmid} not running`);
        return this.task(vm.node, `qm${action}`, String(vm.vmid), () => {
          if (stopping) {
            vm.status = "stopped";
            this.halt(vm);
            return;
          }
          this.checkLaunch(vm);
          vm.status = "running";
          this.boot(vm);
        });
      }
      case "DELETE /nodes/*/qemu/*": {
        const vm = this.vm(Number(segments[3]), segments[1]);
        if (vm.status === "running") throw new ApiError(500, `VM ${vm.vmid} is running - destroy failed`);
        return this.task(vm.node, "qmdestroy", String(vm.vmid), () => {
          this.halt(vm);
          this.vms.delete(vm.vmid);
        });
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
    const path = `/${segments.join("/")}`;
    // The password never reaches the request log.
    this.record({ method, path, query, form: form.password !== undefined ? { ...form, password: "(redacted)" } : form, ...(upload ? { upload } : {}) });

    // Login: a ticket for root@pam and its password; the ticket then comes as a cookie, with the CSRF token on writes.
    if (method === "POST" && path === "/access/ticket") {
      if (form.username !== "root@pam" || !this.dirs.rootPassword || form.password !== this.dirs.rootPassword) return reply(401, { data: null, message: "authentication failure" });
      const ticket = `PVE:root@pam:${Math.floor(Date.now() / 1000).toString(16).toUpperCase()}::${randomBytes(24).toString("base64")}`;
      const csrf = `${Math.floor(Date.now() / 1000).toString(16).toUpperCase()}:${randomBytes(16).toString("base64")}`;
      this.tickets.set(ticket, { user: "root@pam", csrf });
      return reply(200, { data: { ticket, CSRFPreventionToken: csrf, username: "root@pam" } });
    }
    let user: string | undefined;
    const auth = req.headers.authorization ?? "";
    if (auth === `PVEAPIToken=${this.token}`) user = this.token.split("=")[0]!;
    const cookie = /(?:^|;\s*)PVEAuthCookie=([^;]+)/.exec(req.headers.cookie ?? "")?.[1];
    if (!user && cookie) {
      const session = this.tickets.get(decodeURIComponent(cookie));
      if (session && method !== "GET" && req.headers.csrfpreventiontoken !== session.csrf) return reply(401, { data: null, message: "Permission check failed (invalid CSRF prevention token)" });
      user = session?.user;
    }
    if (!user) return reply(401, { data: null, message: "authentication failure" });
    try {
      reply(200, { data: this.handle(method, segments, form, upload, file, user, query) ?? null });
    } catch (err) {
      if (err instanceof ApiError) reply(err.status, { data: null, message: err.message, errors: err.errors });
      else reply(500, { data: null, message: (err as Error).message });
    }
  }
}

/** Volumes are per node: every node has its own `local`. */
const volumeKey = (node: string, volid: string) => `${node}\u0000${volid}`;

/** The config's digest, as GET …/config returns it and a config update may send back. */
const configDigest = (config: Record<string, string | number>) => createHash("sha1").update(JSON.stringify(config)).digest("hex");

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
      "iso-dir": { type: "string" },
      "task-seconds": { type: "string", default: "1" },
      "root-password": { type: "string" },
      cluster: { type: "string" },
    },
  });
  const double = new ProxmoxDouble(
    values.token!,
    (request) => {
      if (values.log) appendFileSync(values.log, JSON.stringify(request) + "\n");
    },
    {
      ...(values["datastore-dir"] ? { datastore: values["datastore-dir"] } : {}),
      ...(values["boot-dir"] ? { boot: values["boot-dir"] } : {}),
      ...(values["iso-dir"] ? { isoDir: values["iso-dir"] } : {}),
      ...(values["root-password"] ? { rootPassword: values["root-password"] } : {}),
      ...(values.cluster ? { cluster: JSON.parse(readFileSync(values.cluster, "utf8")) as ClusterModel } : {}),
      taskSeconds: Number(values["task-seconds"]),
    },
  );
  const server = createServer({ cert: readFileSync(values.cert!), key: readFileSync(values.key!) }, (req, res) => void double.serve(req, res));
  server.listen(Number(values.port), "127.0.0.1", () => {
    const address = server.address();
    if (address && typeof address === "object") console.log(`listening https://127.0.0.1:${address.port}`);
  });
  process.on("SIGTERM", () => server.close(() => process.exit(0)));
}
