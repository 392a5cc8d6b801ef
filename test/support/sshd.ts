/**
 * A real OpenSSH server on 127.0.0.1 standing in for a running relay's SSH
 * server: the relay's own host key, the collection key restricted to the
 * relay's real request dispatcher (relay-collector, which runs the real
 * relay-export-state and relay-health), pointed at relay-like directories.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { join } from "node:path";
import { repoRoot } from "./pulumi";

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (address && typeof address === "object" ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

export class RelaySshd {
  private process?: ChildProcess;
  constructor(readonly port: number) {}

  /**
   * `hostKey` is the relay's ssh_host_ed25519_key, `collectorPublicKey` the
   * collection key's .pub; `guestRoot` stands in for the relay's / (test/support/guest-root.ts).
   */
  static async start(dir: string, hostKey: string, collectorPublicKey: string, guestRoot: string, port?: number): Promise<RelaySshd> {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const collector = join(repoRoot, "images/rootfs/files/usr/local/sbin/relay-collector");
    const key = readFileSync(collectorPublicKey, "utf8").trim().split(/\s+/).slice(0, 2).join(" ");
    const env = `RELAY_ROOT=${guestRoot}`;
    writeFileSync(join(dir, "authorized_keys"), `restrict,command="${env} ${collector}" ${key}\n`, { mode: 0o600 });
    port ??= await freePort();
    writeFileSync(
      join(dir, "sshd_config"),
      [
        `HostKey "${hostKey}"`,
        `AuthorizedKeysFile "${join(dir, "authorized_keys")}"`,
        "PermitRootLogin forced-commands-only",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        // Test directories live under /tmp, whose sticky mode StrictModes rejects.
        "StrictModes no",
        `PidFile "${join(dir, "sshd.pid")}"`,
        "ListenAddress 127.0.0.1",
      ].join("\n") + "\n",
    );
    mkdirSync("/run/sshd", { recursive: true });
    const sshd = new RelaySshd(port);
    let output = "";
    sshd.process = spawn("/usr/sbin/sshd", ["-D", "-e", "-f", join(dir, "sshd_config"), "-p", String(port)], { stdio: ["ignore", "ignore", "pipe"] });
    sshd.process.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    // Ready means listening: a server that refused its config says why, here.
    for (let i = 0; !(await listening(port)); i++) {
      if (i > 50 || sshd.process.exitCode !== null) throw new Error(`the stand-in sshd did not start on port ${port}: ${output}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return sshd;
  }

  stop(): void {
    this.process?.kill("SIGTERM");
  }
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.on("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
  });
}
