/**
 * The pinned channel to a running relay: OpenSSH with the relay image's own
 * host key pinned (no trust on first use) and the collection key, which the
 * relay restricts to two requests: "export-state" (a tar of its onion keys
 * and state) and "health". I/O: runs ssh, with a one-line known_hosts file
 * (the pinned public host key) in a private temporary directory.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RelayChannel } from "../steps/steps";

export type RelayRequest = "export-state" | "health";

export interface RelayAnswer {
  ok: boolean;
  stdout: Buffer;
  /** ssh's or the relay's complaint, for the operator. */
  error: string;
}

/**
 * ssh splits UserKnownHostsFile at whitespace and reads quotes, so the file
 * lives where its path has neither, whatever the project's paths look like.
 */
function knownHostsDir(): string {
  const base = /[\s"'\\]/.test(tmpdir()) ? "/tmp" : tmpdir();
  return mkdtempSync(join(base, "diskless-relays-ssh-"));
}

/** Asks the relay over SSH; never throws for a relay that does not answer. */
export async function askRelay(channel: RelayChannel, request: RelayRequest): Promise<RelayAnswer> {
  const dir = knownHostsDir();
  try {
    return await ask(channel, request, join(dir, "known_hosts"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function ask(channel: RelayChannel, request: RelayRequest, knownHosts: string): Promise<RelayAnswer> {
  const hostPattern = channel.port === 22 ? channel.host : `[${channel.host}]:${channel.port}`;
  writeFileSync(knownHosts, `${hostPattern} ${channel.hostPublicKey}\n`, { mode: 0o600 });
  const args = [
    "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=yes",
    "-o", `UserKnownHostsFile=${knownHosts}`,
    "-o", "GlobalKnownHostsFile=/dev/null",
    "-o", "IdentitiesOnly=yes",
    "-o", `ConnectTimeout=${channel.connectTimeoutSeconds}`,
    "-o", "ServerAliveInterval=5",
    "-o", "ServerAliveCountMax=3",
    "-o", "LogLevel=ERROR",
    "-i", channel.privateKeyFile,
    "-p", String(channel.port),
    "--",
    `${channel.user}@${channel.host}`,
    request,
  ];
  // A relay on the local testnet is reached from inside its namespace.
  const [command, ...argv] = channel.netns ? ["ip", "netns", "exec", channel.netns, "ssh", ...args] : ["ssh", ...args];
  return new Promise((resolve) => {
    const ssh = spawn(command!, argv, { stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    ssh.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    ssh.stderr.on("data", (chunk: Buffer) => err.push(chunk));
    ssh.on("error", (error) => resolve({ ok: false, stdout: Buffer.alloc(0), error: `cannot run ssh: ${error.message}` }));
    ssh.on("close", (status) => {
      const stderr = Buffer.concat(err).toString("utf8").trim();
      resolve({ ok: status === 0, stdout: Buffer.concat(out), error: status === 0 ? stderr : stderr || `ssh exited with status ${status}` });
    });
  });
}
