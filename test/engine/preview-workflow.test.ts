/**
 * Replays the pull request preview (.github/workflows/preview.yml) as an
 * operator sets it up: keys made on a key-generation host, exported there
 * with `keys -- export-shipped`, unpacked into a fresh checkout by the
 * workflow's own step text, and previewed there by the workflow's own
 * preview step with the real engine and the project's plugins. The fremont
 * stack is the repository's Pulumi.fremont.yaml, unchanged: its Proxmox VE
 * endpoint (pve.fmt2.example.net) cannot be reached from here, and a preview
 * of a stack with no state needs nothing from it (checked below).
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { lookup } from "node:dns/promises";
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot, TestProject, toolEnv, tsNode } from "../support/pulumi";

const yaml = require("js-yaml") as { load(text: string): unknown };

const PASSPHRASE = "diskless-relays-example"; // Pulumi.fremont.yaml's example passphrase (README)
const FREMONT = [
  ["fmt-exit-1", "DisklessFmtExit1"],
  ["fmt-exit-2", "DisklessFmtExit2"],
  ["fmt-guard-1", "DisklessFmtGuard1"],
  ["fmt-guard-2", "DisklessFmtGuard2"],
] as const;

interface WorkflowStep {
  name?: string;
  run?: string;
}

/** The run: text of the workflow step with this name, as the workflow file has it. */
function workflowStep(name: string): string {
  const workflow = yaml.load(readFileSync(join(repoRoot, ".github/workflows/preview.yml"), "utf8")) as { jobs: Record<string, { steps: WorkflowStep[] }> };
  const step = Object.values(workflow.jobs)
    .flatMap((job) => job.steps)
    .find((s) => s.name === name);
  if (!step?.run) throw new Error(`.github/workflows/preview.yml has no step "${name}" with a run: script`);
  // The replay hands the step its environment itself; an expression inside the script would go unreplayed.
  expect(step.run).not.toContain("${{");
  return step.run;
}

/**
 * Runs a step's script as the workflow's `shell: bash` does (bash --noprofile
 * --norc -eo pipefail), without blocking the test worker (a preview takes
 * minutes on a busy machine).
 */
function runStep(dir: string, name: string, env: Record<string, string>): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const script = join(dir, ".step.sh");
  writeFileSync(script, workflowStep(name));
  const child = spawn("bash", ["--noprofile", "--norc", "-eo", "pipefail", script], { cwd: dir, env: toolEnv(env) });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
  child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (status) => {
      rmSync(script);
      resolve({ status, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") });
    });
  });
}

function exportShipped(dir: string) {
  return spawnSync(...tsNode("cli/keys.ts", "export-shipped", "--stack", "fremont"), { cwd: dir, env: toolEnv(), maxBuffer: 64 * 1024 * 1024 });
}

function filesUnder(root: string): string[] {
  return readdirSync(root, { recursive: true, encoding: "utf8" })
    .map((path) => join(root, path))
    .filter((path) => statSync(path).isFile());
}

/** A fresh checkout of the project for the fremont stack: the program, its scripts and workflow, and the repository's stack file. */
function fremontCheckout(): TestProject {
  const project = new TestProject("fremont", { passphrase: PASSPHRASE });
  for (const path of ["Pulumi.fremont.yaml", "scripts", ".github"]) cpSync(join(repoRoot, path), join(project.dir, path), { recursive: true });
  return project;
}

describe("the pull request preview, replayed", () => {
  let keyHost: TestProject;
  let runner: TestProject;
  let bundle: Buffer;
  let unpacked: string;
  let step: Awaited<ReturnType<typeof runStep>>;

  beforeAll(async () => {
    keyHost = fremontCheckout();
    for (const [relay, nickname] of FREMONT) {
      const made = keyHost.script("cli/keys.ts", "init", relay, "--nickname", nickname, "--family", "fremont");
      expect(made.status, made.stderr).toBe(0);
    }
    expect(keyHost.script("cli/keys.ts", "family", "init", "fremont").status).toBe(0);
    // Where Pulumi.fremont.yaml puts the collection key.
    execFileSync("mkdir", ["-p", join(keyHost.dir, "keys/collector")]);
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "collector", "-f", join(keyHost.dir, "keys/collector/id_ed25519")]);

    const exported = exportShipped(keyHost.dir);
    expect(exported.status, exported.stderr.toString()).toBe(0);
    bundle = exported.stdout;
    unpacked = mkdtempSync(join(tmpdir(), "diskless-relays-bundle-"));
    execFileSync("tar", ["-xz", "-C", unpacked], { input: bundle });

    runner = fremontCheckout();
    const keys = await runStep(runner.dir, "The fleet's public key files and preview records", { RELAY_KEYS: bundle.toString("base64") });
    expect(keys.status, keys.stderr).toBe(0);
    step = await runStep(runner.dir, "Preview and its summary", {
      PULUMI_BACKEND_URL: `file://${join(runner.dir, ".pulumi")}`,
      PULUMI_CONFIG_PASSPHRASE: PASSPHRASE,
      GITHUB_STEP_SUMMARY: join(runner.dir, ".step-summary.md"),
    });
  }, 900_000);
  afterAll(() => {
    keyHost?.destroy();
    runner?.destroy();
    if (unpacked) rmSync(unpacked, { recursive: true, force: true });
  });

  it("packs no private key: no such file, and no private key's bytes in any file", () => {
    const members = execFileSync("tar", ["-tz"], { input: bundle, encoding: "utf8" }).trim().split("\n");
    const names = members.map((m) => m.split("/").at(-1));
    for (const secret of ["secret_id_key", "ed25519_master_id_secret_key", "ed25519_signing_secret_key", "ssh_host_ed25519_key", "id_ed25519", "secret_onion_key", "secret_onion_key_ntor", "fremont.secret_family_key"]) {
      expect(names, `${secret} is in the bundle`).not.toContain(secret);
    }
    // Every private file on the key host, by content: none of its secret part is anywhere in the bundle.
    const exportedBytes = filesUnder(unpacked).map((file) => readFileSync(file));
    const privates = filesUnder(join(keyHost.dir, "keys")).filter((file) => /secret|ssh_host_ed25519_key$|id_ed25519$/.test(file));
    expect(privates.length).toBeGreaterThanOrEqual(4 * 5 + 2);
    for (const file of privates) {
      const bytes = readFileSync(file);
      // tor's binary keys: 32 bytes of secret after their 32-byte header. PEM (RSA): base64 inside the
      // modulus. OpenSSH: base64 near the end, past the public half that the .pub file carries too.
      const openssh = bytes.toString("latin1").startsWith("-----BEGIN OPENSSH");
      const secret = openssh ? bytes.subarray(bytes.length - 100, bytes.length - 50) : bytes.length > 96 ? bytes.subarray(80, 140) : bytes.subarray(32, 64);
      for (const exported of exportedBytes) expect(exported.includes(secret), `${relative(keyHost.dir, file)} is in the bundle`).toBe(false);
    }
  });

  it("packs what the fremont preview reads, at the paths Pulumi.fremont.yaml gives them", () => {
    const members = execFileSync("tar", ["-tz"], { input: bundle, encoding: "utf8" }).trim().split("\n").sort();
    const perRelay = FREMONT.flatMap(([relay]) => ["ed25519_master_id_public_key", "ed25519_signing_cert", "preview-record.json", "ssh_host_ed25519_key.pub"].map((f) => `keys/${relay}/${f}`));
    expect(members).toEqual(["keys/collector/id_ed25519.pub", ...perRelay].sort());
  });

  it("unpacks into the checkout as private files", () => {
    for (const [relay] of FREMONT) expect(statSync(join(runner.dir, "keys", relay)).mode & 0o077).toBe(0);
    expect(existsSync(join(runner.dir, "keys/collector/id_ed25519.pub"))).toBe(true);
  });

  it("previews the fremont stack with the real engine, and comments a summary line per relay before the raw diff", () => {
    expect(step.status, step.stdout + step.stderr).toBe(0);
    const comment = readFileSync(join(runner.dir, ".preview/comment.md"), "utf8");
    expect(comment.split("\n")[0]).toBe("<!-- diskless-relays preview -->");
    const lines = comment.split("\n").filter((line) => line.startsWith("- "));
    // A stack with no state: every relay is new to it.
    expect(lines.sort()).toEqual(FREMONT.map(([relay]) => `- ${relay}: new`).sort());
    const raw = comment.indexOf("```diff");
    expect(raw).toBeGreaterThan(comment.indexOf("- fmt-guard-2: new"));
    expect(comment.slice(raw)).toMatch(/\+ proxmoxve:index\/vmLegacy:VmLegacy: \(create\)\n\s+\[urn=[^\]]*::fmt-exit-1-vm\]/);
    expect(readFileSync(join(runner.dir, ".step-summary.md"), "utf8")).toBe(comment);
  });

  it("keeps the passphrase and the API token out of the comment", () => {
    const comment = readFileSync(join(runner.dir, ".preview/comment.md"), "utf8");
    expect(comment).not.toContain(PASSPHRASE);
    expect(comment).toContain("[secret]");
  });

  it("plans each relay's image from the same inputs as a preview on the key host, which holds the private keys", async () => {
    const onKeyHost = await keyHost.preview();
    expect(onKeyHost.result.status, onKeyHost.result.stderr).toBe(0);
    const onRunner = JSON.parse(readFileSync(join(runner.dir, ".preview/plan.json"), "utf8"));
    const triggers = (steps: { urn: string; newState?: { inputs?: Record<string, unknown> } }[]) =>
      Object.fromEntries(steps.filter((s) => s.urn.endsWith("-image-build")).map((s) => [s.urn, s.newState?.inputs?.triggers]));
    const expected = triggers(onKeyHost.raw.steps);
    expect(Object.keys(expected)).toHaveLength(FREMONT.length);
    expect(triggers(onRunner.steps)).toEqual(expected);
  }, 600_000);

  it("needed nothing from the Proxmox VE endpoint, which cannot be reached from here", async () => {
    await expect(lookup("pve.fmt2.example.net")).rejects.toThrow();
    expect(step.status).toBe(0);
  });

  it("names the missing file when a relay's preview record is not in the checkout", async () => {
    rmSync(join(runner.dir, "keys/fmt-guard-2/preview-record.json"));
    const result = await runner.runAsync("preview", "--non-interactive");
    expect(result.status).not.toBe(0);
    expect(result.stdout + result.stderr).toMatch(/relay fmt-guard-2: keys\/fmt-guard-2\/ed25519_signing_secret_key is missing.*reads keys\/fmt-guard-2\/preview-record\.json instead, made by `npm run --silent keys -- export-shipped`/s);
  }, 600_000);

  it("export-shipped names the file the preview needs when the key host lacks it, and exports nothing", () => {
    rmSync(join(keyHost.dir, "keys/collector/id_ed25519.pub"));
    const result = exportShipped(keyHost.dir);
    expect(result.status).toBe(1);
    expect(result.stdout.length).toBe(0);
    expect(result.stderr.toString()).toMatch(/stateCollection\.privateKeyFile: keys\/collector\/id_ed25519\.pub is missing/);
  });
});

describe("export-shipped follows the stack config", () => {
  let keyHost: TestProject;
  beforeAll(() => {
    keyHost = fremontCheckout();
    for (const [relay, nickname] of FREMONT) keyHost.script("cli/keys.ts", "init", relay, "--nickname", nickname, "--store", "vault/relays");
    execFileSync("mkdir", ["-p", join(keyHost.dir, "vault/ssh")]);
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(keyHost.dir, "vault/ssh/collector")]);
    const stackFile = join(keyHost.dir, "Pulumi.fremont.yaml");
    const text = readFileSync(stackFile, "utf8")
      .replace("privateKeyFile: keys/collector/id_ed25519", "privateKeyFile: vault/ssh/collector")
      .replace("  diskless-relays:certificate:", "  diskless-relays:keyStore: vault/relays\n  diskless-relays:certificate:");
    writeFileSync(stackFile, text);
  }, 300_000);
  afterAll(() => keyHost?.destroy());

  it("packs the collection key and the relays' keys where the config puts them", () => {
    const result = exportShipped(keyHost.dir);
    expect(result.status, result.stderr.toString()).toBe(0);
    const members = execFileSync("tar", ["-tz"], { input: result.stdout, encoding: "utf8" }).trim().split("\n");
    expect(members).toContain("vault/ssh/collector.pub");
    expect(members).toContain("vault/relays/fmt-exit-1/preview-record.json");
    expect(members.filter((m) => !m.startsWith("vault/"))).toEqual([]);
  });

  it("refuses a key path outside the project, naming the field", () => {
    const stackFile = join(keyHost.dir, "Pulumi.fremont.yaml");
    const outside = mkdtempSync(join(tmpdir(), "diskless-relays-outside-"));
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(outside, "collector")]);
    const before = readFileSync(stackFile, "utf8");
    writeFileSync(stackFile, before.replace("privateKeyFile: vault/ssh/collector", `privateKeyFile: ${join(outside, "collector")}`));
    const result = exportShipped(keyHost.dir);
    writeFileSync(stackFile, before);
    rmSync(outside, { recursive: true, force: true });
    expect(result.status).toBe(1);
    expect(result.stderr.toString()).toMatch(/stateCollection\.privateKeyFile: .*collector\.pub is outside the project/);
  });
});

describe("the workflow's key step", () => {
  it("says what to do when RELAY_KEYS is not set (a pull request from a fork gets no secrets)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "diskless-relays-nokeys-"));
    const result = await runStep(dir, "The fleet's public key files and preview records", { RELAY_KEYS: "" });
    rmSync(dir, { recursive: true, force: true });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/RELAY_KEYS is not set .*npm run --silent keys -- export-shipped --stack fremont \| base64 -w0/);
  });
});
