/**
 * Runs real tor, briefly and offline, to ask it what it makes of a torrc:
 * each probe starts one tor with `DisableNetwork 1` and a private temporary
 * DataDirectory (0700, removed afterwards), asks its control socket the
 * GETINFO keys it was given (e.g. exit-policy/full, dir/server/authority)
 * as soon as tor has built its descriptor, and stops it. All probes run in
 * parallel. Plain JavaScript, run in a worker thread that lib/tor/tor-probe.ts
 * waits for synchronously (planFleet is synchronous, tor's control
 * protocol is not), or by hand with the request on stdin. I/O: temporary
 * files, tor processes, unix sockets.
 *
 * stdin:  {"tor": "tor", "timeoutMs": 20000, "probes": [{"lines": [...], "queries": [...], "files": {"keys/x": "<base64>"}, "commands": ["..."]}]}
 * stdout: [{"answers": {"exit-policy/full": "..."}, "replies": ["250 OK"], "log": "..."} | {"error": "...", "log": "..."}]
 */
"use strict";
const { spawn } = require("node:child_process");
const { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } = require("node:fs");
const { createConnection } = require("node:net");
const { tmpdir } = require("node:os");
const { dirname, join } = require("node:path");

const { setTimeout: sleep } = require("node:timers/promises");

/** A minimal control-protocol client: one command at a time, replies as {status, lines}. */
function controlConnection(path) {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path });
    let buffer = "";
    let current = [];
    let dataMode = false;
    const waiting = [];
    socket.setEncoding("utf8");
    socket.on("data", (chunk) => {
      buffer += chunk;
      let newline;
      while ((newline = buffer.indexOf("\r\n")) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 2);
        if (dataMode) {
          if (line === ".") dataMode = false;
          else current.push(line.startsWith("..") ? line.slice(1) : line);
          continue;
        }
        current.push(line.slice(4));
        if (line[3] === "+") dataMode = true;
        if (line[3] === " ") {
          const reply = { status: line.slice(0, 3), lines: current };
          current = [];
          const next = waiting.shift();
          if (next) next.resolve(reply);
        }
      }
    });
    socket.on("error", (err) => {
      waiting.splice(0).forEach((w) => w.reject(err));
      reject(err);
    });
    socket.on("close", () => waiting.splice(0).forEach((w) => w.reject(new Error("tor closed its control connection"))));
    socket.on("connect", () =>
      resolve({
        command: (line) =>
          new Promise((res, rej) => {
            waiting.push({ resolve: res, reject: rej });
            socket.write(`${line}\r\n`);
          }),
        close: () => socket.destroy(),
      }),
    );
  });
}

/** GETINFO's value: "key=value" on one line, or "key=" followed by data lines. */
function infoValue(key, lines) {
  const first = lines[0] || "";
  const rest = first.startsWith(`${key}=`) ? first.slice(key.length + 1) : "";
  return rest === "" ? lines.slice(1, -1).join("\n") : rest;
}

async function probe(tor, spec, deadline) {
  const dir = mkdtempSync(join(tmpdir(), "diskless-relays-probe-"));
  const dataDirectory = join(dir, "data");
  const socketPath = join(dir, "control");
  let child;
  let spawnError;
  let log = "";
  try {
    mkdirSync(dataDirectory, { mode: 0o700 });
    for (const [name, base64] of Object.entries(spec.files || {})) {
      const file = join(dataDirectory, name);
      mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
      writeFileSync(file, Buffer.from(base64, "base64"), { mode: 0o600 });
    }
    const torrc = [
      ...spec.lines,
      `DataDirectory ${dataDirectory}`,
      `ControlSocket ${socketPath}`,
      "DisableNetwork 1",
      "PublishServerDescriptor 0",
      "SocksPort 0",
      "Log notice stdout",
      // tor exits by itself if this process dies before it could stop it.
      `__OwningControllerProcess ${process.pid}`,
    ];
    writeFileSync(join(dir, "torrc"), torrc.join("\n") + "\n", { mode: 0o600 });
    child = spawn(tor, ["-f", join(dir, "torrc"), "--defaults-torrc", "/dev/null"], { stdio: ["ignore", "pipe", "pipe"] });
    const exited = new Promise((resolve) => child.on("close", (code) => resolve(code)));
    child.stdout.on("data", (chunk) => (log += chunk));
    child.stderr.on("data", (chunk) => (log += chunk));
    child.on("error", (err) => (spawnError = err));
    let gone = false;
    exited.then(() => (gone = true));

    while (!existsSync(socketPath)) {
      if (spawnError) throw new Error(`cannot run ${tor}: ${spawnError.message}`);
      if (gone) throw new Error("tor stopped before it opened its control socket");
      if (Date.now() > deadline) throw new Error("tor did not open its control socket in time");
      await sleep(5);
    }
    // tor binds the socket a moment before it listens on it: a refused connection is tried again.
    let control;
    while (!control) {
      try {
        control = await controlConnection(socketPath);
      } catch (err) {
        if (err.code !== "ECONNREFUSED" || gone || Date.now() > deadline) throw err;
        await sleep(5);
      }
    }
    try {
      const auth = await control.command("AUTHENTICATE");
      if (auth.status !== "250") throw new Error(`tor refused AUTHENTICATE: ${auth.lines.join(" ")}`);
      const answers = {};
      for (const key of spec.queries) {
        for (;;) {
          // tor builds its descriptor lazily, and with DisableNetwork its periodic rebuild never runs:
          // asking for our own extra-info document (router_extrainfo_digest_is_me) makes it rebuild both.
          await control.command(`GETINFO extra-info/digest/${"0".repeat(40)}`);
          const reply = await control.command(`GETINFO ${key}`);
          if (reply.status === "250") {
            answers[key] = infoValue(key, reply.lines);
            break;
          }
          // 551: tor has not built its descriptor yet (keys, then the descriptor, come after the control socket).
          if (reply.status !== "551" || Date.now() > deadline) {
            return { error: `GETINFO ${key}: ${reply.status} ${reply.lines.join(" ")}`, log };
          }
          await sleep(10);
        }
      }
      // Raw commands after that (e.g. "+POSTDESCRIPTOR ...\r\n<body>\r\n."), each answered as "STATUS text".
      const replies = [];
      for (const command of spec.commands || []) {
        const reply = await control.command(command);
        replies.push(`${reply.status} ${reply.lines.join("\n")}`);
      }
      return { answers, replies, log };
    } finally {
      control.close();
    }
  } catch (err) {
    return { error: err.message, log };
  } finally {
    if (child && !spawnError && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      await new Promise((resolve) => child.once("close", resolve));
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

async function run(request) {
  // One deadline for all: the probes run side by side.
  const deadline = Date.now() + request.timeoutMs;
  return Promise.all(request.probes.map((spec) => probe(request.tor, spec, deadline)));
}

const { isMainThread, workerData } = require("node:worker_threads");
if (isMainThread) {
  // Run by hand: the request on stdin, the results on stdout.
  run(JSON.parse(readFileSync(0, "utf8"))).then(
    (results) => process.stdout.write(JSON.stringify(results)),
    (err) => {
      process.stderr.write(`${err.stack || err}\n`);
      process.exit(1);
    },
  );
} else {
  // As lib/tor/tor-probe.ts runs it: a worker thread whose caller waits on `signal` (Atomics), then reads `port`.
  const { request, port, signal } = workerData;
  const finish = (message) => {
    port.postMessage(message);
    Atomics.store(signal, 0, 1);
    Atomics.notify(signal, 0);
  };
  run(request).then(
    (results) => finish({ results }),
    (err) => finish({ failure: String((err && err.stack) || err) }),
  );
}
