/**
 * Real tor as the oracle for what it makes of a torrc, synchronously: each
 * probe starts one tor offline (DisableNetwork 1) with a private temporary
 * DataDirectory, asks it GETINFO keys once it has built its descriptor,
 * and stops it; all probes of a call run side by side. The work is done by
 * lib/tor/tor-probe-worker.cjs in a worker thread this one waits for, because the plan
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

type ProbeOptions = { torBinary?: string; timeoutMs?: number };
type Reply = { results?: TorProbeResult[]; failure?: string } | undefined;

/** Starts the worker on the requests; the caller waits for `port`'s one message, or on `signal`. */
function startProbe(requests: TorProbeRequest[], options: ProbeOptions) {
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
  // A worker thread, not a process: no second node to start.
  const signal = new Int32Array(new SharedArrayBuffer(4));
  const { port1, port2 } = new MessageChannel();
  const worker = new Worker(join(__dirname, "tor-probe-worker.cjs"), { workerData: { request, port: port2, signal }, transferList: [port2] });
  // The probe's own deadline comes first; this one only catches a probe that hangs.
  const limitMs = timeoutMs + 15_000;
  const finish = (reply: Reply): TorProbeResult[] => {
    port1.close();
    void worker.terminate();
    if (!reply?.results) throw new TorProbeError(`the tor probe failed: ${reply?.failure ?? `no answer in ${limitMs / 1000} s`}`);
    return reply.results;
  };
  return { signal, port: port1, limitMs, finish };
}

/**
 * Runs the probes; one result per request, in order. Synchronous: this
 * thread sleeps until the worker is done (the plan is synchronous). Throws
 * a TorProbeError only when the probe itself cannot run.
 */
export function probeTor(requests: TorProbeRequest[], options: ProbeOptions = {}): TorProbeResult[] {
  if (requests.length === 0) return [];
  const probe = startProbe(requests, options);
  const done = Atomics.wait(probe.signal, 0, 0, probe.limitMs) !== "timed-out";
  return probe.finish(done ? (receiveMessageOnPort(probe.port)?.message as Reply) : undefined);
}

/** probeTor for callers with an event loop to keep turning (tests running many tors). */
export async function probeTorAsync(requests: TorProbeRequest[], options: ProbeOptions = {}): Promise<TorProbeResult[]> {
  if (requests.length === 0) return [];
  const probe = startProbe(requests, options);
  const reply = await new Promise<Reply>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), probe.limitMs);
    probe.port.once("message", (message: Reply) => {
      clearTimeout(timer);
      resolve(message);
    });
  });
  return probe.finish(reply);
}
