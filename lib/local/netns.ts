/**
 * The testnet's network namespace and its bridge, made with iproute2: the
 * local stand-in for a Proxmox node's vmbr0. Relays' VMs join it through tap
 * devices; everything in it stays on this machine. I/O: runs `ip`.
 */
import { spawnSync } from "node:child_process";
import { runTool } from "../core/run";

const ip = (args: string[], what: string) => runTool("ip", args, { what });

/** A command line run inside the namespace. */
export const inNetns = (netns: string, command: string[]): string[] => ["ip", "netns", "exec", netns, ...command];

function netnsExists(netns: string): boolean {
  return spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout.split("\n").some((line) => line.split(" ")[0] === netns);
}

/** The namespace with loopback up and the bridge holding the testnet host's addresses. */
export function ensureNetns(netns: string, bridge: string, ipv4: string, ipv6: string): void {
  if (!netnsExists(netns)) ip(["netns", "add", netns], `creating network namespace ${netns}`);
  const inside = (args: string[], what: string) => ip(["-n", netns, ...args], what);
  inside(["link", "set", "lo", "up"], "loopback up");
  if (spawnSync("ip", ["-n", netns, "link", "show", bridge], { stdio: "ignore" }).status !== 0) {
    inside(["link", "add", bridge, "type", "bridge"], `creating bridge ${bridge}`);
    inside(["addr", "add", ipv4, "dev", bridge], "the bridge's IPv4 address");
    // No duplicate address detection: the address is usable at once.
    inside(["addr", "add", ipv6, "dev", bridge, "nodad"], "the bridge's IPv6 address");
  }
  inside(["link", "set", bridge, "up"], "bridge up");
}

/** A relay's tap device on the bridge, up (made if missing; kept across VM restarts). */
export function ensureTap(netns: string, bridge: string, tap: string): void {
  if (spawnSync("ip", ["-n", netns, "link", "show", tap], { stdio: "ignore" }).status !== 0) {
    ip(["-n", netns, "tuntap", "add", "dev", tap, "mode", "tap"], `creating tap ${tap}`);
    ip(["-n", netns, "link", "set", tap, "master", bridge], `attaching ${tap} to ${bridge}`);
  }
  ip(["-n", netns, "link", "set", tap, "up"], `${tap} up`);
}

/** Process ids still running inside the namespace. */
export function netnsPids(netns: string): number[] {
  return spawnSync("ip", ["netns", "pids", netns], { encoding: "utf8" }).stdout.split("\n").filter(Boolean).map(Number);
}

export function removeNetns(netns: string): void {
  if (netnsExists(netns)) ip(["netns", "del", netns], `removing network namespace ${netns}`);
}
