/**
 * Runs the real Pulumi CLI on a copy of this project, with a throwaway local
 * backend and a test stack, so that tests drive the genuine engine and
 * provider plugins exactly as an operator's `pulumi preview` would.
 */
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { withToolsOnPath } from "../../lib/core/paths";
import { tsScriptCommand } from "../../lib/core/run";

export const repoRoot = join(__dirname, "..", "..");
const PROGRAM_FILES = ["Pulumi.yaml", "index.ts", "package.json", "tsconfig.json", "lib", "components", "images", "cli"];

/** How the tests' engine runs the program: transpiled only, by swc (test/support/tsconfig.swc.json). */
export const PROGRAM_TRANSPILED_BY_SWC = {
  PULUMI_NODEJS_TRANSPILE_ONLY: "true",
  PULUMI_NODEJS_TSCONFIG_PATH: join(__dirname, "tsconfig.swc.json"),
};

/** How Pulumi runs the program by default, as an operator's `pulumi up` does: ts-node type-checks every file. */
export const PROGRAM_TYPE_CHECKED = { PULUMI_NODEJS_TRANSPILE_ONLY: "false", PULUMI_NODEJS_TSCONFIG_PATH: "tsconfig.json" };

/** How `npm run` starts the program's scripts (package.json): the command and arguments for `script`, a .ts file, run with `args`. */
export const tsNode = (script: string, ...args: string[]) => tsScriptCommand(repoRoot, script, args);

export function toolEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...withToolsOnPath(),
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_SKIP_CONFIRMATIONS: "true",
    // The engine runs the program through ts-node, which by default type-checks every file on every run, and the
    // suite runs the program a few hundred times. `npm test` type-checks the same files once with `tsc --noEmit`
    // before any test, so here the engine only transpiles, and through swc: TypeScript's own transpiler, loaded
    // and run per file, cost as much again (npm run bench:program). An operator's `pulumi up` keeps Pulumi's
    // default and type-checks.
    ...PROGRAM_TRANSPILED_BY_SWC,
    SYFT_CHECK_FOR_APP_UPDATE: "false",
    ...extra,
  };
}

export interface PulumiResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface PreviewStep {
  op: string;
  urn: string;
  type: string;
  name: string;
  inputs: Record<string, unknown>;
  detailedDiff?: Record<string, { kind: string }>;
  diffReasons?: string[];
  replaceReasons?: string[];
}

/** A child's exit status and everything it printed. */
function collect(child: ReturnType<typeof spawn>): Promise<PulumiResult> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr!.on("data", (chunk: Buffer) => err.push(chunk));
    child.on("error", reject);
    child.on("close", (status) => resolve({ status, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") }));
  });
}

export class TestProject {
  readonly dir: string;
  readonly stack: string;
  private readonly env: NodeJS.ProcessEnv;

  /** Copies the program into a private temp dir and creates a stack in a local backend there. */
  constructor(stack = "test", options: { passphrase?: string } = {}) {
    this.dir = mkdtempSync(join(tmpdir(), "diskless-relays-project-"));
    for (const file of PROGRAM_FILES) {
      if (existsSync(join(repoRoot, file))) cpSync(join(repoRoot, file), join(this.dir, file), { recursive: true });
    }
    symlinkSync(join(repoRoot, "node_modules"), join(this.dir, "node_modules"));
    mkdirSync(join(this.dir, ".pulumi"), { mode: 0o700 });
    this.stack = stack;
    this.env = toolEnv({ PULUMI_BACKEND_URL: `file://${join(this.dir, ".pulumi")}`, PULUMI_CONFIG_PASSPHRASE: options.passphrase ?? "diskless-relays-test" });
    this.must("stack", "init", "--non-interactive");
  }

  /**
   * Replaces the stack's plain config with `config` (JSON is YAML, so it is
   * written as is, beside the stack's encryption salt); `secrets` are then
   * set with `pulumi config set --secret`.
   */
  configure(config: Record<string, unknown>, secrets: Record<string, string> = {}): void {
    const file = join(this.dir, `Pulumi.${this.stack}.yaml`);
    const salt = existsSync(file) ? /^encryptionsalt: .*$/m.exec(readFileSync(file, "utf8"))?.[0] : undefined;
    const namespaced = Object.fromEntries(Object.entries(config).map(([key, value]) => [`diskless-relays:${key}`, value]));
    writeFileSync(file, `${salt ?? ""}\nconfig: ${JSON.stringify(namespaced, null, 2)}\n`);
    for (const [key, value] of Object.entries(secrets)) this.must("config", "set", "--secret", key, value);
  }

  /** Runs one of the program's scripts (e.g. cli/broker.ts) in the project, as `npm run` would, against this stack's backend. */
  script(path: string, ...args: string[]): PulumiResult {
    const result = spawnSync(...tsNode(join(this.dir, path), ...args), { cwd: this.dir, env: this.env, encoding: "utf8" });
    if (result.error) throw result.error;
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  /** Like script, without blocking the test worker (a long script, e.g. a rebuild, would starve vitest's RPC). */
  scriptAsync(path: string, ...args: string[]): Promise<PulumiResult> {
    return this.scriptAsyncWith({}, path, ...args);
  }

  /** Like scriptAsync, with environment variables changed (e.g. the PATH `npm run` gives a user who never sourced scripts/env.sh). */
  scriptAsyncWith(env: Record<string, string>, path: string, ...args: string[]): Promise<PulumiResult> {
    return collect(spawn(...tsNode(join(this.dir, path), ...args), { cwd: this.dir, env: { ...this.env, ...env } }));
  }

  /** `npm run status -- --stack STACK --json` in the project: its exit status and its rows by relay. */
  async status(): Promise<{ status: number | null; rows: Map<string, any> }> {
    const result = await this.scriptAsync("cli/status.ts", "--stack", this.stack, "--json");
    let board: { relays: { relay: string }[] };
    try {
      board = JSON.parse(result.stdout);
    } catch {
      throw new Error(`status printed no JSON (${result.status}):\n${result.stdout}\n${result.stderr}`);
    }
    return { status: result.status, rows: new Map<string, any>(board.relays.map((row) => [row.relay, row])) };
  }

  writeFile(path: string, content: string): void {
    writeFileSync(join(this.dir, path), content);
  }

  run(...args: string[]): PulumiResult {
    const result = spawnSync("pulumi", [...args, "--stack", this.stack, "--cwd", this.dir], {
      env: this.env,
      encoding: "utf8",
      maxBuffer: 256 * 1024 * 1024,
    });
    if (result.error) throw result.error;
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  /** Like run, with the program's clock moved by `offset` (libfaketime, e.g. "+40d"). */
  runAt(offset: string, ...args: string[]): PulumiResult {
    const result = spawnSync("faketime", ["-f", offset, "pulumi", ...args, "--stack", this.stack, "--cwd", this.dir], {
      env: this.env,
      encoding: "utf8",
    });
    if (result.error) throw result.error;
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  /** Like runAt, without blocking the test worker. */
  runAtAsync(offset: string, ...args: string[]): Promise<PulumiResult> {
    return collect(spawn("faketime", ["-f", offset, "pulumi", ...args, "--stack", this.stack, "--cwd", this.dir], { env: this.env }));
  }

  /** Like run, but in the background, for tests that interrupt it. */
  spawn(...args: string[]) {
    return spawn("pulumi", [...args, "--stack", this.stack, "--cwd", this.dir], { env: this.env });
  }

  /** Like runAsync, with extra environment variables for the engine, its plugins and the steps. */
  runAsyncWith(env: Record<string, string>, ...args: string[]): Promise<PulumiResult> {
    return collect(spawn("pulumi", [...args, "--stack", this.stack, "--cwd", this.dir], { env: { ...this.env, ...env } }));
  }

  /**
   * Like run, without blocking the test worker: long runs (image builds)
   * would otherwise starve the test runner's own RPC.
   */
  runAsync(...args: string[]): Promise<PulumiResult> {
    return collect(this.spawn(...args));
  }

  must(...args: string[]): string {
    const result = this.run(...args);
    if (result.status !== 0) throw new Error(`pulumi ${args.join(" ")} failed (${result.status}):\n${result.stdout}\n${result.stderr}`);
    return result.stdout;
  }

  /** `pulumi preview --json`, reduced to the steps a reviewer reads. */
  async preview(): Promise<{ steps: PreviewStep[]; raw: any; result: PulumiResult }> {
    const result = await this.runAsync("preview", "--json");
    let raw: any;
    try {
      raw = JSON.parse(result.stdout);
    } catch {
      throw new Error(`pulumi preview printed no JSON (${result.status}):\n${result.stdout}\n${result.stderr}`);
    }
    const steps = (raw.steps ?? []).map((step: any): PreviewStep => {
      const state = step.newState ?? step.oldState ?? {};
      return {
        op: step.op,
        urn: step.urn,
        type: state.type ?? step.urn.split("::")[2],
        name: step.urn.split("::").at(-1),
        inputs: state.inputs ?? {},
        detailedDiff: step.detailedDiff,
        diffReasons: step.diffReasons,
        replaceReasons: step.replaceReasons,
      };
    });
    return { steps, raw, result };
  }

  destroy(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
