/**
 * The relay's shutdown script (images/rootfs/files/usr/local/sbin/
 * relay-shutdown), run by busybox's shell and killall as the image runs it,
 * against stand-ins for tor and the agent that log the signals they get: tor
 * is stopped first and at once (SIGTERM: a relay given SIGINT waits
 * ShutdownWaitLength), the agent only once tor has exited (its last push then
 * carries the state tor wrote on its way out), and the script waits for that
 * push, within bounds; a tor that outlives its bound is killed, and one that
 * blocks SIGTERM is named as such. It runs with the PATH busybox init gives it, in PID
 * and mount namespaces of its own: killall finds processes by name, and this
 * machine's other tor processes are not its to signal.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "../support/pulumi";
import { privateTmpDir } from "../support/tmp";

const SCRIPT = join(repoRoot, "images/rootfs/files/usr/local/sbin/relay-shutdown");

/** A stand-in called `name` (the name killall finds) that logs the signals it gets, works `seconds` on SIGTERM, then exits. */
function standIn(dir: string, name: string, seconds: number, log: string): void {
  const file = join(dir, name);
  writeFileSync(
    file,
    `#!/bin/busybox sh\ntrap 'echo "${name} got TERM $(date +%s.%N)" >>${log}; sleep ${seconds}; echo "${name} done $(date +%s.%N)" >>${log}; exit 0' TERM\ntrap 'echo "${name} got INT" >>${log}' INT\nwhile :; do sleep 0.05; done\n`,
  );
  chmodSync(file, 0o755);
}

/**
 * A process called tor with SIGTERM blocked, as tor's threads have been seen
 * under QEMU's emulation: the mask is set, then survives exec into sleep
 * (which blocks nothing itself), so the signal stays pending.
 */
function termBlockingTor(dir: string): void {
  symlinkSync("/bin/sleep", join(dir, "tor-sleep"));
  writeFileSync(
    join(dir, "tor"),
    `#!/bin/busybox sh\nexec /usr/bin/python3 -c 'import os, signal; signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM]); os.execv("${join(dir, "tor-sleep")}", ["tor", "1000"])'\n`,
  );
  chmodSync(join(dir, "tor"), 0o755);
}

/** Runs relay-shutdown in a fresh PID namespace beside the stand-ins `names` (started first); the log, console and seconds taken. */
function shutDown(names: { name: string; seconds: number }[], blockingTor = false) {
  const dir = privateTmpDir("relay-shutdown");
  const log = join(dir, "signals.log");
  writeFileSync(log, "");
  // The image's killall is busybox's in /usr/local/bin (images/rootfs/install.sh): here too, in this mount namespace only.
  mkdirSync(join(dir, "local-bin"));
  symlinkSync("/bin/busybox", join(dir, "local-bin", "killall"));
  for (const { name, seconds } of names) standIn(dir, name, seconds, log);
  if (blockingTor) termBlockingTor(dir);
  const driver = join(dir, "driver");
  writeFileSync(
    driver,
    [
      `mount --bind ${join(dir, "local-bin")} /usr/local/bin`,
      // The image has no other killall (this machine's psmisc one is hidden).
      "if [ -e /usr/bin/killall ]; then mount --bind /dev/null /usr/bin/killall; fi",
      ...names.map(({ name }) => `${join(dir, name)} &`),
      ...(blockingTor ? [`${join(dir, "tor")} &`] : []),
      "sleep 0.3",
      "began=$(date +%s.%N)",
      `busybox sh ${SCRIPT}`,
      `echo "script ended $(date +%s.%N) began $began" >>${log}`,
      // No wait: when this shell, the namespace's first process, ends, the kernel kills what is left in it.
    ].join("\n") + "\n",
  );
  const result = spawnSync("unshare", ["--pid", "--fork", "--kill-child", "--mount-proc", "busybox", "sh", driver], {
    encoding: "utf8",
    // The PATH busybox init gives the programs it runs: the script must find killall itself.
    env: { PATH: "/sbin:/usr/sbin:/bin:/usr/bin", RELAY_CONSOLE: join(dir, "console") },
    timeout: 120_000,
  });
  const lines = readFileSync(log, "utf8").trim().split("\n").filter(Boolean).map((line) => line.split(" "));
  return { result, lines, console: readFileSync(join(dir, "console"), "utf8") };
}

describe("relay-shutdown, on the ACPI power button", () => {
  it("stops tor with SIGTERM first, then lets the agent make its last push, and waits for both", () => {
    const { result, lines, console } = shutDown([
      { name: "tor", seconds: 1 },
      { name: "relay-agent", seconds: 2 },
    ]);
    expect(result.status, result.stderr).toBe(0);
    expect(lines.map((line) => line.slice(0, 2).join(" "))).toEqual(["tor got", "tor done", "relay-agent got", "relay-agent done", "script ended"]);
    // The agent was told only once tor had exited; the script returned only after the agent's push.
    expect(Number(lines[2]![3])).toBeGreaterThanOrEqual(Number(lines[1]![2]));
    expect(Number(lines[4]![2])).toBeGreaterThanOrEqual(Number(lines[3]![2]));
    expect(console).toMatch(/stopping tor\n.*waiting for the agent's last push\n.*done/);
  }, 60_000);

  it("kills a tor that has not exited 10 s after SIGTERM, and does not wait for an agent that is not there (image mode)", () => {
    const { result, lines, console } = shutDown([{ name: "tor", seconds: 30 }]);
    expect(result.status, result.stderr).toBe(0);
    const script = lines.find((line) => line[0] === "script")!;
    const [ended, began] = [Number(script[2]), Number(script[4])];
    // The bound is counted in whole seconds of the clock.
    expect(ended - began).toBeGreaterThanOrEqual(9);
    expect(ended - began).toBeLessThan(14);
    expect(lines.map((line) => line.slice(0, 2).join(" "))).toEqual(["tor got", "script ended"]);
    expect(console).toMatch(/tor still runs after 10 s\n.*killing tor: the kernel closes its connections/);
    expect(console).not.toMatch(/blocks SIGTERM/);
    expect(console).not.toMatch(/agent/);
  }, 90_000);

  it("says when tor blocks SIGTERM in every thread, kills it, and goes on to the agent", () => {
    const { result, lines, console } = shutDown([{ name: "relay-agent", seconds: 1 }], true);
    expect(result.status, result.stderr).toBe(0);
    expect(console).toMatch(/tor still runs after 10 s\n.*tor \(\d+\) blocks SIGTERM in every thread, so it never sees it\n.*killing tor/);
    expect(console).not.toMatch(/still runs after 5 s/);
    // The agent was still told, after tor was gone.
    expect(lines.map((line) => line.slice(0, 2).join(" "))).toEqual(["relay-agent got", "relay-agent done", "script ended"]);
  }, 90_000);
});
