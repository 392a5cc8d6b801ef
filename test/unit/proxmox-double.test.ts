/**
 * The Proxmox VE double refuses what Proxmox VE refuses (its rules and their
 * sources: test/support/proxmox-double/pve-schema.ts), runs tasks that take time and
 * fail on demand, and the program's own API client (lib/proxmox/proxmox-api.ts)
 * reports those failures. One malformed request per checked parameter, each
 * beside a well-formed one that passes.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootIso, uploadIso, vmState } from "../../lib/proxmox/proxmox-api";
import { TEST_API_TOKEN, TEST_ROOT_PASSWORD } from "../support/fleet";
import { ProxmoxDoubleProcess } from "../support/proxmox";
import { privateTmpDir } from "../support/tmp";

describe("the Proxmox VE double", () => {
  const dir = privateTmpDir("proxmox-double");
  let double: ProxmoxDoubleProcess;
  const iso = join(dir, "files", "relay-Test-000000000000-00000000.iso");
  const token = () => ({ endpoint: double.endpoint, verifyTls: false, apiToken: TEST_API_TOKEN });
  const root = () => ({ endpoint: double.endpoint, verifyTls: false, rootPassword: TEST_ROOT_PASSWORD });
  /** A create request as the provider sends it for a relay (test/engine/deploy.test.ts checks the provider really sends this). */
  const relayVm = (vmid: number): Record<string, string> => ({
    vmid: String(vmid),
    name: "relay-test",
    bios: "ovmf",
    machine: "q35",
    boot: "order=ide2",
    ide2: "file=local:iso/relay-Test-000000000000-00000000.iso,media=cdrom,",
    net0: "model=virtio,bridge=vmbr0,firewall=0,macaddr=BC:24:11:00:00:01,tag=100",
    serial0: "socket",
    vga: "memory=16,type=serial0",
    tags: "diskless-relay;exit",
    cores: "1",
    sockets: "1",
    memory: "1024",
    agent: "enabled=0,fstrim_cloned_disks=0,type=virtio",
    ostype: "l26",
    onboot: "1",
    description: "diskless Tor relay",
    rng0: "source=/dev/urandom,max_bytes=1024,period=1000",
  });
  const refusal = (promise: Promise<unknown>) => promise.then(() => "accepted", (err: Error) => err.message);

  beforeAll(async () => {
    double = await ProxmoxDoubleProcess.start(dir, TEST_API_TOKEN, { rootPassword: TEST_ROOT_PASSWORD, taskSeconds: 0.3 });
    mkdirSync(join(dir, "files"));
    writeFileSync(iso, "an ISO");
    await uploadIso(token(), "pve1", "local", iso);
  }, 60_000);
  afterAll(() => double?.stop());

  it("takes a relay's VM as the provider sends it (the positive control)", async () => {
    expect(await refusal(double.api("POST", "/nodes/pve1/qemu", relayVm(9000)))).toBe("accepted");
  });

  it.each([
    ["an unknown parameter", { scsi99: "local-lvm:8" }, "scsi99", /not defined in schema/],
    ["net0 without a model", { net0: "bridge=vmbr0,macaddr=BC:24:11:00:00:01" }, "net0", /model: property is missing/],
    ["net0 with a multicast MAC", { net0: "model=virtio,bridge=vmbr0,macaddr=01:24:11:00:00:01" }, "net0", /macaddr/],
    ["net0 with VLAN tag 4095", { net0: "model=virtio,bridge=vmbr0,tag=4095" }, "net0", /tag/],
    ["ide2 with an unknown option", { ide2: "local:iso/x.iso,media=cdrom,bogus=1" }, "ide2", /bogus/],
    ["amd-sev without a type", { "amd-sev": "no-debug=1" }, "amd-sev", /type: property is missing/],
    ["amd-sev of an unknown type", { "amd-sev": "type=tdx" }, "amd-sev", /enumeration/],
    ["amd-sev with an unknown flag", { "amd-sev": "type=snp,debug=1" }, "amd-sev", /debug: property is not defined/],
    ["a tag with a space-less bad character", { tags: "diskless-relay;ex!t" }, "tags", /invalid characters in tag 'ex!t'/],
    ["boot order naming a disk that is no device", { boot: "order=ide2;cdrom" }, "boot", /not a valid boot device/],
    ["a name that is not a DNS name", { name: "relay_test" }, "name", /valid DNS name/],
    ["a VMID below 100", { vmid: "99" }, "vmid", /valid VM ID/],
    ["no VMID at all", { vmid: undefined }, "vmid", /property is missing and it is not optional/],
    ["zero cores", { cores: "0" }, "cores", /minimum value of 1/],
    ["an oversized description", { description: "x".repeat(8193) }, "description", /8192/],
    ["rng0 from a source RNG.pm does not list", { rng0: "source=/dev/zero" }, "rng0", /enumeration/],
    ["rng0 without a source", { rng0: "max_bytes=1024" }, "rng0", /source: property is missing/],
    ["rng0 with a rate that is no integer", { rng0: "/dev/urandom,max_bytes=1k" }, "rng0", /max_bytes: type check \('integer'\) failed/],
    ["rng0 with an option RNG.pm lacks", { rng0: "/dev/urandom,rate=5" }, "rng0", /rate: property is not defined/],
  ])("refuses %s", async (_what, change, param, message) => {
    const form = Object.fromEntries(Object.entries({ ...relayVm(9001), ...change }).filter(([, value]) => value !== undefined)) as Record<string, string>;
    const error = await refusal(double.api("POST", "/nodes/pve1/qemu", form));
    expect(error).toContain("400");
    expect(JSON.parse(error.slice(error.indexOf("{"))).errors[param]).toMatch(message);
  });

  it("shuts a VM down with forceStop and a timeout, as the provider's delete and the rollback's restart ask, and refuses malformed values", async () => {
    expect(await refusal(double.api("POST", "/nodes/pve1/qemu", relayVm(9010)))).toBe("accepted");
    await double.waitForTask((await double.api("POST", "/nodes/pve1/qemu/9010/status/start")) as string);
    expect(await refusal(double.api("POST", "/nodes/pve1/qemu/9010/status/shutdown", { forceStop: "1", timeout: "-1" }))).toMatch(/400/);
    expect(await refusal(double.api("POST", "/nodes/pve1/qemu/9010/status/shutdown", { forceStop: "maybe", timeout: "60" }))).toMatch(/400/);
    expect(await refusal(double.api("POST", "/nodes/pve1/qemu/9010/status/shutdown", { force: "1" }))).toMatch(/400/);
    expect(await vmState(token(), "pve1", 9010)).toBe("running");
    const before = double.requests().length;
    await bootIso(token(), "pve1", 9010, "local:iso/relay-Test-000000000000-00000000.iso");
    const calls = double.requests().slice(before).filter((r) => r.method === "POST" && r.path.includes("/status/"));
    expect(calls.map((r) => [r.path, r.form])).toEqual([
      ["/nodes/pve1/qemu/9010/status/shutdown", { forceStop: "1", timeout: "60" }],
      ["/nodes/pve1/qemu/9010/status/start", {}],
    ]);
    expect(await vmState(token(), "pve1", 9010)).toBe("running");
  });

  it("refuses a VM whose CD-ROM names an ISO the storage does not hold", async () => {
    expect(await refusal(double.api("POST", "/nodes/pve1/qemu", { ...relayVm(9002), ide2: "local:iso/missing.iso,media=cdrom" }))).toMatch(/volume 'local:iso\/missing.iso' does not exist/);
  });

  it("lets only root@pam with its password set args or amd-sev: an API token is refused, even root@pam's", async () => {
    const snp = { "amd-sev": "type=snp,no-debug=1", args: "-kernel /var/lib/vz/template/iso/x.efi.img" };
    expect(await refusal(double.api("POST", "/nodes/pve1/qemu", { ...relayVm(9003), ...snp }))).toMatch(/403 .*only root can set '(args|amd-sev)' config/);
    expect(await refusal(double.api("PUT", "/nodes/pve1/qemu/9000/config", { args: snp.args }))).toMatch(/only root can set 'args' config/);
    // The program's client logs in with the password and sets args on a rollback.
    await bootIso(root(), "pve1", 9000, "local:iso/relay-Test-000000000000-00000000.iso", "-kernel /var/lib/vz/template/iso/relay-Test-000000000000-00000000.iso");
    expect(((await double.api("GET", "/nodes/pve1/qemu/9000/config")) as Record<string, string>).args).toBe("-kernel /var/lib/vz/template/iso/relay-Test-000000000000-00000000.iso");
    expect(JSON.stringify(double.requests())).not.toContain(TEST_ROOT_PASSWORD);
  });

  it("refuses a config update carrying a stale digest", async () => {
    const { digest } = (await double.api("GET", "/nodes/pve1/qemu/9000/config")) as { digest: string };
    expect(await refusal(double.api("PUT", "/nodes/pve1/qemu/9000/config", { description: "one", digest }))).toBe("accepted");
    expect(await refusal(double.api("PUT", "/nodes/pve1/qemu/9000/config", { description: "two", digest }))).toMatch(/detected modified configuration/);
  });

  it("refuses uploads of other content types and of ISO content without an .iso or .img name", async () => {
    const other = join(dir, "files", "relay.efi");
    writeFileSync(other, "a UKI");
    expect(await refusal(uploadIso(token(), "pve1", "local", other))).toMatch(/400 .*Parameter verification failed/);
    expect(await refusal(uploadIso(token(), "pve1", "local", other, "relay.efi.img"))).toBe("accepted");
  });

  it("runs tasks for a while, and an upload that fails fails the client with Proxmox's exit status", async () => {
    await double.failNext("imgcopy", "copy failed: No space left on device");
    expect(await refusal(uploadIso(token(), "pve1", "local", iso, "relay-Test-000000000000-11111111.iso"))).toMatch(/ended with "copy failed: No space left on device"/);
    const volumes = (await double.api("GET", "/nodes/pve1/storage/local/content")) as { volid: string }[];
    expect(volumes.map((v) => v.volid)).not.toContain("local:iso/relay-Test-000000000000-11111111.iso");
    const upid = (await double.api("POST", "/nodes/pve1/qemu/9000/status/start")) as string;
    expect(((await double.api("GET", `/nodes/pve1/tasks/${encodeURIComponent(upid)}/status`)) as { status: string }).status).toBe("running");
  });

  it("fails a start that fails, and the VM stays stopped", async () => {
    await new Promise((resolve) => setTimeout(resolve, 500));
    await double.failNext("qmstart", "start failed: QEMU exited with code 1", "9000");
    expect(await refusal(bootIso(token(), "pve1", 9000, "local:iso/relay-Test-000000000000-00000000.iso"))).toMatch(/ended with "start failed: QEMU exited with code 1"/);
    expect(await vmState(token(), "pve1", 9000)).toBe("stopped");
  });

  it("fails the start of an SNP VM asking for kernel hashes from Proxmox's own firmware, as QEMU does; with the relay's firmware it starts", async () => {
    const uki = join(dir, "files", "relay.efi");
    await uploadIso(token(), "pve1", "local", uki, "relay-Test-000000000000-00000000.efi.img");
    await uploadIso(token(), "pve1", "local", uki, "ovmf-amdsev-0000000000000000.img");
    const snp = { "amd-sev": "type=snp,allow-smt=0,kernel-hashes=1,no-debug=1,no-key-sharing=0", args: "-kernel /var/lib/vz/template/iso/relay-Test-000000000000-00000000.efi.img" };
    await double.api("POST", "/nodes/pve1/qemu", { ...relayVm(9004), ...snp }, TEST_ROOT_PASSWORD);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await refusal(bootIso(root(), "pve1", 9004, "local:iso/relay-Test-000000000000-00000000.iso"))).toMatch(/guest firmware hashes table area is invalid/);
    // A -bios that names a file the ISO directory lacks fails too; the uploaded one starts.
    expect(await refusal(bootIso(root(), "pve1", 9004, "local:iso/relay-Test-000000000000-00000000.iso", `-bios /var/lib/vz/template/iso/ovmf-amdsev-1111111111111111.img ${snp.args}`))).toMatch(/could not open/);
    await bootIso(root(), "pve1", 9004, "local:iso/relay-Test-000000000000-00000000.iso", `-bios /var/lib/vz/template/iso/ovmf-amdsev-0000000000000000.img ${snp.args}`);
    expect(await vmState(token(), "pve1", 9004)).toBe("running");
  });
});
