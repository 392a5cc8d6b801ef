/**
 * The local stack's simulated SEV-SNP secure processor: the virtio-serial
 * wiring of QEMU, the launch measurement of the UKI inside the ISO a VM
 * boots (real ISOs by images/build-iso.sh, the public AmdSevX64 OVMF
 * fixture), the real snp-simulator answering through its socket, and the
 * start-local-vm/stop-local-vm steps running it beside QEMU.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { localLaunchMeasurement, snpSocketOf, startSnpSimulator, stopSnpSimulator, ukiFromIso } from "../../lib/local/local-snp";
import { runningPid } from "../../lib/local/local-vm";
import { snpKvmArguments } from "../../lib/proxmox/proxmox-snp";
import { effectiveSnpLaunch, qemuServerSnpCommand } from "../support/qemu-server-snp";
import { LOCAL_SNP_FIRMWARE, qemuRelayArgs, SNP_SERIAL_PORT, type QemuRelayMachine } from "../../lib/local/qemu";
import { vcpuSignatureForType } from "../../lib/snp/vcpu-types";
import { parseAttestationReport, REPORT_SIZE } from "../../lib/snp/report";
import { parseStepOutput, type RelayTarget } from "../../lib/steps/steps";
import { fixturePath } from "../support/snp-fixtures";
import { runStep } from "../support/images";
import { repoRoot, toolEnv } from "../support/pulumi";
import { hmp } from "../support/images";
import { privateTmpDir } from "../support/tmp";

const AMD_SEV_OVMF = fixturePath("ovmf_AmdSev_suffix.bin");
const VCPU_TYPE = "EPYC-v4";

/** Runs `fn` with the project's tools (snp-simulator) on PATH, as the steps have them, until its promise settles. */
async function withToolPath<T>(fn: () => Promise<T>): Promise<T> {
  const saved = process.env.PATH;
  process.env.PATH = toolEnv().PATH;
  try {
    return await fn();
  } finally {
    process.env.PATH = saved;
  }
}

/** An ISO as images/build-iso.sh makes it, around `uki` (any bytes standing in for a UKI). */
function buildIso(dir: string, name: string, uki: Buffer): string {
  const ukiFile = join(dir, `${name}.efi`);
  const label = join(dir, "relay.json");
  writeFileSync(ukiFile, uki);
  writeFileSync(label, JSON.stringify({ relay: name }) + "\n");
  const iso = join(dir, `${name}.iso`);
  execFileSync("bash", [join(repoRoot, "images/build-iso.sh"), ukiFile, label, iso], { env: toolEnv(), stdio: "pipe" });
  return iso;
}

/** Is `pid` a process at all (a zombie counts as gone)? */
function running(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** One request line to the simulator's socket, one answer line back. */
function askSimulator(socket: string, request: string): Promise<any> {
  return new Promise((resolve, reject) => {
    const connection = createConnection(socket);
    let answer = "";
    connection.setEncoding("utf8");
    connection.setTimeout(30_000, () => connection.destroy(new Error("no answer from the simulator within 30 s")));
    connection.on("connect", () => connection.write(request + "\n"));
    connection.on("data", (chunk: string) => {
      answer += chunk;
      const end = answer.indexOf("\n");
      if (end >= 0) {
        connection.end();
        resolve(JSON.parse(answer.slice(0, end)));
      }
    });
    connection.on("error", reject);
  });
}


describe("QEMU's virtio-serial port to the simulated secure processor", () => {
  const machine: QemuRelayMachine = {
    iso: "/b/relay.iso",
    varsFile: "/r/OVMF_VARS.fd",
    memoryMiB: 1024,
    cores: 2,
    mac: "52:54:00:00:00:01",
    network: { kind: "user", hostForwards: [{ host: 2222, guest: 22 }], guestAddress: "10.0.2.15" },
    serialLog: "/r/console.log",
    monitorSocket: "/r/monitor.sock",
  };
  const optionsOf = (args: string[], flag: string) => args.flatMap((arg, i) => (args[i - 1] === flag ? [arg] : []));

  it("names the port org.diskless-relays.snp and wires it to a client chardev on the socket", () => {
    const args = qemuRelayArgs({ ...machine, snpReportSocket: "/run/relay,1/snp.sock" });
    const chardevs = optionsOf(args, "-chardev");
    expect(chardevs).toHaveLength(1);
    const chardev = Object.fromEntries(chardevs[0]!.replaceAll(",,", "\u0000").split(",").slice(1).map((kv) => kv.replaceAll("\u0000", ",").split("=")));
    expect(chardevs[0]).toMatch(/^socket,/);
    // A client: QEMU connects to the simulator, which listens.
    expect(chardev).not.toHaveProperty("server");
    expect(chardev.path).toBe("/run/relay,1/snp.sock");
    const devices = optionsOf(args, "-device");
    expect(devices).toContain("virtio-serial-pci,id=vser0");
    const port = devices.find((d) => d.startsWith("virtserialport,"));
    expect(port).toBe(`virtserialport,bus=vser0.0,chardev=${chardev.id},name=org.diskless-relays.snp`);
    expect(SNP_SERIAL_PORT).toBe("org.diskless-relays.snp");
  });

  it("adds exactly these six arguments, after the NIC, and nothing without a socket", () => {
    const without = qemuRelayArgs(machine);
    expect(without.join(" ")).not.toMatch(/chardev|virtio-serial|virtserialport/);
    const withSnp = qemuRelayArgs({ ...machine, snpReportSocket: "/r/snp.sock" });
    const at = withSnp.indexOf("-chardev");
    expect(withSnp.slice(at, at + 6)).toEqual([
      "-chardev", "socket,id=snp,path=/r/snp.sock,reconnect=1",
      "-device", "virtio-serial-pci,id=vser0",
      "-device", "virtserialport,bus=vser0.0,chardev=snp,name=org.diskless-relays.snp",
    ]);
    expect(withSnp[at - 1]).toMatch(/^virtio-net-pci,/);
    expect([...withSnp.slice(0, at), ...withSnp.slice(at + 6)]).toEqual(without);
  });
});

describe("the launch measurement of the UKI inside the ISO a VM boots", () => {
  const dir = privateTmpDir("local-snp-measure");
  const uki = randomBytes(300 * 1024 + 123);
  let iso: string;
  beforeAll(() => {
    iso = buildIso(dir, "one", uki);
  }, 120_000);

  it("ukiFromIso gives back exactly the UKI the ISO was built from, privately", () => {
    const out = join(dir, "extracted.efi");
    const bytes = ukiFromIso(iso, out);
    expect(bytes.equals(uki)).toBe(true);
    expect(readFileSync(out).equals(uki)).toBe(true);
    expect(statSync(out).mode & 0o777).toBe(0o600);
  }, 60_000);

  it("equals what the measure-launch step publishes for the same UKI, and changes with one byte of it", () => {
    const measured = localLaunchMeasurement({ iso, ovmf: AMD_SEV_OVMF, vcpus: 2, vcpuType: VCPU_TYPE });
    expect(measured).toMatch(/^[0-9a-f]{96}$/);

    const published = runStep("measure-launch", {
      relay: "snp-local",
      imageDigest: "0".repeat(64),
      uki: join(dir, "one.efi"),
      ovmf: AMD_SEV_OVMF,
      vcpus: 2,
      vcpuType: VCPU_TYPE,
      policy: "0x20000",
      out: join(dir, "measurement.json"),
    });
    expect(published.status, published.stderr).toBe(0);
    expect(parseStepOutput("measure-launch", published.stdout)).toBe(measured);
    expect(JSON.parse(readFileSync(join(dir, "measurement.json"), "utf8")).measurement).toBe(measured);

    const tampered = Buffer.from(uki);
    const at = tampered.length - 1000;
    tampered.writeUInt8(tampered.readUInt8(at) ^ 0x01, at);
    const otherIso = buildIso(dir, "tampered", tampered);
    expect(localLaunchMeasurement({ iso: otherIso, ovmf: AMD_SEV_OVMF, vcpus: 2, vcpuType: VCPU_TYPE })).not.toBe(measured);
    // The vCPU count is measured too (one VMSA per vCPU).
    expect(localLaunchMeasurement({ iso, ovmf: AMD_SEV_OVMF, vcpus: 1, vcpuType: VCPU_TYPE })).not.toBe(measured);
  }, 120_000);
});

describe("the simulated secure processor (snp-simulator) through its socket", () => {
  const dir = privateTmpDir("local-snp-sim");
  const runDir = join(dir, "run");
  const socket = snpSocketOf(runDir);
  const chainDir = join(dir, "simulator");
  const measurement = randomBytes(48).toString("hex");
  let pid: number;
  beforeAll(async () => {
    mkdirSync(runDir, { mode: 0o700 });
    pid = await withToolPath(() => startSnpSimulator({ dir: chainDir, socket, measurement, logFile: join(runDir, "snp-simulator.log") }));
  }, 120_000);
  afterAll(() => stopSnpSimulator(runDir));

  it("made its test-only chain once, and listens on the socket", () => {
    expect(statSync(join(chainDir, "ark-ask.pem")).isFile()).toBe(true);
    expect(statSync(socket).isSocket()).toBe(true);
    expect(running(pid)).toBe(true);
  });

  it("answers a report request with a report carrying that REPORT_DATA and the measurement", async () => {
    const reportData = randomBytes(64);
    const answer = await askSimulator(socket, JSON.stringify({ reportData: reportData.toString("base64") }));
    expect(answer.error).toBeUndefined();
    const report = Buffer.from(answer.report, "base64");
    expect(report.length).toBe(REPORT_SIZE);
    expect(report.subarray(0x50, 0x90).equals(reportData)).toBe(true);
    expect(report.subarray(0x90, 0xc0).toString("hex")).toBe(measurement);
    const parsed = parseAttestationReport(report);
    expect(parsed.reportData.equals(reportData)).toBe(true);
    expect(parsed.measurement.toString("hex")).toBe(measurement);
    // The launcher's default: SMT, migration agent and debug off, as relays' sev.allowSmt: false asks.
    expect(parsed.policy).toBe(0x20000n);
    expect(Buffer.from(answer.certs, "base64").length).toBeGreaterThan(0);
  }, 60_000);

  it("is stopped with no process and no socket left, and a restart reuses its chain", async () => {
    await stopSnpSimulator(runDir);
    expect(running(pid)).toBe(false);
    expect(existsSync(socket)).toBe(false);
    expect(existsSync(join(runDir, "snp-simulator.pid"))).toBe(false);

    const chain = readFileSync(join(chainDir, "ark-ask.pem"));
    pid = await withToolPath(() => startSnpSimulator({ dir: chainDir, socket, measurement, policy: "0x30000", logFile: join(runDir, "snp-simulator.log") }));
    expect(readFileSync(join(chainDir, "ark-ask.pem")).equals(chain)).toBe(true);
    await stopSnpSimulator(runDir);
    expect(running(pid)).toBe(false);
    expect(existsSync(socket)).toBe(false);
  }, 60_000);
});

describe("start-local-vm with a simulated secure processor", () => {
  const dir = privateTmpDir("local-snp-vm");
  let iso: string;
  let target: Extract<RelayTarget, { kind: "qemu" }>;
  beforeAll(() => {
    // OVMF will not find a kernel in these bytes; QEMU runs all the same, which is all this shows.
    iso = buildIso(dir, "vm", randomBytes(200 * 1024));
    target = {
      kind: "qemu",
      runDir: join(dir, "run"),
      mac: "52:54:00:12:34:77",
      memoryMiB: 256,
      cores: 2,
      network: { kind: "user", forwards: [], guestAddress: "10.0.2.15" },
      snp: { simulatorDir: join(dir, "simulator"), ovmf: AMD_SEV_OVMF, vcpuType: VCPU_TYPE },
    };
  }, 120_000);
  afterAll(() => {
    if (target) runStep("stop-local-vm", { target, iso });
  });

  it("starts the simulator with the ISO's measurement, QEMU connected to it, and stops both", async () => {
    const started = runStep("start-local-vm", { target, iso });
    expect(started.status, started.stderr).toBe(0);
    const expected = localLaunchMeasurement({ iso, ovmf: AMD_SEV_OVMF, vcpus: target.cores, vcpuType: VCPU_TYPE });
    const logged = started.stdout.split("\n").filter((line) => /measurement/.test(line));
    expect(logged).toHaveLength(1);
    expect(logged[0]).toContain(expected);

    const socket = snpSocketOf(target.runDir);
    const qemuPid = runningPid(target.runDir)!;
    const simulatorPid = Number(readFileSync(join(target.runDir, "snp-simulator.pid"), "utf8"));
    expect(running(qemuPid)).toBe(true);
    expect(running(simulatorPid)).toBe(true);
    const argv = readFileSync(`/proc/${qemuPid}/cmdline`, "utf8").split("\0");
    expect(argv).toContain(`virtserialport,bus=vser0.0,chardev=snp,name=${SNP_SERIAL_PORT}`);

    // It boots as Proxmox VE launches an SNP relay: qemu-server's rules applied to the VM config the
    // provider creates for the same relay, argument by argument; minus the SNP hardware, with a firmware
    // this machine can run in place of the pinned AmdSevX64 build.
    const proxmox = effectiveSnpLaunch(
      qemuServerSnpCommand(
        { bios: "ovmf", machine: "q35", cores: target.cores, sockets: 1, cpu: VCPU_TYPE, memory: String(target.memoryMiB), "amd-sev": "type=snp,allow-smt=0,kernel-hashes=1,no-debug=1,no-key-sharing=0", args: snpKvmArguments({ isoDir: "/var/lib/vz/template/iso", firmwareFile: "ovmf.img", ukiFile: "relay.efi.img" }) },
        { cbitpos: 51, reducedPhysBits: 1 },
      ),
    );
    const local = effectiveSnpLaunch(argv);
    const option = (list: string[], name: string) => list[list.indexOf(name) + 1];
    const proxmoxArgv = qemuServerSnpCommand({ cores: target.cores, sockets: 1, cpu: VCPU_TYPE, memory: String(target.memoryMiB), bios: "ovmf", "amd-sev": "type=snp" }, { cbitpos: 51, reducedPhysBits: 1 });
    expect(option(argv, "-smp")).toBe(option(proxmoxArgv, "-smp"));
    expect(option(argv, "-m")).toBe(option(proxmoxArgv, "-m"));
    expect(local.vcpus).toBe(proxmox.vcpus);
    // QEMU 7.2 names EPYC-v4 "EPYC": the same family, model and stepping, which is what the measurement signs.
    expect(vcpuSignatureForType(local.cpuModel)).toBe(vcpuSignatureForType(proxmox.cpuModel));
    expect(local.kernel).toBe(join(target.runDir, "relay.efi"));
    expect(proxmox.kernel).toMatch(/\.efi\.img$/);
    expect([local.append, local.initrd, proxmox.append, proxmox.initrd]).toEqual([undefined, undefined, undefined, undefined]);
    expect(local.firmware).toBe(LOCAL_SNP_FIRMWARE);
    // The SNP hardware is what the local machine lacks: Proxmox's launch has it, the local one not.
    expect(proxmox).toMatchObject({ kernelHashes: true, confidentialGuest: true, policy: "0x20000" });
    expect(local).toMatchObject({ kernelHashes: false, confidentialGuest: false });
    expect(argv.filter((arg) => /^-(drive|device)$/.test(arg)).length).toBeGreaterThan(0);
    expect(argv.some((arg) => arg.startsWith("if=pflash"))).toBe(false);
    // The measurement tool is fed the file QEMU boots: the UKI inside the ISO, and the pinned OVMF.
    const booted = readFileSync(local.kernel!);
    expect(booted.equals(ukiFromIso(iso, join(dir, "from-iso.efi")))).toBe(true);
    const published = runStep("measure-launch", { relay: "snp-local", imageDigest: "0".repeat(64), uki: local.kernel!, ovmf: AMD_SEV_OVMF, vcpus: target.cores, vcpuType: VCPU_TYPE, policy: "0x20000", out: join(dir, "published.json") });
    expect(parseStepOutput("measure-launch", published.stdout)).toBe(expected);
    // QEMU's chardev is connected to the simulator (a client that is not reads "filename=disconnected:unix:PATH").
    const chardevs = await hmp(join(target.runDir, "monitor.sock"), "info chardev");
    expect(chardevs).toMatch(/^snp: filename=unix:/m);
    expect(chardevs).not.toMatch(/^snp: filename=disconnected/m);

    // A second client gets an answer with the ISO's measurement while QEMU stays connected.
    const answer = await askSimulator(socket, JSON.stringify({ reportData: Buffer.alloc(64, 7).toString("base64") }));
    expect(parseAttestationReport(Buffer.from(answer.report, "base64")).measurement.toString("hex")).toBe(expected);

    const stopped = runStep("stop-local-vm", { target, iso });
    expect(stopped.status, stopped.stderr).toBe(0);
    expect(running(qemuPid)).toBe(false);
    expect(running(simulatorPid)).toBe(false);
    expect(existsSync(socket)).toBe(false);
    expect(existsSync(target.runDir)).toBe(false);
  }, 180_000);
});
