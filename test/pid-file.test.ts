/**
 * A pid file outlives its process, and pids come round again: stopping a
 * relay's QEMU by a stale number once killed an unrelated tor. Real
 * processes here: `sleep` stands in for whatever now holds the number.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { runningPid, stopLocalVm } from "../lib/local-vm";
import { alive, commandLineOf, hasOption, ownedPid } from "../lib/pid-file";
import { privateTmpDir } from "./support/tmp";

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
    await stopLocalVm(runDir);
    expect(alive(other)).toBe(true);
  });

  it("is the process started with -pidfile naming that file: stopped with SIGTERM", async () => {
    const runDir = join(privateTmpDir("local-vm"), "relay");
    mkdirSync(runDir, { recursive: true });
    // A process whose command line carries QEMU's -pidfile option stands in for QEMU (node -e keeps the rest of its argv).
    const qemuLike = spawn(process.execPath, ["-e", "setTimeout(() => {}, 300000)", "-pidfile", join(runDir, "qemu.pid")], { stdio: "ignore", detached: true });
    qemuLike.unref();
    started.push(qemuLike.pid!);
    writeFileSync(join(runDir, "qemu.pid"), `${qemuLike.pid}\n`);
    expect(runningPid(runDir)).toBe(qemuLike.pid);
    await stopLocalVm(runDir);
    for (let i = 0; i < 100 && alive(qemuLike.pid!); i++) await new Promise((r) => setTimeout(r, 20));
    expect(alive(qemuLike.pid!)).toBe(false);
  });
});
