/**
 * A pid file outlives its process, and pids come round again: stopping a
 * relay's QEMU by a stale number once killed an unrelated tor. Real
 * processes here: `sleep` stands in for whatever now holds the number.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { runningPid, startLocalVm, stopLocalVm } from "../../lib/local/local-vm";
import { alive, commandLineOf, hasOption, ownedPid } from "../../lib/core/pid-file";
import { privateTmpDir } from "../support/tmp";
import { poll } from "../support/poll";

const started: number[] = [];
function bystander(): number {
  const child = spawn("sleep", ["300"], { stdio: "ignore", detached: true });
  child.unref();
  started.push(child.pid!);
  return child.pid!;
}

afterEach(() => {
  for (const pid of started.splice(0)) spawnSync("kill", ["-KILL", String(pid)]);
});

describe("pid files", () => {
  it("name a process only while its own command line says it is the one that wrote the file", () => {
    const dir = privateTmpDir("pid-file");
    const file = join(dir, "thing.pid");
    const pid = bystander();
    writeFileSync(file, `${pid}\n`);
    expect(commandLineOf(pid)).toEqual(["sleep", "300"]);
    expect(ownedPid(file, (argv) => argv[0] === "sleep")).toBe(pid);
    expect(ownedPid(file, (argv) => hasOption(argv, "-pidfile", file))).toBeUndefined();
    for (const text of ["", "0", "-1", "12abc", "99999999"]) {
      writeFileSync(file, text);
      expect(ownedPid(file, () => true), JSON.stringify(text)).toBeUndefined();
    }
    expect(ownedPid(join(dir, "missing.pid"), () => true)).toBeUndefined();
  });

  it("count a zombie as gone: it is in the process table and runs nothing", async () => {
    // A child this process never reaps (spawnSync's would be reaped): bash starts it and execs into a long sleep.
    const parent = spawn("bash", ["-c", "sleep 0 & exec sleep 300"], { stdio: "ignore" });
    started.push(parent.pid!);
    const child = await new Promise<number>((resolve) => {
      const poll = () => {
        const found = spawnSync("ps", ["-o", "pid=", "--ppid", String(parent.pid)], { encoding: "utf8" }).stdout.trim();
        if (found) resolve(Number(found));
        else setTimeout(poll, 20);
      };
      poll();
    });
    for (let i = 0; i < 100 && !/ Z /.test(spawnSync("ps", ["-o", "pid=,stat=", "-p", String(child)], { encoding: "utf8" }).stdout + " "); i++) await new Promise((r) => setTimeout(r, 20));
    expect(spawnSync("ps", ["-o", "stat=", "-p", String(child)], { encoding: "utf8" }).stdout.trim()).toMatch(/^Z/);
    expect(() => process.kill(child, 0)).not.toThrow();
    expect(alive(child)).toBe(false);
    expect(alive(parent.pid!)).toBe(true);
  });
});

describe("a local relay's QEMU found by its pid file", () => {
  it("is not some other process that now has the number: stopping the relay leaves that process running", async () => {
    const runDir = join(privateTmpDir("local-vm"), "relay");
    mkdirSync(runDir, { recursive: true });
    const other = bystander();
    writeFileSync(join(runDir, "qemu.pid"), `${other}\n`);
    expect(runningPid(runDir)).toBeUndefined();
    expect(await stopLocalVm(runDir)).toBe("not running");
    expect(alive(other)).toBe(true);
  });

  it("is the real QEMU holding that pid file open, found again from another working directory, and stopped", async () => {
    const dir = privateTmpDir("local-vm");
    // The program names run directories relative to the project (projectDir "."); QEMU chdirs to / when it daemonizes.
    const runDir = join(".runtime", "stack", "relay");
    const iso = join(dir, "empty.iso");
    writeFileSync(iso, Buffer.alloc(2048 * 16));
    const cwd = process.cwd();
    process.chdir(dir);
    let pid: number;
    try {
      pid = await startLocalVm({ kind: "qemu", runDir, mac: "52:54:00:12:34:56", memoryMiB: 128, cores: 1, network: { kind: "user", forwards: [], guestAddress: "10.0.2.15" } }, iso);
      started.push(pid);
      expect(readlinkSync(`/proc/${pid}/cwd`)).toBe("/");
      expect(runningPid(runDir)).toBe(pid);
    } finally {
      process.chdir(cwd);
    }
    // From elsewhere, by its absolute path, as the collection step and status may name it.
    expect(runningPid(join(dir, runDir))).toBe(pid);
    expect(runningPid(runDir)).toBeUndefined();
    // The firmware alone, with no system to hear the ACPI power button, does not power off: stopped hard after the timeout.
    const began = Date.now();
    expect(await stopLocalVm(join(dir, runDir), { cleanShutdownSeconds: 2 })).toBe("hard");
    expect(Date.now() - began).toBeGreaterThanOrEqual(2000);
    await poll(() => !alive(pid), { seconds: 5, intervalMs: 20 });
    expect(alive(pid)).toBe(false);
  }, 60_000);
});
