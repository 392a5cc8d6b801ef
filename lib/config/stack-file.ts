/**
 * A stack's config read from its files (Pulumi.yaml and Pulumi.STACK.yaml),
 * for commands that run outside the engine on a host that may hold no
 * backend or passphrase (the key-generation host). Validated by the same
 * schema as the program's (lib/config/config.ts). Does I/O: reads those files.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, parseStackConfig, projectConfigObject, type StackConfig } from "./config";

// js-yaml (a dependency, also the one Pulumi reads its own YAML with) ships no type declarations.
const yaml = require("js-yaml") as { load(text: string): unknown };

/**
 * Stand-ins for the encrypted secrets, which such a command never reads: each
 * passes its schema rule, and nothing is deployed with it.
 */
const SECRET_STAND_INS: Record<string, string> = {
  proxmoxApiToken: "unread@pve!stand-in=unread",
  proxmoxRootPassword: "unread",
};

function readYaml(file: string): Record<string, unknown> {
  if (!existsSync(file)) throw new ConfigError([{ path: file, message: "is missing: run this in the project directory, and name an existing stack" }]);
  const value = yaml.load(readFileSync(file, "utf8"));
  return value && typeof value === "object" ? (value as Record<string, unknown>) : {};
}

/** The stack's config as the program would parse it, its secrets replaced by stand-ins. */
export function readStackConfigFile(projectDir: string, stack: string): StackConfig {
  const project = readYaml(join(projectDir, "Pulumi.yaml"));
  const name = String(project.name);
  const all: Record<string, string> = {};
  // The project's declared defaults, then the stack's own values, as Pulumi layers them.
  for (const [key, decl] of Object.entries((project.config ?? {}) as Record<string, { default?: unknown }>)) {
    // As Pulumi hands them over: text as it is, anything else as JSON.
    if (decl && typeof decl === "object" && "default" in decl) all[key.includes(":") ? key : `${name}:${key}`] = typeof decl.default === "string" ? decl.default : JSON.stringify(decl.default);
  }
  const stackFile = readYaml(join(projectDir, `Pulumi.${stack}.yaml`));
  const secretKeys = new Set<string>();
  for (const [key, value] of Object.entries((stackFile.config ?? {}) as Record<string, unknown>)) {
    const short = key.slice(name.length + 1);
    if (value && typeof value === "object" && "secure" in value) {
      all[key] = SECRET_STAND_INS[short] ?? "unread";
      secretKeys.add(short);
    } else all[key] = typeof value === "string" ? value : JSON.stringify(value);
  }
  return parseStackConfig(projectConfigObject(all, name), { secretKeys });
}
