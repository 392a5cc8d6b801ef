/**
 * lib/proxmox/proxmox-snp.ts: the measured direct boot of an SNP relay on Proxmox VE
 * and the QEMU command line Proxmox VE makes of it. Expected values come from
 * qemu-server itself: its golden cfg2cmd test (test/fixtures/qemu-server) and
 * the policy rule as its source states it (CPUConfig.pm get_amd_sev_object).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { proxmoxRngs } from "../../lib/render/vm-rng";
import { qemuRelayArgs } from "../../lib/local/qemu";
import { qemuServerSnpPolicy, snpAmdSev, snpFirmwareFileName, snpKvmArguments, ukiFileName } from "../../lib/proxmox/proxmox-snp";
import { effectiveSnpLaunch, qemuServerSnpCommand, splitArgs } from "../support/qemu-server-snp";
import { repoRoot } from "../support/pulumi";

const fixture = (name: string) => readFileSync(join(repoRoot, "test", "fixtures", "qemu-server", name), "utf8");

/** A qemu-server .conf: `key: value` lines, # comments. */
function readConf(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split("\n")
      .filter((line) => line && !line.startsWith("#"))
      .map((line) => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 1).trim()]),
  );
}

/** The golden .cmd: one `-option 'value'` per line, single-quoted where Perl's shell quoting put quotes. */
function readCmd(text: string): string[] {
  return text
    .split("\n")
    .slice(1)
    .map((line) => line.trim().replace(/ \\$/, ""))
    .filter(Boolean)
    .flatMap((line) => {
      const at = line.indexOf(" ");
      return at < 0 ? [line] : [line.slice(0, at), line.slice(at + 1).replace(/^'(.*)'$/, "$1")];
    });
}

const valueOf = (argv: string[], option: string) => argv.filter((_, i) => argv[i - 1] === option);

describe("the QEMU command line qemu-server makes of an SNP VM", () => {
  const golden = readCmd(fixture("sev-snp.conf.cmd"));
  const ours = qemuServerSnpCommand(readConf(fixture("sev-snp.conf")), { cbitpos: 51, reducedPhysBits: 6 });

  it("matches qemu-server's own golden test, option by option, for what SNP measures", () => {
    for (const option of ["-bios", "-smp", "-m", "-object"]) expect(valueOf(ours, option), option).toEqual(valueOf(golden, option));
    // The vCPU model is what the measurement signs; qemu-server's flags on it (kvm64's +lahf_lm,+sep) are not modelled.
    expect(valueOf(ours, "-cpu")[0]!.split(",")[0]).toBe(valueOf(golden, "-cpu")[0]!.split(",")[0]);
    expect(valueOf(golden, "-machine")[0]).toContain("confidential-guest-support=sev0");
    expect(valueOf(ours, "-machine")[0]).toContain("confidential-guest-support=sev0");
  });

  it("sets the guest policy as CPUConfig.pm does: bit 17 always, 16 unless allow-smt=0, 19 unless no-debug=1", () => {
    expect(qemuServerSnpPolicy({ allowSmt: true, noDebug: false })).toBe("0xb0000");
    expect(qemuServerSnpPolicy({ allowSmt: true, noDebug: true })).toBe("0x30000");
    expect(qemuServerSnpPolicy({ allowSmt: false, noDebug: false })).toBe("0xa0000");
    expect(qemuServerSnpPolicy({ allowSmt: false, noDebug: true })).toBe("0x20000");
  });

  it("appends args last, so a relay's -bios replaces Proxmox's firmware and -kernel boots the UKI with its hashes measured", () => {
    const args = snpKvmArguments({ isoDir: "/var/lib/vz/template/iso", firmwareFile: snpFirmwareFileName("ab".repeat(32)), ukiFile: ukiFileName("relay-X-0123456789ab-01234567.iso") });
    // The form bpg's provider sends (its CustomAMDSEV key order), as Proxmox VE stores it.
    const config = { bios: "ovmf", machine: "q35", cores: 2, sockets: 1, cpu: "EPYC-v4", memory: "1024", "amd-sev": "type=snp,allow-smt=0,kernel-hashes=1,no-debug=1,no-key-sharing=0", args };
    const argv = qemuServerSnpCommand(config, { cbitpos: 51, reducedPhysBits: 1 });
    expect(argv.filter((arg) => arg === "-bios")).toHaveLength(2);
    expect(effectiveSnpLaunch(argv)).toEqual({
      firmware: "/var/lib/vz/template/iso/ovmf-amdsev-abababababababab.img",
      kernel: "/var/lib/vz/template/iso/relay-X-0123456789ab-01234567.efi.img",
      vcpus: 2,
      cpuModel: "EPYC-v4",
      policy: "0x20000",
      kernelHashes: true,
      confidentialGuest: true,
    });
    expect(snpAmdSev({ allowSmt: false, noDebug: true })).toEqual({ type: "snp", noDebug: true, allowSmt: false, kernelHashes: true, noKeySharing: false });
  });

  it("keeps the launch the same with the RNG every relay has (rng0), which adds a device SNP does not measure", () => {
    const args = snpKvmArguments({ isoDir: "/var/lib/vz/template/iso", firmwareFile: snpFirmwareFileName("ab".repeat(32)), ukiFile: ukiFileName("relay-X-0123456789ab-01234567.iso") });
    const config = { bios: "ovmf", machine: "q35", cores: 2, sockets: 1, cpu: "EPYC-v4", memory: "1024", "amd-sev": "type=snp,allow-smt=0,kernel-hashes=1,no-debug=1,no-key-sharing=0", args };
    const without = qemuServerSnpCommand(config, { cbitpos: 51, reducedPhysBits: 1 });
    const withRng = qemuServerSnpCommand({ ...config, rng0: "source=/dev/urandom,max_bytes=1024,period=1000" }, { cbitpos: 51, reducedPhysBits: 1 });
    expect(effectiveSnpLaunch(withRng)).toEqual(effectiveSnpLaunch(without));
    // RNG.pm's object and device (print_rng_object_commandline, print_rng_device_commandline).
    expect(valueOf(withRng, "-object")).toContain("rng-random,filename=/dev/urandom,id=rng0");
    expect(valueOf(withRng, "-device")).toEqual(["virtio-rng-pci,rng=rng0,max-bytes=1024,period=1000"]);
  });

  it("gives the local stack's QEMU the RNG qemu-server makes of a relay's rng0 (RNG.pm), and Proxmox VE that rng0", () => {
    const argv = qemuRelayArgs({ iso: "/b/r.iso", varsFile: "/r/vars.fd", memoryMiB: 512, cores: 1, mac: "52:54:00:00:00:01", network: { kind: "tap", ifname: "tap0" }, serialLog: "/r/c.log" });
    expect(valueOf(argv, "-object")).toEqual(["rng-random,filename=/dev/urandom,id=rng0"]);
    expect(valueOf(argv, "-device").filter((device) => device.startsWith("virtio-rng-pci"))).toEqual(["virtio-rng-pci,rng=rng0,max-bytes=1024,period=1000"]);
    // The device after the NIC: the NIC keeps its PCI slot.
    expect(argv.findIndex((arg) => arg.startsWith("virtio-rng-pci"))).toBeGreaterThan(argv.findIndex((arg) => arg.startsWith("virtio-net-pci")));
    expect(proxmoxRngs()).toEqual([{ source: "/dev/urandom", maxBytes: 1024, period: 1000 }]);
  });

  it("splits args as Text::ParseWords::shellwords does, and refuses paths a shell word could change", () => {
    expect(splitArgs(`-a 'b c' "d\\"e" f\\ g  `)).toEqual(["-a", "b c", 'd"e', "f g"]);
    expect(() => splitArgs("-a 'b")).toThrow(/unbalanced/);
    expect(() => snpKvmArguments({ isoDir: "/var/lib/vz/template iso", firmwareFile: "f.img", ukiFile: "u.img" })).toThrow(/not a plain absolute path/);
  });

  it("refuses a config that is not an SNP guest, or not on OVMF, as qemu-server does", () => {
    expect(() => qemuServerSnpCommand({ bios: "ovmf" }, { cbitpos: 51, reducedPhysBits: 1 })).toThrow(/no amd-sev/);
    expect(() => qemuServerSnpCommand({ bios: "seabios", "amd-sev": "type=snp" }, { cbitpos: 51, reducedPhysBits: 1 })).toThrow(/change the BIOS to OVMF/);
    expect(() => qemuServerSnpCommand({ bios: "ovmf", "amd-sev": "type=es" }, { cbitpos: 51, reducedPhysBits: 1 })).toThrow(/not snp/);
  });
});
