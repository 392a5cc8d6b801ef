/**
 * `npm run preflight` (cli/preflight.ts) against the Proxmox VE API double,
 * configured as a correct cluster for the stack and then, one case at a
 * time, differing from it in exactly one way: each difference fails its own
 * line, naming what to change, and the preflight only reads (the double's
 * request log). The answers' shapes are Proxmox VE's, as the double's header
 * names them (test/support/proxmox-double/server.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ALL_PRIVILEGES, type ClusterModel } from "../support/proxmox-double/server";
import { ProxmoxDoubleProcess } from "../support/proxmox";
import { TEST_API_TOKEN, TEST_ROOT_PASSWORD, testStackConfig, THREE_RELAYS } from "../support/fleet";
import { TEST_OVMF, TEST_OVMF_SHA256 } from "../support/broker";
import { TestProject } from "../support/pulumi";
import { vmDescription } from "../../lib/deploy/relay-reach";
import { privateTmpDir } from "../support/tmp";

const GiB = 1024 ** 3;
const GOOD: ClusterModel = {
  version: "9.2.11",
  nodes: ["pve1", "pve2"].map((node) => ({ node, status: "online" as const, kernelRelease: "6.14.8-2-pve", cpuModel: "AMD EPYC 9354P 32-Core Processor", memoryFree: 64 * GiB, bridges: ["vmbr0"] })),
  storages: [{ storage: "local", type: "dir", content: "iso,vztmpl,backup", path: "/var/lib/vz" }],
  tokenPermissions: { "/": Object.fromEntries(ALL_PRIVILEGES.map((privilege) => [privilege, 1])) },
  // Someone else's VM on the cluster: neither its VMID, its MAC nor its address is a relay's.
  otherVms: [{ vmid: 100, node: "pve1", name: "mail", macs: ["BC:24:11:AA:BB:CC"], addresses: ["198.51.100.99/24", "2001:db8::99/64"] }],
};
const changed = (change: (cluster: ClusterModel) => void): ClusterModel => {
  const cluster = structuredClone(GOOD);
  change(cluster);
  return cluster;
};
const node = (cluster: ClusterModel, name: string) => cluster.nodes.find((entry) => entry.node === name)!;

describe("npm run preflight against the Proxmox VE double", () => {
  const scratch = privateTmpDir("preflight");
  let double: ProxmoxDoubleProcess;
  let project: TestProject;
  let config: ReturnType<typeof testStackConfig>;

  /** The preflight against `cluster`: its exit status, its lines by check, and the requests it made. */
  const preflight = async (cluster: ClusterModel) => {
    await double.setCluster(cluster);
    const before = double.requests().length;
    const result = await project.scriptAsync("cli/preflight.ts", "--stack", project.stack, "--json");
    const output = result.stdout + result.stderr;
    let checks: { check: string; ok: boolean; detail: string }[];
    try {
      checks = (JSON.parse(result.stdout) as { checks: typeof checks }).checks;
    } catch {
      throw new Error(`preflight printed no JSON (${result.status}):\n${output}`);
    }
    const lines = new Map(checks.map((line) => [line.check, line] as const));
    return { status: result.status, output, lines, requests: double.requests().slice(before) };
  };
  const failing = (lines: Map<string, { ok: boolean }>) => [...lines].filter(([, line]) => !line.ok).map(([check]) => check);

  beforeAll(async () => {
    double = await ProxmoxDoubleProcess.start(scratch, TEST_API_TOKEN, { rootPassword: TEST_ROOT_PASSWORD, cluster: GOOD });
    project = new TestProject("preflight");
    config = testStackConfig(THREE_RELAYS, { endpoint: double.endpoint });
    // guard-1 runs as an SEV-SNP guest on pve1.
    Object.assign(config.relays[1]!, { cpuType: "EPYC-v4", sev: { enabled: true, ovmf: TEST_OVMF, ovmfSha256: TEST_OVMF_SHA256 } });
    project.configure(config, { proxmoxApiToken: TEST_API_TOKEN, proxmoxRootPassword: TEST_ROOT_PASSWORD });
  }, 300_000);

  afterAll(() => {
    double?.stop();
    project?.destroy();
  });

  it("passes a stack the cluster suits, one line per check, and changes nothing", async () => {
    const { status, output, lines, requests } = await preflight(GOOD);
    // The operator's table says the same, one line per check.
    const table = await project.scriptAsync("cli/preflight.ts", "--stack", project.stack);
    expect(table.status).toBe(0);
    expect(table.stdout).toMatch(/^ok {3}api {13} Proxmox VE 9\.2\.11$/m);
    expect(table.stdout).toContain(`stack ${project.stack}: the cluster has what the stack needs`);
    expect(status, output).toBe(0);
    expect([...lines.keys()]).toEqual(["api", "permissions", "root-password", "node pve1", "node pve2", "bridges on pve1", "bridges on pve2", "datastore", "vmids", "macs", "addresses", "snp on pve1"]);
    expect(failing(lines)).toEqual([]);
    expect(lines.get("snp on pve1")!.detail).toBe("kernel 6.14.8-2-pve, AMD EPYC 9354P 32-Core Processor, 65536 MiB free for 2048 MiB of relays");
    // Reads only; the one POST is root@pam's login, which creates nothing.
    expect(requests.filter((request) => request.method !== "GET").map((request) => `${request.method} ${request.path}`)).toEqual(["POST /access/ticket"]);
    expect(requests.length).toBeGreaterThan(8);
  }, 120_000);

  const cases: { name: string; cluster: ClusterModel; check: string[]; says: RegExp }[] = [
    { name: "a Proxmox VE older than SNP", cluster: changed((c) => (c.version = "8.3.5")), check: ["api"], says: /Proxmox VE 8\.3\.5: SEV-SNP relays \(guard-1\) need 8\.4 or later/ },
    {
      name: "a token without the right to upload ISOs",
      cluster: changed((c) => delete c.tokenPermissions["/"]!["Datastore.AllocateTemplate"]),
      check: ["permissions"],
      says: /lack Datastore\.AllocateTemplate on \/storage\/local \(uploading and pruning the relays' ISOs\).*pveum acl modify/,
    },
    {
      name: "a token whose VM privileges stop at one VMID",
      cluster: changed((c) => {
        const vm = Object.fromEntries(ALL_PRIVILEGES.filter((p) => p.startsWith("VM.")).map((p) => [p, 1]));
        c.tokenPermissions = { "/": Object.fromEntries(ALL_PRIVILEGES.filter((p) => !p.startsWith("VM.")).map((p) => [p, 1])), "/vms/9101": vm, "/vms/9102": vm };
      }),
      check: ["permissions"],
      says: /lack VM\.Allocate, .* on \/vms\/9201 \(relay exit-2's VM\)/,
    },
    { name: "a node that is down", cluster: changed((c) => (node(c, "pve2").status = "offline")), check: ["node pve2"], says: /is offline: bring it online, or move its relays to another node \(relays\[\]\.node\)/ },
    {
      name: "a node the cluster does not have",
      cluster: changed((c) => (c.nodes = c.nodes.filter((n) => n.node !== "pve2"))),
      check: ["node pve2", "bridges on pve2"],
      says: /is not a node of the cluster \(pve1\): fix proxmox\.nodes/,
    },
    { name: "a bridge missing on a node", cluster: changed((c) => (node(c, "pve2").bridges = ["vmbr1"])), check: ["bridges on pve2"], says: /no bridge vmbr0 on pve2 \(it has vmbr1\): fix proxmox\.bridge or relays\[\]\.bridge/ },
    { name: "a datastore without ISO content", cluster: changed((c) => (c.storages[0]!.content = "images,rootdir")), check: ["datastore"], says: /local does not hold ISO images \(content images,rootdir\)/ },
    { name: "a datastore that is no directory", cluster: changed((c) => (c.storages[0] = { storage: "local", type: "cifs", content: "iso" })), check: ["datastore"], says: /local is a cifs storage: SEV-SNP relays boot their UKI and firmware by path/ },
    { name: "ISO images kept elsewhere than proxmox.isoDir", cluster: changed((c) => (c.storages[0]!.path = "/srv/pve")), check: ["datastore"], says: /keeps ISO images in \/srv\/pve\/template\/iso, not \/var\/lib\/vz\/template\/iso: set proxmox\.isoDir to \/srv\/pve\/template\/iso/ },
    { name: "a relay's VMID taken by another VM", cluster: changed((c) => c.otherVms.push({ vmid: 9102, node: "pve1", name: "db", macs: [] })), check: ["vmids"], says: /VMID 9102 \(relays\[1\]\.vmId, guard-1\) is db on pve1, not this relay's: choose free VMIDs/ },
    { name: "a relay's MAC used by another VM", cluster: changed((c) => (c.otherVms[0]!.macs = ["bc:24:11:00:00:01"])), check: ["macs"], says: /BC:24:11:00:00:01 \(relays\[0\]\.mac, exit-1\) is VM 100's on pve1: give each relay a MAC of its own/ },
    {
      name: "a relay's IPv4 address given to another VM by cloud-init",
      cluster: changed((c) => (c.otherVms[0]!.addresses = ["198.51.100.10/24"])),
      check: ["addresses"],
      says: /^198\.51\.100\.10 \(relays\[0\]\.ipv4\.address, exit-1\) is VM 100's on pve1: give each relay an address of its own$/,
    },
    {
      name: "a relay's IPv6 address, spelled otherwise, given to another VM by cloud-init",
      cluster: changed((c) => (c.otherVms[0]!.addresses = ["2001:0db8:0:0::11/64"])),
      check: ["addresses"],
      says: /^2001:db8::11 \(relays\[1\]\.ipv6\.address, guard-1\) is VM 100's on pve1: give each relay an address of its own$/,
    },
    { name: "an SNP node's kernel older than 6.11", cluster: changed((c) => (node(c, "pve1").kernelRelease = "6.8.12-4-pve")), check: ["snp on pve1"], says: /its kernel 6\.8\.12-4-pve is older than 6\.11/ },
    { name: "an SNP node's CPU without SNP", cluster: changed((c) => (node(c, "pve1").cpuModel = "AMD EPYC 7402P 24-Core Processor")), check: ["snp on pve1"], says: /its CPU "AMD EPYC 7402P 24-Core Processor" is not an EPYC 7003 \(Milan\) or later/ },
    { name: "an SNP node without the memory for its relays", cluster: changed((c) => (node(c, "pve1").memoryFree = 1536 * 1024 ** 2)), check: ["snp on pve1"], says: /its relays need 2048 MiB and it has 1536 MiB free: lower relays\[\]\.memoryMiB or move relays/ },
  ];
  for (const c of cases) {
    it(`fails ${c.name} on its own line, naming the fix, and changes nothing`, async () => {
      const { status, output, lines, requests } = await preflight(c.cluster);
      expect(status, output).toBe(1);
      expect(failing(lines), output).toEqual(c.check);
      expect(lines.get(c.check[0]!)!.detail).toMatch(c.says);
      expect(requests.filter((request) => request.method !== "GET" && request.path !== "/access/ticket")).toEqual([]);
    }, 120_000);
  }

  it("counts a VM this stack made earlier as the relay's own: its VMID and MAC are no clash", async () => {
    const exit = config.relays[0]!;
    const cluster = changed((c) => c.otherVms.push({ vmid: exit.vmId, node: exit.node, name: exit.nickname.toLowerCase(), macs: [exit.mac], description: vmDescription(exit, "ab".repeat(32), "relay.iso") }));
    const { status, output, lines } = await preflight(cluster);
    expect(status, output).toBe(0);
    expect(lines.get("vmids")!.detail).toBe("2 free, 1 already this stack's relays");
    expect(lines.get("macs")!.ok).toBe(true);
  }, 120_000);

  it("counts the memory a running relay VM of this stack holds as in use: its replacement is made after it is gone", async () => {
    const guard = config.relays[1]!;
    // 1536 MiB free: both pve1 relays anew (2048 MiB) would not fit; with the SNP guard's VM running already, the exit's 1024 MiB do.
    const cluster = changed((c) => {
      node(c, "pve1").memoryFree = 1536 * 1024 ** 2;
      c.otherVms.push({ vmid: guard.vmId, node: guard.node, name: guard.nickname.toLowerCase(), macs: [guard.mac], description: vmDescription(guard, "ab".repeat(32), "relay.iso") });
    });
    const { status, output, lines } = await preflight(cluster);
    expect(status, output).toBe(0);
    expect(lines.get("snp on pve1")!.detail).toBe("kernel 6.14.8-2-pve, AMD EPYC 9354P 32-Core Processor, 1536 MiB free for 1024 MiB of relays");
  }, 120_000);

  it("fails root@pam's login when proxmoxRootPassword is wrong, and says how to set it", async () => {
    project.configure(config, { proxmoxApiToken: TEST_API_TOKEN, proxmoxRootPassword: "not the password" });
    try {
      const { status, output, lines } = await preflight(GOOD);
      expect(status, output).toBe(1);
      expect(failing(lines)).toEqual(["root-password"]);
      expect(lines.get("root-password")!.detail).toMatch(/root@pam cannot log in with proxmoxRootPassword: .*401.*pulumi config set --secret proxmoxRootPassword/);
    } finally {
      project.configure(config, { proxmoxApiToken: TEST_API_TOKEN, proxmoxRootPassword: TEST_ROOT_PASSWORD });
    }
  }, 120_000);

  it("says when the API cannot be reached, and stops there", async () => {
    project.configure({ ...config, proxmox: { ...config.proxmox, endpoint: "https://127.0.0.1:1" } }, { proxmoxApiToken: TEST_API_TOKEN, proxmoxRootPassword: TEST_ROOT_PASSWORD });
    try {
      const { status, output, lines } = await preflight(GOOD);
      expect(status, output).toBe(1);
      expect([...lines.keys()]).toEqual(["api"]);
      expect(lines.get("api")!.detail).toMatch(/the Proxmox VE API does not answer: .*ECONNREFUSED.*check proxmox\.endpoint/);
    } finally {
      project.configure(config, { proxmoxApiToken: TEST_API_TOKEN, proxmoxRootPassword: TEST_ROOT_PASSWORD });
    }
  }, 120_000);
});
