/** Runs the Proxmox VE API double (test/proxmox-double) as its own process, over HTTPS. */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { RecordedRequest } from "../proxmox-double/server";
import { repoRoot } from "./pulumi";

export class ProxmoxDoubleProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly endpoint: string,
    private readonly log: string,
  ) {}

  static async start(dir: string, token: string): Promise<ProxmoxDoubleProcess> {
    const cert = join(dir, "double.crt");
    const key = join(dir, "double.key");
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
      "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert], { stdio: "ignore" });
    const log = join(dir, "requests.jsonl");
    const child = spawn(join(repoRoot, "node_modules/.bin/tsx"), [join(repoRoot, "test/proxmox-double/server.ts"), "--cert", cert, "--key", key, "--log", log, "--token", token], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const endpoint = await new Promise<string>((resolve, reject) => {
      child.stdout!.on("data", (chunk: Buffer) => {
        const match = /listening (https:\/\/\S+)/.exec(chunk.toString());
        if (match) resolve(match[1]!);
      });
      child.on("exit", (code) => reject(new Error(`the Proxmox double exited with ${code}`)));
    });
    return new ProxmoxDoubleProcess(child, endpoint, log);
  }

  /** Every request so far, in order. */
  requests(): RecordedRequest[] {
    if (!existsSync(this.log)) return [];
    return readFileSync(this.log, "utf8").trim().split("\n").filter(Boolean).map((line) => JSON.parse(line) as RecordedRequest);
  }

  stop(): void {
    this.child.kill("SIGTERM");
  }
}

/** Requests that change something (everything but reads). */
export const writes = (requests: RecordedRequest[]) => requests.filter((r) => r.method !== "GET");
