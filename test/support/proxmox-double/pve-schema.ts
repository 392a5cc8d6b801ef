/**
 * The Proxmox VE API's parameter rules for the calls the proxmoxve provider
 * and the program make, as the double enforces them. Pure functions.
 *
 * Read from the sources of Proxmox VE 9.2 (not run against a node):
 *  - qemu-server e6352be (9.2.6): PVE/QemuServer.pm $confdesc, PVE/QemuServer/
 *    CPUConfig.pm ($sev_fmt, $cpu_fmt), Network.pm ($net_fmt), Drive.pm,
 *    RNG.pm ($rng_fmt: rng0's source /dev/urandom, /dev/random or
 *    /dev/hwrng, integer max_bytes and period), PVE/API2/Qemu.pm (create_vm,
 *    update_vm, check_vm_modify_config_perm: `args` and `amd-sev` are
 *    root@pam's alone, and an API token never is; vm_shutdown's and
 *    vm_stop's parameters: timeout an integer from 0, forceStop, keepActive,
 *    skiplock and overrule-shutdown booleans);
 *  - pve-common f665029: JSONSchema.pm (pve-vmid, dns-name, pve-tag-list,
 *    "property is not defined in schema and the schema does not allow
 *    additional properties");
 *  - pve-storage 0c56bad: PVE/API2/Storage/Status.pm upload (content iso,
 *    vztmpl or import; an ISO's name ends .iso or .img).
 * Each rule returns the message Proxmox VE gives, or undefined.
 */

export type Problems = Record<string, string>;

const bool = (value: string) => (/^(0|1|yes|no|on|off|true|false)$/.test(value) ? undefined : "type check ('boolean') failed");
const int = (min: number, max = Number.MAX_SAFE_INTEGER) => (value: string) => {
  if (!/^-?\d+$/.test(value)) return `type check ('integer') failed - got '${value}'`;
  const n = Number(value);
  if (n < min) return `value must have a minimum value of ${min}`;
  if (n > max) return `value may have a maximum value of ${max}`;
  return undefined;
};
const enumOf = (...values: string[]) => (value: string) => (values.includes(value) ? undefined : `value '${value}' does not have a value in the enumeration '${values.join(", ")}'`);
const pattern = (re: RegExp, what: string) => (value: string) => (re.test(value) ? undefined : `value does not match the regex pattern (${what})`);

/** A Proxmox VE property string: key=value pairs, the first bare value being the default key. */
function propertyString(value: string, defaultKey: string | undefined, keys: Record<string, (value: string) => string | undefined>, required: string[] = []): string | undefined {
  const seen: Record<string, string> = {};
  for (const part of value.split(",")) {
    if (part === "") continue;
    const at = part.indexOf("=");
    let key: string;
    let val: string;
    if (at < 0) {
      if (!defaultKey || seen[defaultKey] !== undefined) return `format error - value without key, but schema does not define a default key`;
      key = defaultKey;
      val = part;
    } else {
      key = part.slice(0, at);
      val = part.slice(at + 1);
    }
    const check = keys[key];
    if (!check) return `format error - ${key}: property is not defined in schema and the schema does not allow additional properties`;
    if (seen[key] !== undefined) return `format error - duplicate key in comma-separated list property: ${key}`;
    const problem = check(val);
    if (problem) return `format error - ${key}: ${problem}`;
    seen[key] = val;
  }
  for (const key of required) if (seen[key] === undefined) return `format error - ${key}: property is missing and it is not optional`;
  return undefined;
}

const MAC = /^[0-9A-Fa-f][02468AaCcEe](:[0-9A-Fa-f]{2}){5}$/;
const NIC_MODELS = ["e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b", "i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3"];
const netKeys: Record<string, (value: string) => string | undefined> = {
  model: enumOf(...NIC_MODELS),
  macaddr: pattern(MAC, "unicast MAC address"),
  bridge: pattern(/^[-_.\w\d]+$/, "pve-bridge-id"),
  firewall: bool,
  link_down: bool,
  queues: int(0, 64),
  rate: pattern(/^\d+(\.\d+)?$/, "number"),
  tag: int(1, 4094),
  trunks: pattern(/^\d+(-\d+)?(;\d+(-\d+)?)*$/, "vlan ids"),
  mtu: int(1, 65520),
  "host-tunnel": bool,
};
// A model name as a key carries the MAC: virtio=BC:24:11:…
for (const model of NIC_MODELS) netKeys[model] = pattern(MAC, "unicast MAC address");

function netRule(value: string): string | undefined {
  const problem = propertyString(value, "model", netKeys);
  if (problem) return problem;
  const keys = value.split(",").map((part) => (part.includes("=") ? part.slice(0, part.indexOf("=")) : "model"));
  if (!keys.some((key) => key === "model" || NIC_MODELS.includes(key))) return "format error - model: property is missing and it is not optional";
  return undefined;
}

const driveKeys: Record<string, (value: string) => string | undefined> = {
  file: pattern(/^(none|cdrom|[a-z][a-z0-9_.-]*:[^,]+|\/[^,]+)$/, "pve-volume-id-or-qm-path"),
  media: enumOf("cdrom", "disk"),
  size: pattern(/^\d+[KMGT]?$/, "disk size"),
};
const cdromRule = (value: string) => propertyString(value, "file", driveKeys, ["file"]);

const BOOT_DEVICE = /^(ide[0-3]|sata[0-5]|scsi([0-9]|[12][0-9]|30)|virtio([0-9]|1[0-5])|net([0-9]|[12][0-9]|3[01])|usb\d+|hostpci\d+)$/;
function bootRule(value: string): string | undefined {
  return propertyString(value, "legacy", {
    legacy: pattern(/^[acdn]{1,4}$/, "[acdn]{1,4}"),
    order: (order) => {
      const bad = order.split(";").find((device) => !BOOT_DEVICE.test(device));
      return bad !== undefined ? `invalid format - format error - ${bad}: not a valid boot device` : undefined;
    },
  });
}

/** CPUConfig.pm $sev_fmt: type is the default key and has no default. */
const amdSevRule = (value: string) =>
  propertyString(value, "type", { type: enumOf("std", "es", "snp"), "no-debug": bool, "no-key-sharing": bool, "allow-smt": bool, "kernel-hashes": bool }, ["type"]);

const DNS_NAME = /^([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?\.)*([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)$/;
const TAG = /^[a-z0-9_][a-z0-9_\-+.]*$/i;

/** The VM config keys the double knows, with their rules (QemuServer.pm $confdesc, those the provider sends). */
const VM_CONFIG: Record<string, (value: string) => string | undefined> = {
  acpi: bool,
  agent: (value) => propertyString(value, "enabled", { enabled: bool, fstrim_cloned_disks: bool, type: enumOf("virtio", "isa"), "freeze-fs-on-backup": bool }),
  "amd-sev": amdSevRule,
  args: () => undefined,
  balloon: int(0),
  bios: enumOf("seabios", "ovmf"),
  boot: bootRule,
  cores: int(1),
  cpu: (value) => propertyString(value, "cputype", { cputype: pattern(/^[A-Za-z0-9_.+-]+$/, "cpu model"), flags: pattern(/^[+-][a-z0-9_-]+(;[+-][a-z0-9_-]+)*$/i, "cpu flags"), hidden: bool, "hv-vendor-id": pattern(/^\S{1,12}$/, "vendor id") }, ["cputype"]),
  description: (value) => (value.length > 8192 ? "value may only be 8192 characters long" : undefined),
  keyboard: enumOf("de", "de-ch", "da", "en-gb", "en-us", "es", "fi", "fr", "fr-be", "fr-ca", "fr-ch", "hu", "is", "it", "ja", "lt", "mk", "nl", "no", "pl", "pt", "pt-br", "sv", "sl", "tr"),
  kvm: bool,
  machine: pattern(/^(pc|pc(-i440fx)?-\d+(\.\d+)+(\+pve\d+)?(\.pxe)?|q35|pc-q35-\d+(\.\d+)+(\+pve\d+)?(\.pxe)?|virt(?:-\d+(\.\d+)+)?(\+pve\d+)?)$/, "pve-qemu-machine"),
  memory: (value) => propertyString(value, "current", { current: int(16) }),
  name: (value) => (value.length > 128 ? "value may only be 128 characters long" : DNS_NAME.test(value) ? undefined : `value '${value}' does not look like a valid DNS name`),
  numa: bool,
  onboot: bool,
  ostype: enumOf("other", "wxp", "w2k", "w2k3", "w2k8", "wvista", "win7", "win8", "win10", "win11", "l24", "l26", "solaris"),
  protection: bool,
  // RNG.pm $rng_fmt: source is the default key and required; the integers have no bounds there.
  rng0: (value) => propertyString(value, "source", { source: enumOf("/dev/urandom", "/dev/random", "/dev/hwrng"), max_bytes: int(-Number.MAX_SAFE_INTEGER), period: int(-Number.MAX_SAFE_INTEGER) }, ["source"]),
  scsihw: enumOf("lsi", "lsi53c810", "virtio-scsi-pci", "virtio-scsi-single", "megasas", "pvscsi"),
  sockets: int(1),
  tablet: bool,
  tags: (value) => {
    const bad = value.split(/[;,\s]+/).filter(Boolean).find((tag) => !TAG.test(tag));
    return bad !== undefined ? `invalid format - invalid characters in tag '${bad}'` : undefined;
  },
  template: bool,
  vcpus: int(1),
  vga: (value) => propertyString(value, "type", { type: pattern(/^(cirrus|qxl[234]?|serial[0-3]|std|virtio(-gl)?|vmware|none)$/, "vga type"), memory: int(4, 512), clipboard: enumOf("vnc") }),
};
for (let i = 0; i <= 3; i++) VM_CONFIG[`ide${i}`] = cdromRule;
for (let i = 0; i <= 3; i++) VM_CONFIG[`serial${i}`] = pattern(/^(\/dev\/.+|socket)$/, "(/dev/.+|socket)");
for (let i = 0; i <= 31; i++) VM_CONFIG[`net${i}`] = netRule;

/** Options only root@pam (with a ticket, never a token) may set: check_vm_modify_config_perm lists neither. */
export const ROOT_ONLY = new Set(["args", "amd-sev"]);

const unknown = "property is not defined in schema and the schema does not allow additional properties";

/** Checks every parameter against its rule; `extra` holds the rules of the call's own parameters besides the config keys. */
function checkParameters(form: Record<string, string>, extra: Record<string, (value: string) => string | undefined>): Problems {
  const problems: Problems = {};
  for (const [key, value] of Object.entries(form)) {
    const rule = extra[key] ?? VM_CONFIG[key];
    const problem = rule ? rule(value) : unknown;
    if (problem) problems[key] = problem;
  }
  return problems;
}

/** POST /nodes/{node}/qemu. */
export function checkVmCreate(form: Record<string, string>): Problems {
  const problems = checkParameters(form, { vmid: (v) => (/^[1-9][0-9]{2,8}$/.test(v) ? undefined : `value '${v}' does not look like a valid VM ID`), start: bool, pool: () => undefined });
  if (form.vmid === undefined) problems.vmid = "property is missing and it is not optional";
  return problems;
}

/** PUT or POST /nodes/{node}/qemu/{vmid}/config: the config keys, plus digest, delete and (POST) background_delay. */
export function checkVmUpdate(form: Record<string, string>, method: "PUT" | "POST"): Problems {
  return checkParameters(form, {
    digest: (v) => (/^[a-f0-9]{40,64}$/i.test(v) ? undefined : "value may only be 64 characters long"),
    delete: (v) => {
      const bad = v.split(/[,;\s]+/).filter(Boolean).find((k) => !VM_CONFIG[k]);
      return bad !== undefined ? `invalid format - format error - ${bad}: not a configuration key` : undefined;
    },
    ...(method === "POST" ? { background_delay: int(1, 30) } : {}),
  });
}

/** POST …/status/{start,stop,shutdown,reboot,reset}: the parameters each takes. */
const STATUS_PARAMS: Record<string, string[]> = {
  start: ["timeout", "skiplock", "machine", "migratedfrom", "migration_type", "migration_network", "stateuri", "targetstorage", "force-cpu", "nets"],
  stop: ["timeout", "skiplock", "keepActive", "migratedfrom", "overrule-shutdown"],
  shutdown: ["timeout", "skiplock", "keepActive", "forceStop"],
  reboot: ["timeout"],
  reset: ["skiplock"],
};

/** The rules of the status calls' parameters whose values the double checks (Qemu.pm vm_shutdown, vm_stop). */
const STATUS_PARAM_RULES: Record<string, (value: string) => string | undefined> = {
  timeout: int(0),
  forceStop: bool,
  keepActive: bool,
  skiplock: bool,
  "overrule-shutdown": bool,
};

/** POST …/status/{action}: unknown parameters, and malformed values of those above. */
export function checkStatusCall(action: string, form: Record<string, string>): Problems {
  const allowed = STATUS_PARAMS[action] ?? [];
  const problems: Problems = {};
  for (const [key, value] of Object.entries(form)) {
    if (!allowed.includes(key)) problems[key] = unknown;
    else {
      const problem = STATUS_PARAM_RULES[key]?.(value);
      if (problem) problems[key] = problem;
    }
  }
  return problems;
}

/** POST /nodes/{node}/storage/{storage}/upload (pve-storage Status.pm upload). */
export function checkUpload(form: Record<string, string>, filename: string | undefined): Problems {
  const problems: Problems = {};
  for (const key of Object.keys(form)) if (!["content", "checksum", "checksum-algorithm", "tmpfilename"].includes(key)) problems[key] = unknown;
  const content = form.content;
  if (content === undefined) problems.content = "property is missing and it is not optional";
  else if (!["iso", "vztmpl", "import"].includes(content)) problems.content = `value '${content}' does not have a value in the enumeration 'iso, vztmpl, import'`;
  if (!filename) problems.filename = "property is missing and it is not optional";
  else if (filename.length > 255) problems.filename = "value may only be 255 characters long";
  else if (content === "iso" && !/[^/]+\.(iso|img)$/i.test(filename)) problems.filename = "wrong file extension";
  else if (content === "vztmpl" && !/[^/]+\.tar(\.(gz|xz|zst|bz2))?$/.test(filename)) problems.filename = "wrong file extension";
  else if (content === "import" && !/^[A-Za-z0-9_.+=-]+\.(ova|qcow2|raw|vmdk)$/.test(filename)) problems.filename = "invalid filename or wrong extension";
  return problems;
}

/** How Proxmox VE stores a file name it was sent (Status.pm: every other character becomes _). */
export const storedFileName = (filename: string) => filename.replace(/[^a-zA-Z0-9_.-]/g, "_");
