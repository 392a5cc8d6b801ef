/**
 * The preflight's judgement: what a stack needs from its Proxmox VE cluster,
 * checked against what the cluster's API says (gathered read-only by
 * lib/ops/preflight-facts.ts), one line per check, each naming the
 * config field or the node setting to change. Pure.
 *
 * Where the rules come from:
 * - the privileges: Proxmox VE's API schema (pve-manager, PVE/API2/Qemu.pm
 *   create_vm and update_vm, PVE/API2/Storage/Status.pm upload) and the
 *   administration guide's "Privileges" list: a VM is created with
 *   VM.Allocate and configured with VM.Config.* on /vms/VMID, an ISO needs
 *   Datastore.AllocateTemplate on /storage/ID, a NIC needs SDN.Use on the
 *   bridge's /sdn/zones/localnetwork/BRIDGE (8.0 and later);
 * - SEV-SNP: Proxmox VE 8.4 first shipped amd-sev type=snp; the host kernel
 *   needs 6.11 or later (KVM's SNP support, the guide's "AMD SEV" section),
 *   and the CPU must be EPYC 7003 (Milan) or later (SNP is Zen 3 onwards);
 * - the ISO directory: a "dir" storage keeps ISO images in PATH/template/iso
 *   (PVE/Storage/Plugin.pm get_subdir), which is where SNP relays' args
 *   name their UKI and firmware.
 */
import { imageDigestOfVmDescription } from "../deploy/relay-reach";
import { addressOf, canonicalAddress, parseAddress } from "../tor/addresses";

/** One API answer, or why there is none. */
export type Answer<T> = { ok: true; value: T } | { ok: false; error: string };

export interface NodeFacts {
  /** GET /nodes/NODE/status: kernel release and CPU model, free memory in bytes. */
  status: Answer<{ kernelRelease: string; cpuModel: string; memoryFree: number }>;
  /** GET /nodes/NODE/network: the bridges' names. */
  bridges: Answer<string[]>;
}

export interface ClusterVm {
  vmid: number;
  node: string;
  name?: string;
  /** Its config's description and MAC addresses (net0…), when read. */
  description?: string;
  macs: string[];
  /** The addresses its cloud-init config gives it (ipconfig0…: ip=, ip6=), without prefix lengths. */
  addresses: string[];
  /** GET /cluster/resources says it runs: its memory is in use already. */
  running: boolean;
}

export interface PreflightFacts {
  /** GET /version */
  version: Answer<string>;
  /** GET /access/permissions: privileges by ACL path, for the token (or root@pam's ticket). */
  permissions: Answer<Record<string, Record<string, number>>>;
  /** POST /access/ticket with root@pam's password, for stacks with SNP relays. */
  rootLogin?: Answer<true>;
  /** GET /nodes: name and status. */
  nodes: Answer<{ node: string; status: string }[]>;
  byNode: Record<string, NodeFacts>;
  /** GET /storage/ID */
  storage: Answer<{ type: string; content: string; path?: string }>;
  /** GET /cluster/resources?type=vm, with each VM's config. */
  vms: Answer<ClusterVm[]>;
}

/** What the preflight needs of the stack config. */
export interface PreflightStack {
  proxmox: { nodes: string[]; datastore: string; bridge: string; isoDir: string };
  hasRootPassword: boolean;
  relays: { name: string; nickname: string; node: string; vmId: number; mac: string; ipv4: string; ipv6?: string | undefined; bridge?: string | undefined; memoryMiB: number; snp: boolean }[];
}

/** Two spellings of one address compare equal (2001:db8::10 and 2001:0db8:0::10). */
const sameAddress = (a: string, b: string) => {
  const [pa, pb] = [parseAddress(addressOf(a)), parseAddress(addressOf(b))];
  return pa !== undefined && pb !== undefined && canonicalAddress(pa) === canonicalAddress(pb);
};

export interface PreflightLine {
  check: string;
  ok: boolean;
  detail: string;
}

const MIN_SNP_VERSION = [8, 4];
const MIN_SNP_KERNEL = [6, 11];

/** "9.2.11" or "6.14.8-2-pve" → [9, 2, 11] / [6, 14, 8]; empty when it is not a version. */
function versionParts(text: string): number[] {
  const match = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(text.trim());
  return match ? match.slice(1).filter((part) => part !== undefined).map(Number) : [];
}

const atLeast = (have: number[], want: number[]) => {
  for (let i = 0; i < want.length; i++) {
    const a = have[i] ?? 0;
    if (a !== want[i]) return a > want[i]!;
  }
  return true;
};

/**
 * Whether an AMD EPYC model name is of a generation with SEV-SNP: 7003
 * (Milan) and later. EPYC model numbers end in the generation's digit:
 * 7xx2 Rome (no SNP), 7xx3 Milan, 9xx4/8xx4 Genoa, Bergamo and Siena, 9xx5
 * Turin.
 */
export function cpuHasSnp(model: string): boolean {
  const match = /AMD EPYC (?:Embedded )?([4789])[0-9A-Z]{2}(\d)[A-Z]*\b/.exec(model);
  if (!match) return false;
  const [series, generation] = [Number(match[1]), Number(match[2])];
  if (series === 7) return generation >= 3;
  if (series === 8 || series === 9) return generation >= 4;
  return false;
}

/** The privileges a stack needs, by ACL path (from the API schema's permission checks). */
function requiredPrivileges(stack: PreflightStack): { path: string; privileges: string[]; why: string }[] {
  const vm = ["VM.Allocate", "VM.Audit", "VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options", "VM.Config.HWType", "VM.PowerMgmt"];
  const bridges = [...new Set(stack.relays.map((relay) => relay.bridge ?? stack.proxmox.bridge))];
  return [
    ...stack.relays.map((relay) => ({ path: `/vms/${relay.vmId}`, privileges: vm, why: `relay ${relay.name}'s VM` })),
    { path: `/storage/${stack.proxmox.datastore}`, privileges: ["Datastore.Audit", "Datastore.AllocateSpace", "Datastore.AllocateTemplate"], why: "uploading and pruning the relays' ISOs" },
    ...stack.proxmox.nodes.map((node) => ({ path: `/nodes/${node}`, privileges: ["Sys.Audit"], why: `reading node ${node}'s status` })),
    ...bridges.map((bridge) => ({ path: `/sdn/zones/localnetwork/${bridge}`, privileges: ["SDN.Use"], why: `attaching NICs to ${bridge}` })),
  ];
}

/** A privilege on `path`: granted on the nearest path at or above it that has an entry (ACLs propagate down). */
function holds(permissions: Record<string, Record<string, number>>, path: string, privilege: string): boolean {
  const parts = path.split("/").filter(Boolean);
  for (let n = parts.length; n >= 0; n--) {
    const at = `/${parts.slice(0, n).join("/")}`;
    const entry = permissions[at];
    if (entry && privilege in entry) return Boolean(entry[privilege]);
  }
  return false;
}

export function judgePreflight(stack: PreflightStack, facts: PreflightFacts): PreflightLine[] {
  const lines: PreflightLine[] = [];
  const line = (check: string, ok: boolean, detail: string) => lines.push({ check, ok, detail });
  const snpRelays = stack.relays.filter((relay) => relay.snp);

  // The API.
  if (!facts.version.ok) {
    line("api", false, `the Proxmox VE API does not answer: ${facts.version.error} (check proxmox.endpoint; for a self-signed certificate, proxmox.verifyTls false or the node's CA in NODE_EXTRA_CA_CERTS)`);
    return lines;
  }
  const version = versionParts(facts.version.value);
  if (snpRelays.length > 0 && !atLeast(version, MIN_SNP_VERSION)) {
    line("api", false, `Proxmox VE ${facts.version.value}: SEV-SNP relays (${snpRelays[0]!.name}) need 8.4 or later; upgrade the cluster, or set relays[].sev.enabled false`);
  } else line("api", true, `Proxmox VE ${facts.version.value}`);

  // Credentials.
  if (!facts.permissions.ok) line("permissions", false, `GET /access/permissions: ${facts.permissions.error} (check proxmoxApiToken: USER@REALM!TOKENID=SECRET)`);
  else {
    const missing: string[] = [];
    for (const need of requiredPrivileges(stack)) {
      const lacking = need.privileges.filter((privilege) => !holds(facts.permissions.ok ? facts.permissions.value : {}, need.path, privilege));
      if (lacking.length > 0) missing.push(`${lacking.join(", ")} on ${need.path} (${need.why})`);
    }
    line("permissions", missing.length === 0, missing.length === 0 ? "the credentials hold every privilege the stack uses" : `the credentials lack ${missing.join("; ")}: grant them to the token's user (and the token, if privilege-separated) with pveum acl modify`);
  }
  if (snpRelays.length > 0) {
    if (!stack.hasRootPassword) line("root-password", false, `SEV-SNP relays (${snpRelays[0]!.name}) need root@pam's password: pulumi config set --secret proxmoxRootPassword …`);
    else if (facts.rootLogin && !facts.rootLogin.ok) line("root-password", false, `root@pam cannot log in with proxmoxRootPassword: ${facts.rootLogin.error} (set it again: pulumi config set --secret proxmoxRootPassword …)`);
    else line("root-password", true, "root@pam logs in with proxmoxRootPassword");
  }

  // Nodes, bridges.
  const listed = facts.nodes.ok ? new Map(facts.nodes.value.map((node) => [node.node, node.status])) : undefined;
  for (const node of stack.proxmox.nodes) {
    if (!facts.nodes.ok) line(`node ${node}`, false, `GET /nodes: ${facts.nodes.error}`);
    else if (!listed!.has(node)) line(`node ${node}`, false, `is not a node of the cluster (${[...listed!.keys()].join(", ") || "none listed"}): fix proxmox.nodes and the relays' node`);
    else if (listed!.get(node) !== "online") line(`node ${node}`, false, `is ${listed!.get(node)}: bring it online, or move its relays to another node (relays[].node)`);
    else line(`node ${node}`, true, "online");
  }
  const bridgesByNode = new Map<string, Set<string>>();
  for (const relay of stack.relays) bridgesByNode.set(relay.node, (bridgesByNode.get(relay.node) ?? new Set()).add(relay.bridge ?? stack.proxmox.bridge));
  for (const [node, bridges] of bridgesByNode) {
    const have = facts.byNode[node]?.bridges;
    if (!have) continue;
    if (!have.ok) {
      line(`bridges on ${node}`, false, `GET /nodes/${node}/network: ${have.error}`);
      continue;
    }
    const absent = [...bridges].filter((bridge) => !have.value.includes(bridge));
    line(`bridges on ${node}`, absent.length === 0, absent.length === 0 ? [...bridges].join(", ") : `no bridge ${absent.join(", ")} on ${node} (it has ${have.value.join(", ") || "none"}): fix proxmox.bridge or relays[].bridge, or create it on the node`);
  }

  // The datastore.
  if (!facts.storage.ok) line("datastore", false, `GET /storage/${stack.proxmox.datastore}: ${facts.storage.error} (check proxmox.datastore)`);
  else {
    const storage = facts.storage.value;
    const content = storage.content.split(",").map((part) => part.trim());
    const isoDir = storage.path ? `${storage.path.replace(/\/+$/, "")}/template/iso` : undefined;
    if (!content.includes("iso")) line("datastore", false, `${stack.proxmox.datastore} does not hold ISO images (content ${storage.content}): add "ISO image" to its content, or set proxmox.datastore to a storage that does`);
    else if (snpRelays.length > 0 && storage.type !== "dir") line("datastore", false, `${stack.proxmox.datastore} is a ${storage.type} storage: SEV-SNP relays boot their UKI and firmware by path, which needs a directory storage (proxmox.datastore)`);
    else if (snpRelays.length > 0 && isoDir !== stack.proxmox.isoDir.replace(/\/+$/, "")) line("datastore", false, `${stack.proxmox.datastore} keeps ISO images in ${isoDir}, not ${stack.proxmox.isoDir}: set proxmox.isoDir to ${isoDir}`);
    else line("datastore", true, `${stack.proxmox.datastore} (${storage.type}) holds ISO images${isoDir ? ` in ${isoDir}` : ""}`);
  }

  // VMIDs and MACs. A VM this stack made earlier is the relay's own: a later up replaces it.
  const ours = new Set<number>();
  if (!facts.vms.ok) line("vmids", false, `GET /cluster/resources: ${facts.vms.error}`);
  else {
    const vms = facts.vms.value;
    const taken: string[] = [];

    for (const relay of stack.relays) {
      const vm = vms.find((entry) => entry.vmid === relay.vmId);
      if (!vm) continue;
      const isOurs = vm.node === relay.node && vm.name === relay.nickname.toLowerCase() && vm.description !== undefined && imageDigestOfVmDescription(vm.description) !== undefined;
      if (isOurs) ours.add(vm.vmid);
      else taken.push(`VMID ${relay.vmId} (relays[${stack.relays.indexOf(relay)}].vmId, ${relay.name}) is ${vm.name ?? "a VM"} on ${vm.node}, not this relay's`);
    }
    line("vmids", taken.length === 0, taken.length === 0 ? `${stack.relays.length - ours.size} free, ${ours.size} already this stack's relays` : `${taken.join("; ")}: choose free VMIDs`);
    const clashes: string[] = [];
    for (const relay of stack.relays) {
      for (const vm of vms) {
        if (vm.vmid === relay.vmId && ours.has(vm.vmid)) continue;
        if (vm.macs.some((mac) => mac.toLowerCase() === relay.mac.toLowerCase())) clashes.push(`${relay.mac} (relays[${stack.relays.indexOf(relay)}].mac, ${relay.name}) is VM ${vm.vmid}'s on ${vm.node}`);
      }
    }
    line("macs", clashes.length === 0, clashes.length === 0 ? "no other VM of the cluster uses the relays' MAC addresses" : `${clashes.join("; ")}: give each relay a MAC of its own`);
    // Only addresses Proxmox VE holds (cloud-init's ipconfigN) can be seen here; one a guest sets itself cannot.
    const usedAddresses: string[] = [];
    for (const relay of stack.relays) {
      const index = stack.relays.indexOf(relay);
      for (const vm of vms) {
        if (vm.vmid === relay.vmId && ours.has(vm.vmid)) continue;
        for (const [field, address] of [["ipv4", relay.ipv4], ["ipv6", relay.ipv6]] as const) {
          if (address !== undefined && vm.addresses.some((other) => sameAddress(other, address))) usedAddresses.push(`${addressOf(address)} (relays[${index}].${field}.address, ${relay.name}) is VM ${vm.vmid}'s on ${vm.node}`);
        }
      }
    }
    line(
      "addresses",
      usedAddresses.length === 0,
      usedAddresses.length === 0 ? "no other VM's cloud-init config of the cluster gives it the relays' addresses (addresses a guest sets itself cannot be seen from the API)" : `${usedAddresses.join("; ")}: give each relay an address of its own`,
    );
  }

  // SEV-SNP nodes.
  const snpNodes = [...new Set(snpRelays.map((relay) => relay.node))];
  for (const node of snpNodes) {
    const status = facts.byNode[node]?.status;
    if (!status) continue;
    if (!status.ok) {
      line(`snp on ${node}`, false, `GET /nodes/${node}/status: ${status.error}`);
      continue;
    }
    const { kernelRelease, cpuModel, memoryFree } = status.value;
    // A relay whose VM runs already holds its memory (the free figure leaves it out), and its replacement is made after it is gone.
    const runningOurs = new Set(facts.vms.ok ? facts.vms.value.filter((vm) => ours.has(vm.vmid) && vm.running).map((vm) => vm.vmid) : []);
    const needMiB = stack.relays.filter((relay) => relay.node === node && !runningOurs.has(relay.vmId)).reduce((sum, relay) => sum + relay.memoryMiB, 0);
    const problems = [
      ...(atLeast(versionParts(kernelRelease), MIN_SNP_KERNEL) ? [] : [`its kernel ${kernelRelease} is older than 6.11: install a newer proxmox-kernel`]),
      ...(cpuHasSnp(cpuModel) ? [] : [`its CPU "${cpuModel}" is not an EPYC 7003 (Milan) or later: move the SNP relays to another node, or set their sev.enabled false`]),
      ...(needMiB * 1024 * 1024 <= memoryFree ? [] : [`its relays need ${needMiB} MiB and it has ${Math.floor(memoryFree / 1024 / 1024)} MiB free: lower relays[].memoryMiB or move relays`]),
    ];
    line(`snp on ${node}`, problems.length === 0, problems.length === 0 ? `kernel ${kernelRelease}, ${cpuModel}, ${Math.floor(memoryFree / 1024 / 1024)} MiB free for ${needMiB} MiB of relays` : problems.join("; "));
  }
  return lines;
}
