/**
 * Real tor as the oracle for what it makes of a torrc, synchronously: each
 * probe starts one tor offline (DisableNetwork 1) with a private temporary
 * DataDirectory, asks it GETINFO keys once it has built its descriptor,
 * and stops it; all probes of a call run side by side. The work is done by
 * lib/tor-probe.cjs in a worker thread this one waits for, because the plan
 * is synchronous and tor's control protocol is not. I/O: tor processes,
 * temporary files (removed), unix sockets.
 */
import { join } from "node:path";
import { MessageChannel, receiveMessageOnPort, Worker } from "node:worker_threads";

export interface TorProbeRequest {
  /** torrc lines; the probe adds DataDirectory, ControlSocket, DisableNetwork 1, PublishServerDescriptor 0, SocksPort 0 and Log. */
  lines: string[];
  /** GETINFO keys, e.g. "exit-policy/full" or "dir/server/authority". */
  queries: string[];
  /** Files to place in the DataDirectory before tor starts (e.g. "keys/NAME.secret_family_key"). */
  files?: Record<string, Buffer>;
  /** Control commands sent after the queries, as written (a multi-line one starts with "+" and ends with "\r\n."). */
  commands?: string[];
}

export type TorProbeResult = { answers: Record<string, string>; replies: string[]; log: string } | { error: string; log: string };

export class TorProbeError extends Error {}

/** Runs the probes; one result per request, in order. Throws a TorProbeError only when the probe itself cannot run. */
export function probeTor(requests: TorProbeRequest[], options: { torBinary?: string; timeoutMs?: number } = {}): TorProbeResult[] {
  if (requests.length === 0) return [];
  const timeoutMs = options.timeoutMs ?? 30_000;
  const request = {
    tor: options.torBinary ?? "tor",
    timeoutMs,
    probes: requests.map((r) => ({
      lines: r.lines,
      queries: r.queries,
      files: Object.fromEntries(Object.entries(r.files ?? {}).map(([name, content]) => [name, content.toString("base64")])),
      ...(r.commands ? { commands: r.commands } : {}),
    })),
  };
  // A worker thread, not a process: no second node to start. This thread sleeps on `signal` until the worker is done.
  const signal = new Int32Array(new SharedArrayBuffer(4));
  const { port1, port2 } = new MessageChannel();
  const worker = new Worker(join(__dirname, "tor-probe.cjs"), { workerData: { request, port: port2, signal }, transferList: [port2] });
  try {
    // The probe's own deadline comes first; this one only catches a probe that hangs.
    if (Atomics.wait(signal, 0, 0, timeoutMs + 15_000) === "timed-out") throw new TorProbeError(`the tor probe did not finish in ${(timeoutMs + 15_000) / 1000} s`);
    const reply = receiveMessageOnPort(port1)?.message as { results?: TorProbeResult[]; failure?: string } | undefined;
    if (!reply?.results) throw new TorProbeError(`the tor probe failed: ${reply?.failure ?? "no answer"}`);
    return reply.results;
  } finally {
    port1.close();
    void worker.terminate();
  }
}
