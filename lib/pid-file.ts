/**
 * Processes the program starts and later finds again by a pid file: a relay's
 * QEMU, its simulated secure processor, the testnet's tor and services.
 * I/O: reads /proc.
 *
 * Why a pid alone is never trusted: a pid file outlives its process (a crash,
 * a host reboot, a QEMU killed by hand), and with Linux's default 32768 pids
 * the number comes round again within minutes on a busy host. Stopping "the
 * relay's QEMU" by a stale number once killed an unrelated tor. A pid counts
 * as ours only while the process's own command line says so.
 */
import { existsSync, readFileSync } from "node:fs";

/** Alive, and not a zombie: a killed process stays in the table until it is reaped, running nothing. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // /proc/PID/stat: "pid (comm) STATE …"; comm may hold spaces and parentheses, so read after the last ")".
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** The process's argument vector, or undefined once it is gone. */
export function commandLineOf(pid: number): string[] | undefined {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    if (argv.at(-1) === "") argv.pop();
    return argv;
  } catch {
    return undefined;
  }
}

/** The pid in `pidFile` while that process runs and `owns` recognises its command line; otherwise undefined. */
export function ownedPid(pidFile: string, owns: (argv: string[]) => boolean): number | undefined {
  if (!existsSync(pidFile)) return undefined;
  const text = readFileSync(pidFile, "utf8").trim();
  if (!/^[1-9]\d*$/.test(text)) return undefined;
  const pid = Number(text);
  if (!alive(pid)) return undefined;
  const argv = commandLineOf(pid);
  return argv && owns(argv) ? pid : undefined;
}

/** `argv` holds `flag value` as two consecutive arguments. */
export function hasOption(argv: string[], flag: string, value: string): boolean {
  return argv.some((arg, i) => arg === flag && argv[i + 1] === value);
}
