/**
 * Real tor as the oracle for what it makes of a torrc, synchronously: each
 * probe starts one tor offline (DisableNetwork 1) with a private temporary
 * DataDirectory, asks it GETINFO keys once it has built its descriptor,
 * and stops it; all probes of a call run side by side. The work is done by
 * lib/tor-probe.cjs in a node child process, because the plan is
 * synchronous and tor's control protocol is not. I/O: a node process, tor
 * processes, temporary files (removed).
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";

export interface TorProbeRequest {
  /** torrc lines; the probe adds DataDirectory, ControlSocket, DisableNetwork 1, PublishServerDescriptor 0, SocksPort 0 and Log. */
  lines: string[];
  /** GETINFO keys, e.g. "exit-policy/full" or "dir/server/authority". */
  queries: string[];
  /** Files to place in the DataDirectory before tor starts (e.g. "keys/NAME.secret_family_key"). */
  files?: Record<string, Buffer>;
  /** A log line (regular expression) after which tor will never answer: the probe stops there with an error. */
  stopOnLog?: string;
  /** Control commands sent after the queries, as written (a multi-line one starts with "+" and ends with "\r\n."). */
  commands?: string[];
}

export type TorProbeResult = { answers: Record<string, string>; replies: string[]; log: string } | { error: string; log: string };

export class TorProbeError extends Error {}

/** Runs the probes; one result per request, in order. Throws a TorProbeError only when the probe itself cannot run. */
export function probeTor(requests: TorProbeRequest[], options: { torBinary?: string; timeoutMs?: number } = {}): TorProbeResult[] {
  if (requests.length === 0) return [];
  const timeoutMs = options.timeoutMs ?? 30_000;
  const input = JSON.stringify({
    tor: options.torBinary ?? "tor",
    timeoutMs,
    probes: requests.map((request) => ({
      lines: request.lines,
      queries: request.queries,
      files: Object.fromEntries(Object.entries(request.files ?? {}).map(([name, content]) => [name, content.toString("base64")])),
      ...(request.stopOnLog ? { stopOnLog: request.stopOnLog } : {}),
      ...(request.commands ? { commands: request.commands } : {}),
    })),
  });
  const result = spawnSync(process.execPath, [join(__dirname, "tor-probe.cjs")], {
    input,
    encoding: "utf8",
    // The probe's own deadline comes first; this one only catches a probe that hangs.
    timeout: timeoutMs + 15_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.error) throw new TorProbeError(`cannot run the tor probe (${result.error.message})`);
  if (result.status !== 0) throw new TorProbeError(`the tor probe failed: ${result.stderr.trim() || `exit status ${result.status}`}`);
  return JSON.parse(result.stdout) as TorProbeResult[];
}
