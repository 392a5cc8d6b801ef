/**
 * The testnet client's tor, driven through its control socket (tor's control
 * protocol, control-spec.txt): build a circuit through chosen relays by
 * fingerprint, attach a SOCKS stream to it, and read what the client knows
 * (consensus, microdescriptors). Used by `npm run testnet -- fetch`, the
 * end-to-end tests and the redeploy benchmark. I/O: unix sockets.
 */
import { createConnection, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

interface Reply {
  status: string;
  lines: string[];
}

export class TorControl {
  private buffer = "";
  private pending: { resolve: (reply: Reply) => void; reject: (err: Error) => void }[] = [];
  private current: string[] = [];
  private dataMode = false;
  private readonly listeners = new Set<(event: string) => void>();

  private constructor(private readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => this.receive(chunk));
    socket.on("error", (err) => this.pending.splice(0).forEach((p) => p.reject(err)));
    socket.on("close", () => this.pending.splice(0).forEach((p) => p.reject(new Error("tor closed its control connection"))));
  }

  static async connect(path: string): Promise<TorControl> {
    const socket = createConnection({ path });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const control = new TorControl(socket);
    await control.command("AUTHENTICATE");
    return control;
  }

  private receive(chunk: string): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.indexOf("\r\n")) >= 0) {
      const line = this.buffer.slice(0, newline);
      this.buffer = this.buffer.slice(newline + 2);
      if (this.dataMode) {
        if (line === ".") this.dataMode = false;
        else this.current.push(line.startsWith("..") ? line.slice(1) : line);
        continue;
      }
      const status = line.slice(0, 3);
      const separator = line[3];
      const text = line.slice(4);
      if (status === "650") {
        // Asynchronous events; multi-line ones are not used here.
        if (separator === " ") for (const listener of this.listeners) listener(text);
        continue;
      }
      this.current.push(text);
      if (separator === "+") this.dataMode = true;
      if (separator === " ") {
        const reply = { status, lines: this.current };
        this.current = [];
        this.pending.shift()?.resolve(reply);
      }
    }
  }

  /** Sends one command; resolves with its reply, rejects unless tor answered 250. */
  async command(line: string): Promise<string[]> {
    const reply = await new Promise<Reply>((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.socket.write(`${line}\r\n`);
    });
    if (reply.status !== "250") throw new Error(`tor refused "${line.split(" ")[0]}": ${reply.status} ${reply.lines.join(" ")}`);
    return reply.lines;
  }

  /** GETINFO KEY: the value, single- or multi-line. */
  async getInfo(key: string): Promise<string> {
    const lines = await this.command(`GETINFO ${key}`);
    const first = lines[0] ?? "";
    if (first.startsWith(`${key}=`)) {
      const rest = first.slice(key.length + 1);
      // Multi-line values come as "key=" followed by the data lines and a closing "OK".
      return rest === "" ? lines.slice(1, -1).join("\n") : rest;
    }
    return lines.slice(1, -1).join("\n");
  }

  onEvent(listener: (event: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The client's microdescriptor of a relay, or undefined while it has none. */
  async microdescriptor(fingerprint: string): Promise<string | undefined> {
    return this.getInfo(`md/id/${fingerprint}`).catch((err: Error) => {
      if (/552 Unrecognized key/.test(err.message)) return undefined;
      throw err;
    });
  }

  /**
   * Waits until the client holds a microdescriptor of each relay: a relay is
   * in the consensus a little before the client has fetched what it needs to
   * extend a circuit to it.
   */
  async waitForMicrodescriptors(fingerprints: string[], timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const missing: string[] = [];
      for (const fingerprint of fingerprints) if ((await this.microdescriptor(fingerprint)) === undefined) missing.push(fingerprint);
      if (missing.length === 0) return;
      if (Date.now() > deadline) throw new Error(`the client has no microdescriptor of ${missing.join(", ")} after ${timeoutMs / 1000}s`);
      await sleep(1000);
    }
  }

  /**
   * Builds a circuit through `fingerprints` in order; resolves with its id
   * once BUILT, rejects with tor's reason once FAILED or CLOSED.
   */
  async buildCircuit(fingerprints: string[], timeoutMs = 60_000): Promise<string> {
    await this.command("SETEVENTS CIRC STREAM");
    let id = "";
    let settle: { resolve: (id: string) => void; reject: (err: Error) => void } | undefined;
    const outcome = new Promise<string>((resolve, reject) => (settle = { resolve, reject }));
    const early: string[] = [];
    const finish = (err?: Error) => {
      clearTimeout(timer);
      stop();
      if (err) settle!.reject(err);
      else settle!.resolve(id);
    };
    const judge = (event: string) => {
      const [, , state, ...rest] = event.split(" ");
      if (state === "BUILT") finish();
      else if (state === "FAILED" || state === "CLOSED") finish(new Error(`circuit through ${fingerprints.join(",")} ${state}: ${rest.join(" ")}`));
    };
    const stop = this.onEvent((event) => {
      const [kind, circuit] = event.split(" ");
      if (kind !== "CIRC") return;
      // Events can arrive before EXTENDCIRCUIT's reply names the circuit.
      if (!id) early.push(event);
      else if (circuit === id) judge(event);
    });
    const timer = setTimeout(() => finish(new Error(`circuit ${id} through ${fingerprints.join(",")} was not built within ${timeoutMs / 1000}s`)), timeoutMs);
    try {
      const reply = await this.command(`EXTENDCIRCUIT 0 ${fingerprints.map((fp) => `$${fp}`).join(",")}`);
      id = /^EXTENDED (\d+)/.exec(reply[0] ?? "")?.[1] ?? "";
      if (!id) throw new Error(`EXTENDCIRCUIT answered "${reply.join(" ")}"`);
    } catch (err) {
      finish(err as Error);
      return outcome;
    }
    for (const event of early.splice(0)) if (event.split(" ")[1] === id) judge(event);
    return outcome;
  }

  async closeCircuit(id: string): Promise<void> {
    await this.command(`CLOSECIRCUIT ${id}`).catch(() => undefined);
  }

  close(): void {
    this.socket.end();
  }
}

/** What a fetch through the testnet returned. */
export interface FetchResult {
  status: number;
  body: string;
}

/**
 * Fetches http://HOST:PORT/ through the client's SOCKS socket, with the
 * stream attached to `circuit` (the client leaves streams unattached). The
 * host name travels to the exit, which resolves it (SOCKS5 with a domain
 * name). Rejects with the SOCKS reply code when the exit refuses.
 */
export async function fetchThroughCircuit(control: TorControl, socksSocket: string, circuit: string, host: string, port: number, timeoutMs = 60_000): Promise<FetchResult> {
  await control.command("SETEVENTS CIRC STREAM");
  let ours: string | undefined;
  let endEvent = "";
  const attach = control.onEvent((event) => {
    const [kind, stream, state, , destination] = event.split(" ");
    if (kind === "STREAM" && stream === ours && (state === "DETACHED" || state === "FAILED")) endEvent ||= event;
    // The exit ended the stream (e.g. its policy refuses the port): no other circuit is to be tried.
    if (kind === "STREAM" && stream === ours && state === "DETACHED") void control.command(`CLOSESTREAM ${stream} 1`).catch(() => undefined);
    if (kind === "STREAM" && state === "NEW" && destination === `${host}:${port}`) {
      ours = stream;
      // A stream the client will not attach (the exit's policy, as the client knows it, refuses it) is closed: the SOCKS request then fails.
      void control.command(`ATTACHSTREAM ${stream} ${circuit}`).catch(() => control.command(`CLOSESTREAM ${stream} 4`).catch(() => undefined));
    }
  });
  try {
    return await socksHttpGet(socksSocket, host, port, timeoutMs);
  } catch (err) {
    // Say why tor gave up on the stream (e.g. REMOTE_REASON=EXITPOLICY), where it said.
    if (err instanceof SocksRefusal && endEvent) throw new SocksRefusal(err.code, /REASON=.*$/.exec(endEvent)?.[0] ?? endEvent);
    throw err;
  } finally {
    attach();
  }
}

const SOCKS_REPLIES: Record<number, string> = {
  1: "general failure",
  2: "connection not allowed by ruleset (exit policy)",
  3: "network unreachable",
  4: "host unreachable",
  5: "connection refused",
  6: "TTL expired",
};

export class SocksRefusal extends Error {
  constructor(
    readonly code: number,
    /** tor's own account of the stream's end, from its STREAM event. */
    readonly reason = "",
  ) {
    super(`SOCKS reply ${code}: ${SOCKS_REPLIES[code] ?? "unknown"}${reason ? ` (${reason})` : ""}`);
    this.name = "SocksRefusal";
  }
}

/** A plain HTTP/1.0 GET through a SOCKS5 proxy listening on a unix socket. */
function socksHttpGet(socksSocket: string, host: string, port: number, timeoutMs: number): Promise<FetchResult> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path: socksSocket });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from http://${host}:${port}/ within ${timeoutMs / 1000}s`));
    }, timeoutMs);
    let stage: "greeting" | "connect" | "http" = "greeting";
    let buffer = Buffer.alloc(0);
    socket.on("connect", () => socket.write(Buffer.from([5, 1, 0])));
    socket.on("data", (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (stage === "greeting" && buffer.length >= 2) {
        buffer = buffer.subarray(2);
        stage = "connect";
        const name = Buffer.from(host);
        socket.write(Buffer.concat([Buffer.from([5, 1, 0, 3, name.length]), name, Buffer.from([port >> 8, port & 0xff])]));
      }
      if (stage === "connect" && buffer.length >= 2) {
        const code = buffer[1]!;
        if (code !== 0) {
          clearTimeout(timer);
          socket.destroy();
          reject(new SocksRefusal(code));
          return;
        }
        // The reply ends with the bound address: 4 bytes (IPv4), 16 (IPv6) or a length-prefixed name, and a port.
        if (buffer.length < 5) return;
        const replyLength = 6 + (buffer[3] === 1 ? 4 : buffer[3] === 4 ? 16 : 1 + buffer[4]!);
        if (buffer.length < replyLength) return;
        buffer = buffer.subarray(replyLength);
        stage = "http";
        socket.write(`GET / HTTP/1.0\r\nHost: ${host}\r\n\r\n`);
      }
    });
    socket.on("end", () => {
      clearTimeout(timer);
      if (stage !== "http") return reject(new Error("the SOCKS socket closed before the stream was open"));
      const text = buffer.toString("utf8");
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
      resolve({ status, body: text.slice(text.indexOf("\r\n\r\n") + 4) });
    });
    socket.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
