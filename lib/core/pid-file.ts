/**
 * Processes the program starts and later finds again by a pid file: a relay's
 * QEMU, its simulated secure processor, the testnet's tor and services.
 * I/O: reads /proc.
 *
 * Why a pid alone is never trusted: a pid file outlives its process (a crash,
 * a host reboot, a QEMU killed by hand), and with Linux's default 32768 pids
 * the number comes round again within minutes on a busy host. Stopping "the
 * relay's QEMU" by a stale number once killed an unrelated tor. A pid counts
 * as ours only while the process itself shows it: by its command line, or by
 * a file it holds open.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { resolve } from "node:path";

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

/**
 * Whether the process has `path` open (an open file outlives its name:
 * removed, it still counts). QEMU keeps its -pidfile open and locked for
 * its whole life, which names it better than its command line can: it
 * chdirs to / when it daemonizes, so a relative path there no longer says
 * which file it meant.
 */
export function holdsOpen(pid: number, path: string): boolean {
  const wanted = resolve(path);
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  return fds.some((fd) => {
    try {
      const open = readlinkSync(`/proc/${pid}/fd/${fd}`);
      return open === wanted || open === `${wanted} (deleted)`;
    } catch {
      return false;
    }
  });
}

/** The pid in `pidFile` while that process runs and `owns` recognises it (by its command line, or its pid); otherwise undefined. */
export function ownedPid(pidFile: string, owns: (argv: string[], pid: number) => boolean): number | undefined {
  let text: string;
  try {
    text = readFileSync(pidFile, "utf8").trim();
  } catch (err) {
    // The process removes its pid file as it exits: gone between a look and a read is gone.
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  if (!/^[1-9]\d*$/.test(text)) return undefined;
  const pid = Number(text);
  if (!alive(pid)) return undefined;
  const argv = commandLineOf(pid);
  return argv && owns(argv, pid) ? pid : undefined;
}

/** `argv` holds `flag value` as two consecutive arguments. */
export function hasOption(argv: string[], flag: string, value: string): boolean {
  return argv.some((arg, i) => arg === flag && argv[i + 1] === value);
}
