/**
 * Runs external tools with argument vectors, never through a shell, so a
 * path with spaces, quotes or `$(…)` is one argument and nothing more.
 * I/O: spawns processes.
 */
import { spawn, spawnSync, type SpawnSyncOptions } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";

class ToolError extends Error {
  constructor(
    readonly tool: string,
    readonly status: number | null,
    readonly output: string,
    message: string,
  ) {
    super(message);
    this.name = "ToolError";
  }
}

const tail = (text: string, lines = 40) => text.trimEnd().split("\n").slice(-lines).join("\n");

/** Runs `tool args…`; returns stdout; throws a ToolError with the output's tail on failure. */
export function runTool(tool: string, args: string[], options: SpawnSyncOptions & { what?: string } = {}): string {
  const result = spawnSync(tool, args, { encoding: "utf8", maxBuffer: 256 * 1024 * 1024, ...options });
  if (result.error) throw new ToolError(tool, null, "", `${options.what ?? tool}: cannot run ${tool}: ${result.error.message}`);
  const stdout = String(result.stdout ?? "");
  const output = `${stdout}${String(result.stderr ?? "")}`;
  if (result.status !== 0) throw new ToolError(tool, result.status, output, `${options.what ?? tool} failed (exit status ${result.status}):\n${tail(output)}`);
  return stdout;
}

/**
 * Like runTool, but streams the tool's output to this process's stderr as it
 * comes, for long builds whose progress the operator watches.
 */
export function runToolStreaming(tool: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; what?: string } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(tool, args, { ...options, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const forward = (chunk: Buffer) => {
      output = (output + chunk.toString("utf8")).slice(-64 * 1024);
      process.stderr.write(chunk);
    };
    child.stdout.on("data", forward);
    child.stderr.on("data", forward);
    child.on("error", (err) => reject(new ToolError(tool, null, "", `${options.what ?? tool}: cannot run ${tool}: ${err.message}`)));
    child.on("close", (status) =>
      status === 0 ? resolve() : reject(new ToolError(tool, status, output, `${options.what ?? tool} failed (exit status ${status}):\n${tail(output)}`)),
    );
  });
}

/** Runs `work` in a fresh directory only this user can read (mkdtemp makes it 0700), removed afterwards. */
export function withPrivateTmpDir<T>(prefix: string, work: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), `diskless-relays-${prefix}-`));
  try {
    return work(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * How the program starts one of its TypeScript scripts as a child: this node
 * with tsx's CommonJS hook from `projectDir`'s node_modules, as the npm
 * scripts and steps do (the tsx command would start a second node and an ESM
 * loader thread). Returns the command and its arguments; throws when tsx is
 * not installed there.
 */
export function tsScriptCommand(projectDir: string, script: string, args: string[] = []): [string, string[]] {
  let hook: string;
  try {
    // createRequire wants an absolute path; the program's projectDir is ".".
    hook = createRequire(resolve(projectDir, "package.json")).resolve("tsx/cjs");
  } catch {
    throw new Error(`tsx is not installed in ${resolve(projectDir)}: run npm ci there`);
  }
  return [process.execPath, ["--require", hook, script, ...args]];
}
