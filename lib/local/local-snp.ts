/**
 * The local stack's stand-in for SEV-SNP hardware: the launch measurement a
 * relay VM would get, computed from the UKI inside the very ISO QEMU boots,
 * and the simulated AMD secure processor (`snp-simulator`, TEST ONLY, see
 * tools/broker/README.md) that signs reports carrying it, reached by the
 * guest through a virtio-serial port (lib/local/qemu.ts).
 * I/O: runs xorriso and mtools, starts and stops snp-simulator.
 */
import { spawn } from "node:child_process";
import { chmodSync, closeSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { alive, commandLineOf } from "../core/pid-file";
import { runTool, withPrivateTmpDir } from "../core/run";
import { expectedLaunchMeasurement } from "../snp/launch-digest";
import { VCPU_SIGNATURES, vcpuSignatureForType } from "../snp/vcpu-types";
import { setTimeout as sleep } from "node:timers/promises";

/** Where the ISO keeps the EFI system partition, and where in it the UKI is (images/build-iso.sh). */
const ISO_ESP_PATH = "/esp.img";
const ESP_UKI_PATH = "::/EFI/BOOT/BOOTX64.EFI";
/** The chain file `snp-simulator init` writes last: its presence means the directory is complete. */
const SIMULATOR_CHAIN_FILE = "ark-ask.pem";

const simulatorPidFile = (runDir: string) => join(runDir, "snp-simulator.pid");
/** The simulator's socket in a VM's run directory: QEMU's virtio-serial chardev connects to it. */
export const snpSocketOf = (runDir: string) => join(runDir, "snp.sock");
export const snpLogOf = (runDir: string) => join(runDir, "snp-simulator.log");

/**
 * Extracts the UKI the ISO boots into `outFile` (0600: outside broker mode
 * the UKI carries the relay's keys) and returns its bytes.
 */
/** SNP guest policy: SMT, MIGRATE_MA and DEBUG clear (bits 16, 18, 19), the reserved bit 17 set. */
const DEFAULT_GUEST_POLICY = "0x20000";

export function ukiFromIso(iso: string, outFile: string): Buffer {
  return withPrivateTmpDir("uki-from-iso", (dir) => {
    const esp = join(dir, "esp.img");
    const uki = join(dir, "uki.efi");
    // Absolute: xorriso gives some relative addresses a meaning of their own (stdio:, mmc:).
    runTool("xorriso", ["-osirrox", "on", "-indev", resolve(iso), "-extract", ISO_ESP_PATH, esp], { what: `extracting ${ISO_ESP_PATH} from ${iso}` });
    if (!existsSync(esp)) throw new Error(`${iso} has no ${ISO_ESP_PATH}: not an ISO made by images/build-iso.sh`);
    // -n: never ask before overwriting a Unix file (there is none in the fresh directory anyway).
    runTool("mcopy", ["-n", "-i", esp, ESP_UKI_PATH, uki], { what: `copying ${ESP_UKI_PATH} out of the ISO's EFI system partition` });
    chmodSync(uki, 0o600);
    copyFileSync(uki, outFile);
    chmodSync(outFile, 0o600);
    return readFileSync(outFile);
  });
}

export interface LocalLaunchInput {
  /** The ISO the VM boots. */
  iso: string;
  /** The AmdSevX64 OVMF build a real SNP launch would use. */
  ovmf: string;
  vcpus: number;
  vcpuType: string;
}

/**
 * The MEASUREMENT (96 hex digits) SNP hardware would report for a VM booting
 * this ISO: computed as cli/steps/measure-launch.ts computes the published
 * value, but from the UKI extracted from the ISO itself, so that any byte
 * changed in the booted image changes it.
 */
export function localLaunchMeasurement(input: LocalLaunchInput): string {
  const kernel = withPrivateTmpDir("launch-measurement", (dir) => ukiFromIso(input.iso, join(dir, "uki.efi")));
  return ukiLaunchMeasurement({ ...input, kernel });
}

/** The same, for a UKI already extracted (the one a direct-boot VM is given as -kernel). */
export function ukiLaunchMeasurement(input: Omit<LocalLaunchInput, "iso"> & { kernel: Buffer }): string {
  return expectedLaunchMeasurement({ ovmf: readFileSync(input.ovmf), kernel: input.kernel, vcpus: input.vcpus, vcpuType: input.vcpuType });
}

/**
 * The vCPU model this machine's QEMU calls `vcpuType`: the name itself if
 * QEMU knows it, else a model QEMU knows with the same family, model and
 * stepping (what the measurement signs into each VMSA). QEMU 7.2 has no
 * EPYC-v4, whose signature is EPYC's.
 */
export function localCpuModel(vcpuType: string, known: string[]): string {
  if (known.includes(vcpuType)) return vcpuType;
  const signature = vcpuSignatureForType(vcpuType);
  const same = known.find((model) => VCPU_SIGNATURES[model] === signature);
  if (!same) throw new Error(`this QEMU knows no vCPU model with ${vcpuType}'s signature (0x${signature.toString(16)}); install a newer QEMU`);
  return same;
}

/** The vCPU models this machine's QEMU knows (qemu-system-x86_64 -cpu help). */
export function qemuCpuModels(): string[] {
  return runTool("qemu-system-x86_64", ["-cpu", "help"], { what: "listing QEMU's vCPU models" })
    .split("\n")
    .flatMap((line) => /^x86 (\S+)/.exec(line)?.slice(1) ?? []);
}


const isSocket = (path: string) => {
  try {
    return lstatSync(path).isSocket();
  } catch {
    return false;
  }
};

/** The Linux limit on a unix socket's path (sun_path, NUL included). */
const MAX_SOCKET_PATH = 107;

/**
 * Makes the simulator's test-only chain in `dir` unless it is there. Made in
 * a sibling directory and renamed into place, so two VMs starting at once
 * never see half a chain.
 */
function ensureSimulatorChain(dir: string): void {
  if (existsSync(join(dir, SIMULATOR_CHAIN_FILE))) return;
  mkdirSync(dirname(dir), { recursive: true });
  const fresh = mkdtempSync(`${dir}.init-`);
  try {
    runTool("snp-simulator", ["init", "--out", fresh], { what: "making the simulated secure processor's test-only chain" });
    try {
      renameSync(fresh, dir);
    } catch (err) {
      // Another start won the race (or the directory holds something else).
      if (!existsSync(join(dir, SIMULATOR_CHAIN_FILE))) throw new Error(`cannot put the simulator's chain into ${dir}: ${(err as Error).message}`);
    }
  } finally {
    rmSync(fresh, { recursive: true, force: true });
  }
}

export interface SnpSimulatorOptions {
  /** The simulator's chain directory (`snp-simulator init --out`); made on first use. */
  dir: string;
  /** The unix socket to serve on, in the VM's run directory (which also gets the pid file). */
  socket: string;
  /** 96 hex digits. */
  measurement: string;
  /** Guest policy, hex. Default 0x20000: SMT off, migration agent off, debug off (bit 17 is reserved, always 1), what relays' sev.allowSmt: false asks for; QEMU's own default, 0x30000, allows SMT. */
  policy?: string;
  logFile: string;
}

/**
 * Starts `snp-simulator serve` detached (it outlives the step that starts
 * it, as QEMU does), records its pid beside the socket and returns once the
 * socket is there.
 */
export async function startSnpSimulator(options: SnpSimulatorOptions): Promise<number> {
  const { socket } = options;
  if (!/^[0-9a-f]{96}$/.test(options.measurement)) throw new Error(`a launch measurement is 96 lowercase hex digits, got "${options.measurement}"`);
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) throw new Error(`the simulator's socket path is longer than ${MAX_SOCKET_PATH} bytes: ${socket}`);
  const runDir = dirname(socket);
  await stopSnpSimulator(runDir);
  ensureSimulatorChain(options.dir);
  mkdirSync(runDir, { recursive: true, mode: 0o700 });
  const args = ["serve", "--dir", options.dir, "--socket", socket, "--measurement", options.measurement, "--policy", options.policy ?? DEFAULT_GUEST_POLICY];
  const log = openSync(options.logFile, "a", 0o600);
  let exited: number | null | undefined;
  let pid: number | undefined;
  try {
    const child = spawn("snp-simulator", args, { detached: true, stdio: ["ignore", log, log] });
    child.on("error", () => undefined);
    child.on("exit", (code, signal) => (exited = code ?? (signal ? -1 : null)));
    child.unref();
    pid = child.pid;
  } finally {
    closeSync(log);
  }
  if (pid === undefined) throw new Error("cannot run snp-simulator (is it on PATH? scripts/setup.sh builds it)");
  writeFileSync(simulatorPidFile(runDir), `${pid}\n`, { mode: 0o600 });
  const logTail = () => (existsSync(options.logFile) ? readFileSync(options.logFile, "utf8").trimEnd().split("\n").slice(-10).join("\n") : "");
  for (let i = 0; i < 300; i++) {
    if (isSocket(socket)) return pid;
    if (exited !== undefined || !alive(pid)) {
      rmSync(simulatorPidFile(runDir), { force: true });
      throw new Error(`snp-simulator exited before listening on ${socket}:\n${logTail()}`);
    }
    await sleep(50);
  }
  await stopSnpSimulator(runDir);
  throw new Error(`snp-simulator did not listen on ${socket} within 15 s:\n${logTail()}`);
}

/** The running simulator's arguments, if `pid` is one (and not a process that reused its number). */
function simulatorArgs(pid: number): string[] | undefined {
  const argv = commandLineOf(pid);
  return argv && basename(argv[0] ?? "") === "snp-simulator" && argv[1] === "serve" ? argv : undefined;
}

/** Stops the simulator of the VM in `runDir` (SIGTERM, then SIGKILL) and removes its socket and pid file. */
export async function stopSnpSimulator(runDir: string): Promise<void> {
  const pidFile = simulatorPidFile(runDir);
  let socket = snpSocketOf(runDir);
  if (existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, "utf8").trim());
    const args = pid > 0 ? simulatorArgs(pid) : undefined;
    if (args) {
      const at = args.indexOf("--socket");
      if (at > 0 && args[at + 1]) socket = args[at + 1]!;
      process.kill(pid, "SIGTERM");
      // It waits for open connections (QEMU's) to close: stop QEMU first.
      for (let i = 0; i < 50 && alive(pid) && simulatorArgs(pid); i++) await sleep(100);
      if (alive(pid) && simulatorArgs(pid)) process.kill(pid, "SIGKILL");
      for (let i = 0; i < 50 && alive(pid) && simulatorArgs(pid); i++) await sleep(20);
    }
    rmSync(pidFile, { force: true });
  }
  if (isSocket(socket)) rmSync(socket, { force: true });
}
