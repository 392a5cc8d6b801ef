/**
 * Where things are on the build host: the operator's project (paths in the
 * stack's config are relative to it) and this program's own checkout (files
 * it ships, such as the Tor Project's exit notice) and the tools the set-up
 * built. Pure.
 */
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";

/** This program's checkout: lib/core/ is two levels below it. */
export const PROGRAM_DIR = resolve(__dirname, "..", "..");

/** A path from the stack's config: relative ones are inside the project. */
export function inProject(projectDir: string, path: string): string {
  return isAbsolute(path) ? path : join(projectDir, path);
}

/** Where scripts/setup.sh puts the tools it builds (scripts/env.sh says the same): Pulumi, its plugins, syft, the key broker's programs. */
export function toolsBin(): string {
  const cache = process.env.DISKLESS_RELAYS_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "diskless-relays");
  return join(cache, "bin");
}

/** This process's environment with the project's tools first on PATH, for callers started without scripts/env.sh (tests, benchmarks). */
export function withToolsOnPath(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...env, PATH: `${toolsBin()}:${env.PATH ?? ""}` };
}
