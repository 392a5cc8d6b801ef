/**
 * A stack as the operator's commands see it, without running the program:
 * its configuration (`pulumi config --json`, validated by the program's own
 * schema) and its outputs (`pulumi stack output --json`). Read-only.
 * I/O: runs the Pulumi CLI.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { parseStackConfig, projectConfigObject, type StackConfig } from "./config";
import { withToolsOnPath } from "../core/paths";

const PROJECT = "diskless-relays";
const run = promisify(execFile);

async function pulumi(args: string[], stack: string | undefined): Promise<string> {
  const env = withToolsOnPath();
  // Unset, the passphrase is taken to be empty, as npm start and local:down take it: the local stack's is, and
  // a stack with a passphrase of its own refuses an empty one ("incorrect passphrase", answered below).
  if (env.PULUMI_CONFIG_PASSPHRASE === undefined && env.PULUMI_CONFIG_PASSPHRASE_FILE === undefined) env.PULUMI_CONFIG_PASSPHRASE = "";
  try {
    // --stack=NAME: the name is the flag's value, whatever it begins with.
    const { stdout } = await run("pulumi", [...args, ...(stack ? [`--stack=${stack}`] : [])], { encoding: "utf8", env, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const stderr = String((err as { stderr?: string }).stderr ?? "").trim();
    if (/passphrase must be set|incorrect passphrase/.test(stderr)) {
      throw new Error(`reading stack ${stack ?? "(selected)"} needs its passphrase: export PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) as for pulumi up`);
    }
    throw new Error(`pulumi ${args.join(" ")}${stack ? ` --stack ${stack}` : ""} failed: ${stderr || (err as Error).message}`);
  }
}

/**
 * The stack's configuration as the program sees it, objects as their JSON
 * text. With `showSecrets` (a Proxmox VE stack's API token), the stack's
 * passphrase must be in PULUMI_CONFIG_PASSPHRASE, as for pulumi up.
 */
export async function readStackConfig(stack: string | undefined, options: { showSecrets?: boolean } = {}): Promise<StackConfig> {
  const raw = JSON.parse(await pulumi(["config", "--json", ...(options.showSecrets ? ["--show-secrets"] : [])], stack)) as Record<string, { value?: string; objectValue?: unknown; secret?: boolean }>;
  const all = Object.fromEntries(Object.entries(raw).map(([key, entry]) => [key, entry.objectValue !== undefined ? JSON.stringify(entry.objectValue) : (entry.value ?? "")]));
  const secretKeys = new Set(Object.entries(raw).filter(([key, entry]) => entry.secret && key.startsWith(`${PROJECT}:`)).map(([key]) => key.slice(PROJECT.length + 1)));
  return parseStackConfig(projectConfigObject(all, PROJECT), { secretKeys });
}

/** The name of the stack a command without --stack works on. */
export async function selectedStack(): Promise<string> {
  return (await pulumi(["stack", "--show-name"], undefined)).trim();
}

/** One output of the stack, as JSON; undefined when the stack has never been deployed. */
export async function readStackOutput(stack: string | undefined, name: string): Promise<unknown> {
  const outputs = JSON.parse(await pulumi(["stack", "output", "--json"], stack)) as Record<string, unknown>;
  return outputs[name];
}
