/**
 * A bounded connection flood from one address, inside a network namespace:
 * what a relay's per-source limits are for. Every attempt is a plain TCP
 * connect from `from` to `host:port`, held open until the flood ends, so
 * that both the rate and the count of connections from that source grow.
 * Only for the testnet's own addresses. The script is constant; its
 * parameters travel as one JSON argument.
 */
import { spawn } from "node:child_process";

export interface FloodSpec {
  /** The source address (one of the namespace's own). */
  from: string;
  host: string;
  port: number;
  /** Attempts made at once at the start. */
  burst: number;
  /** Then one more attempt every intervalMs, this many times. */
  trickle: number;
  intervalMs: number;
  /** An attempt that has not connected by then counts as dropped. */
  connectTimeoutMs: number;
}

export interface FloodResult {
  attempts: number;
  connected: number;
  timedOut: number;
  /** Refused, reset or anything else. */
  failed: number;
}

const FLOOD_SCRIPT = `
const net = require("node:net");
const spec = JSON.parse(process.argv[1]);
const open = [];
const result = { attempts: 0, connected: 0, timedOut: 0, failed: 0 };
const pending = [];
function attempt() {
  result.attempts++;
  pending.push(new Promise((resolve) => {
    const socket = net.connect({ host: spec.host, port: spec.port, localAddress: spec.from });
    const timer = setTimeout(() => { result.timedOut++; socket.destroy(); resolve(); }, spec.connectTimeoutMs);
    socket.on("connect", () => { clearTimeout(timer); result.connected++; open.push(socket); resolve(); });
    socket.on("error", () => { if (!socket.connecting) return; clearTimeout(timer); result.failed++; resolve(); });
  }));
}
(async () => {
  for (let i = 0; i < spec.burst; i++) attempt();
  for (let i = 0; i < spec.trickle; i++) { await new Promise((r) => setTimeout(r, spec.intervalMs)); attempt(); }
  await Promise.all(pending);
  for (const socket of open) socket.destroy();
  process.stdout.write(JSON.stringify(result));
})();
`;

export function floodInNetns(netns: string, spec: FloodSpec): Promise<FloodResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("ip", ["netns", "exec", netns, process.execPath, "-e", FLOOD_SCRIPT, JSON.stringify(spec)], { stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
    child.on("error", reject);
    child.on("close", (status) => {
      if (status !== 0) return reject(new Error(`the flood exited ${status}: ${Buffer.concat(err).toString("utf8")}`));
      resolve(JSON.parse(Buffer.concat(out).toString("utf8")) as FloodResult);
    });
  });
}
