/**
 * The local stack's relay machines: QEMU processes laid out as on Proxmox VE
 * (lib/qemu.ts), one run directory each (qemu.pid, console.log, monitor.sock,
 * the firmware's variables). I/O: starts and stops QEMU.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ensureTap, inNetns } from "./netns";
import { OVMF_VARS, qemuRelayArgs } from "./qemu";
import { runTool } from "./run";
import type { RelayTarget } from "./steps";

type QemuTarget = Extract<RelayTarget, { kind: "qemu" }>;

const pidFile = (runDir: string) => join(runDir, "qemu.pid");
export const consoleLogOf = (runDir: string) => join(runDir, "console.log");

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The QEMU process running this relay, if any. */
export function runningPid(runDir: string): number | undefined {
  if (!existsSync(pidFile(runDir))) return undefined;
  const pid = Number(readFileSync(pidFile(runDir), "utf8").trim());
  return pid > 0 && alive(pid) ? pid : undefined;
}

async function sleep(ms: number) {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** Stops the relay's QEMU (SIGTERM, then SIGKILL) and removes its run directory. */
export async function stopLocalVm(runDir: string): Promise<void> {
  const pid = runningPid(runDir);
  if (pid !== undefined) {
    process.kill(pid, "SIGTERM");
    for (let i = 0; i < 100 && alive(pid); i++) await sleep(100);
    if (alive(pid)) process.kill(pid, "SIGKILL");
  }
  rmSync(runDir, { recursive: true, force: true });
}

/** Boots `iso` as the relay's machine, replacing whatever ran there; returns QEMU's pid. */
export async function startLocalVm(target: QemuTarget, iso: string): Promise<number> {
  // A VM left over from an interrupted run would hold the forwarded ports.
  await stopLocalVm(target.runDir);
  mkdirSync(target.runDir, { recursive: true, mode: 0o700 });
  const varsFile = join(target.runDir, "OVMF_VARS.fd");
  copyFileSync(OVMF_VARS, varsFile);
  const { network } = target;
  if (network.kind === "bridge") ensureTap(network.netns, network.bridge, network.tap);
  const args = qemuRelayArgs({
    iso,
    varsFile,
    memoryMiB: target.memoryMiB,
    cores: target.cores,
    mac: target.mac,
    network: network.kind === "bridge" ? { kind: "tap", ifname: network.tap } : { kind: "user", hostForwards: network.forwards, guestAddress: network.guestAddress },
    serialLog: consoleLogOf(target.runDir),
    monitorSocket: join(target.runDir, "monitor.sock"),
    pidFile: pidFile(target.runDir),
  });
  // On the testnet's bridge, QEMU runs inside its namespace, where the tap is.
  const [command, ...rest] = network.kind === "bridge" ? inNetns(network.netns, ["qemu-system-x86_64", ...args]) : ["qemu-system-x86_64", ...args];
  runTool(command!, rest, { what: "starting the relay under QEMU" });
  return Number(readFileSync(pidFile(target.runDir), "utf8").trim());
}
