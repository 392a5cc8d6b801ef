/**
 * The local stack's relay machines: QEMU processes laid out as on Proxmox VE
 * (lib/local/qemu.ts), one run directory each (qemu.pid, console.log, monitor.sock,
 * the firmware's variables; with a simulated SEV-SNP secure processor, its
 * snp.sock, pid file and log, lib/local/local-snp.ts). I/O: starts and stops QEMU
 * (a clean ACPI shutdown first, as Proxmox VE's shutdown does) and the
 * simulator.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { localCpuModel, qemuCpuModels, snpLogOf, snpSocketOf, startSnpSimulator, stopSnpSimulator, ukiFromIso, ukiLaunchMeasurement } from "./local-snp";
import { ensureTap, inNetns } from "./netns";
import { holdsOpen, ownedPid } from "../core/pid-file";
import { CLEAN_SHUTDOWN_SECONDS, LOCAL_SNP_FIRMWARE, OVMF_VARS, qemuRelayArgs } from "./qemu";
import { runTool } from "../core/run";
import type { RelayTarget } from "../steps/steps";
import { setTimeout as sleep } from "node:timers/promises";

type QemuTarget = Extract<RelayTarget, { kind: "qemu" }>;

const pidFile = (runDir: string) => join(runDir, "qemu.pid");
/** An SNP relay's UKI, taken out of its ISO and booted as -kernel. */
const UKI_FILE = "relay.efi";
/** Beside the run directory, which a restart removes: the UKI waits there while the old VM stops. */
const ukiWaitDir = (runDir: string) => `${runDir}.uki`;
export const consoleLogOf = (runDir: string) => join(runDir, "console.log");

/**
 * The QEMU process running this relay, if any: the pid in its pid file, while
 * that process is the QEMU that wrote the file and holds it open
 * (lib/core/pid-file.ts says why).
 */
export function runningPid(runDir: string): number | undefined {
  return ownedPid(pidFile(runDir), (_argv, pid) => holdsOpen(pid, pidFile(runDir)));
}

/**
 * Beside the run directory (which a stop removes, and a rollback's restart
 * keeps): the generation of the machine the last `start-local-vm` step
 * started. The step's resource has the generation among its triggers, so a
 * VM that died since the last up is replaced, and so started, by the next.
 */
const generationFile = (runDir: string) => `${runDir}.generation`;

/**
 * The generation the relay's machine should have, judged at plan time: the
 * recorded one while its QEMU runs (or before it ever started), the next one
 * when it was started and is gone now (`gone`, with why).
 */
export function plannedGeneration(runDir: string): { generation: number; gone?: string } {
  let recorded: number;
  try {
    recorded = Number(readFileSync(generationFile(runDir), "utf8").trim());
  } catch {
    return { generation: 0 };
  }
  if (!Number.isSafeInteger(recorded) || recorded < 0) return { generation: 0 };
  if (runningPid(runDir) !== undefined) return { generation: recorded };
  return { generation: recorded + 1, gone: `the QEMU process of ${runDir} is gone since the last up` };
}

export function recordGeneration(runDir: string, generation: number): void {
  writeFileSync(generationFile(runDir), `${generation}\n`);
}

/** The machine resource is gone (its delete step): the next one starts from generation 0. */
export function forgetGeneration(runDir: string): void {
  rmSync(generationFile(runDir), { force: true });
}

const monitorOf = (runDir: string) => join(runDir, "monitor.sock");

/** One HMP command over a VM's monitor socket; the text QEMU answers. */
export function monitorCommand(socket: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const connection = createConnection(socket);
    let output = "";
    let sent = false;
    connection.setEncoding("utf8");
    connection.on("data", (chunk: string) => {
      output += chunk;
      // The banner's prompt, then the command's echo and output, then the next prompt.
      const prompts = output.split("(qemu)").length - 1;
      if (prompts === 1 && !sent) {
        sent = true;
        connection.write(command + "\n");
      }
      if (prompts >= 2) connection.end();
    });
    connection.on("end", () => resolve(output));
    connection.on("error", reject);
    setTimeout(() => connection.destroy(new Error(`no answer to ${command} within 10 s:\n${output}`)), 10_000).unref();
  });
}

export interface StopOptions {
  /** How long the guest gets to power off on the ACPI power button before QEMU is stopped hard. */
  cleanShutdownSeconds?: number;
}

/**
 * Stops the relay's QEMU, then its simulated secure processor if it has one,
 * and removes its run directory. First the ACPI power button (the monitor's
 * system_powerdown), as Proxmox VE's shutdown presses it: the relay stops tor,
 * whose connections close, and its agent pushes once more, then it powers off
 * and QEMU exits. A guest that has not powered off within the timeout is
 * stopped hard (SIGTERM, then SIGKILL). Says which it was.
 */
export async function stopLocalVm(runDir: string, options: StopOptions = {}): Promise<"clean" | "hard" | "not running"> {
  const pid = runningPid(runDir);
  let how: "clean" | "hard" | "not running" = "not running";
  if (pid !== undefined) {
    const stillOurs = () => runningPid(runDir) === pid;
    const seconds = options.cleanShutdownSeconds ?? CLEAN_SHUTDOWN_SECONDS;
    const pressed = existsSync(monitorOf(runDir)) && (await monitorCommand(monitorOf(runDir), "system_powerdown").then(() => true, () => false));
    if (pressed) for (let i = 0; i < seconds * 10 && stillOurs(); i++) await sleep(100);
    how = "clean";
    if (stillOurs()) {
      how = "hard";
      process.kill(pid, "SIGTERM");
      for (let i = 0; i < 100 && stillOurs(); i++) await sleep(100);
      if (stillOurs()) process.kill(pid, "SIGKILL");
    }
  }
  // After QEMU: the simulator waits for QEMU's connection to close before it exits.
  await stopSnpSimulator(runDir);
  rmSync(runDir, { recursive: true, force: true });
  return how;
}

/**
 * Boots `iso` as the relay's machine, replacing whatever ran there; returns
 * QEMU's pid. With `target.snp`, a simulated secure processor reporting the
 * launch measurement of this very ISO listens first on the VM's virtio-serial
 * port; `log` is told which measurement it reports.
 */
export async function startLocalVm(target: QemuTarget, iso: string, log: (line: string) => void = () => undefined): Promise<number> {
  const { snp } = target;
  // Measured before anything is stopped: an ISO that cannot be measured leaves the running VM alone.
  // An SNP relay boots the UKI inside its ISO directly (-kernel), as on Proxmox VE; that very file is measured.
  if (snp) mkdirSync(ukiWaitDir(target.runDir), { recursive: true, mode: 0o700 });
  const uki = snp ? ukiFromIso(iso, join(ukiWaitDir(target.runDir), UKI_FILE)) : undefined;
  const measurement = snp && uki ? ukiLaunchMeasurement({ ovmf: snp.ovmf, kernel: uki, vcpus: target.cores, vcpuType: snp.vcpuType }) : undefined;
  const cpuModel = snp ? localCpuModel(snp.vcpuType, qemuCpuModels()) : undefined;
  // A VM left over from an interrupted run would hold the forwarded ports.
  const stopped = await stopLocalVm(target.runDir);
  if (stopped !== "not running") log(`the VM that ran here was stopped (${stopped === "clean" ? "powered off on the ACPI power button" : `hard: it had not powered off within ${CLEAN_SHUTDOWN_SECONDS} s`})`);
  mkdirSync(target.runDir, { recursive: true, mode: 0o700 });
  if (snp) renameSync(join(ukiWaitDir(target.runDir), UKI_FILE), join(target.runDir, UKI_FILE));
  rmSync(ukiWaitDir(target.runDir), { recursive: true, force: true });
  const varsFile = join(target.runDir, "OVMF_VARS.fd");
  copyFileSync(OVMF_VARS, varsFile);
  const { network } = target;
  if (network.kind === "bridge") ensureTap(network.netns, network.bridge, network.tap);
  let snpReportSocket: string | undefined;
  if (snp && measurement) {
    snpReportSocket = snpSocketOf(target.runDir);
    await startSnpSimulator({ dir: snp.simulatorDir, socket: snpReportSocket, measurement, policy: snp.policy, logFile: snpLogOf(target.runDir) });
    log(`simulated SEV-SNP secure processor (TEST ONLY) on ${snpReportSocket} reports measurement ${measurement}`);
  }
  const args = qemuRelayArgs({
    iso,
    varsFile,
    memoryMiB: target.memoryMiB,
    cores: target.cores,
    mac: target.mac,
    network: network.kind === "bridge" ? { kind: "tap", ifname: network.tap } : { kind: "user", hostForwards: network.forwards, guestAddress: network.guestAddress },
    serialLog: consoleLogOf(target.runDir),
    monitorSocket: monitorOf(target.runDir),
    pidFile: pidFile(target.runDir),
    snpReportSocket,
    ...(snp && cpuModel ? { directBoot: { firmware: LOCAL_SNP_FIRMWARE, kernel: join(target.runDir, UKI_FILE), cpuModel } } : {}),
  });
  // On the testnet's bridge, QEMU runs inside its namespace, where the tap is.
  const [command, ...rest] = network.kind === "bridge" ? inNetns(network.netns, ["qemu-system-x86_64", ...args]) : ["qemu-system-x86_64", ...args];
  try {
    runTool(command!, rest, { what: "starting the relay under QEMU" });
  } catch (err) {
    // No simulator outlives a QEMU that did not start.
    await stopSnpSimulator(target.runDir);
    throw err;
  }
  return Number(readFileSync(pidFile(target.runDir), "utf8").trim());
}
