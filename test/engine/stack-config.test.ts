/**
 * Reading a stack as the operator's commands do (lib/config/stack-config.ts), with
 * the real Pulumi CLI and a file backend: the passphrase an operator has not
 * exported is taken to be empty, as npm start and local:down take it, so the
 * local stack reads without one; a stack with a passphrase of its own refuses
 * that, and the message says what to export.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { readStackConfig } from "../../lib/config/stack-config";
import { minimalConfig } from "../support/images";
import { toolEnv } from "../support/pulumi";
import { privateTmpDir } from "../support/tmp";

const dir = privateTmpDir("stack-config");
const saved = { cwd: process.cwd(), env: { ...process.env } };

function pulumi(passphrase: string, ...args: string[]) {
  const result = spawnSync("pulumi", args, { cwd: dir, encoding: "utf8", env: toolEnv({ PULUMI_BACKEND_URL: `file://${join(dir, "state")}`, PULUMI_CONFIG_PASSPHRASE: passphrase }) });
  expect(result.status, result.stderr).toBe(0);
}

/** A stack whose passphrase is `passphrase`, holding a valid config with its API token as a secret. */
function makeStack(stack: string, passphrase: string) {
  pulumi(passphrase, "stack", "init", stack);
  for (const [key, value] of Object.entries(minimalConfig())) {
    if (key === "proxmoxApiToken") pulumi(passphrase, "config", "set", "--secret", "--stack", stack, `diskless-relays:${key}`, String(value));
    else pulumi(passphrase, "config", "set", "--stack", stack, `diskless-relays:${key}`, JSON.stringify(value));
  }
}

/** readStackConfig as `npm run status` calls it, from the project directory, with exactly `env` for the passphrase. */
async function readAs(stack: string, env: { PULUMI_CONFIG_PASSPHRASE?: string }) {
  process.chdir(dir);
  delete process.env.PULUMI_CONFIG_PASSPHRASE;
  delete process.env.PULUMI_CONFIG_PASSPHRASE_FILE;
  Object.assign(process.env, { PULUMI_BACKEND_URL: `file://${join(dir, "state")}` }, env);
  return readStackConfig(stack, { showSecrets: true });
}

describe("reading a stack's config for status", () => {
  beforeAll(() => {
    mkdirSync(join(dir, "state"));
    writeFileSync(join(dir, "Pulumi.yaml"), "name: diskless-relays\nruntime: nodejs\n");
    makeStack("guarded", "a passphrase of its own");
    makeStack("open", "");
  }, 120_000);

  afterEach(() => {
    process.chdir(saved.cwd);
    for (const key of Object.keys(process.env)) if (!(key in saved.env)) delete process.env[key];
    Object.assign(process.env, saved.env);
  });

  it("reads a stack whose passphrase is empty (the local stack's) with none exported", async () => {
    const config = await readAs("open", {});
    expect(config.proxmoxApiToken).toBe(minimalConfig().proxmoxApiToken);
  }, 60_000);

  it("refuses a stack with a passphrase of its own until it is exported, saying what to export", async () => {
    await expect(readAs("guarded", {})).rejects.toThrow(/^reading stack guarded needs its passphrase: export PULUMI_CONFIG_PASSPHRASE/);
    await expect(readAs("guarded", { PULUMI_CONFIG_PASSPHRASE: "not it" })).rejects.toThrow(/needs its passphrase/);
    expect((await readAs("guarded", { PULUMI_CONFIG_PASSPHRASE: "a passphrase of its own" })).proxmoxApiToken).toBe(minimalConfig().proxmoxApiToken);
  }, 60_000);
});
