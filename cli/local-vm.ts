/**
 * Starts and stops a relay VM under QEMU on this machine, laid out as on
 * Proxmox VE (see lib/qemu.ts). Run by the LocalRelayVm component:
 *   tsx cli/local-vm.ts start --run-dir DIR --iso ISO --mac MAC --memory MiB --cores N --forward HOST:GUEST…
 *   tsx cli/local-vm.ts stop --run-dir DIR
 * DIR receives qemu.pid, console.log (the serial console), monitor.sock (QEMU's
 * human monitor) and the firmware's variables.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { OVMF_VARS, qemuRelayArgs } from "../lib/qemu";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    "run-dir": { type: "string" },
    iso: { type: "string" },
    mac: { type: "string" },
    memory: { type: "string", default: "1024" },
    cores: { type: "string", default: "1" },
    forward: { type: "string", multiple: true, default: [] },
    "guest-address": { type: "string" },
  },
});

const runDir = values["run-dir"];
if (!runDir) throw new Error("local-vm needs --run-dir");
const pidFile = join(runDir, "qemu.pid");

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function stop(): void {
  if (existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, "utf8").trim());
    if (pid > 0 && alive(pid)) {
      process.kill(pid, "SIGTERM");
      for (let i = 0; i < 100 && alive(pid); i++) spawnSync("sleep", ["0.1"]);
      if (alive(pid)) process.kill(pid, "SIGKILL");
    }
  }
  rmSync(runDir!, { recursive: true, force: true });
  console.log(`stopped ${runDir}`);
}

function start(): void {
  if (!values.iso || !values.mac) throw new Error("local-vm start needs --iso and --mac");
  // A VM left over from an interrupted run would hold the forwarded ports.
  if (existsSync(runDir!)) stop();
  mkdirSync(runDir!, { recursive: true, mode: 0o700 });
  const varsFile = join(runDir!, "OVMF_VARS.fd");
  copyFileSync(OVMF_VARS, varsFile);
  const hostForwards = values.forward!.map((pair) => {
    const [host, guest] = pair.split(":").map(Number);
    return { host: host!, guest: guest! };
  });
  const args = qemuRelayArgs({
    iso: values.iso,
    varsFile,
    memoryMiB: Number(values.memory),
    cores: Number(values.cores),
    mac: values.mac,
    hostForwards,
    ...(values["guest-address"] ? { guestAddress: values["guest-address"] } : {}),
    serialLog: join(runDir!, "console.log"),
    monitorSocket: join(runDir!, "monitor.sock"),
    pidFile,
  });
  const qemu = spawnSync("qemu-system-x86_64", args, { encoding: "utf8" });
  if (qemu.status !== 0) throw new Error(`qemu-system-x86_64 failed: ${qemu.stderr.trim()}`);
  console.log(`started pid ${readFileSync(pidFile, "utf8").trim()}, console ${join(runDir!, "console.log")}`);
}

const command = positionals[0];
if (command === "start") start();
else if (command === "stop") stop();
else {
  console.error("usage: local-vm.ts (start|stop) --run-dir DIR …");
  process.exit(2);
}
