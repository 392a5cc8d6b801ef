/**
 * Hold a stack's Debian base on a recorded package set, and lift the hold on purpose:
 *   npm run packages -- show   --stack NAME   what the mirror serves now, and the hold
 *   npm run packages -- lock   --stack NAME   hold the base on what the mirror serves now
 *   npm run packages -- update --stack NAME   re-resolve the held set (the next pulumi up deploys it)
 *   npm run packages -- unlock --stack NAME   follow the mirror again
 * The hold is Pulumi.NAME.packages.lock in the project directory (check it
 * in: a lift is then a reviewed diff). While it exists, the base's digest is
 * made of its packages, and preview says which updates wait. Reads the
 * stack's files (Pulumi.yaml, Pulumi.NAME.yaml), not its backend.
 * Exit status: 0 done; 1 for `show` when updates are pending under a hold; 2 on an error.
 */
import { existsSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { ConfigError } from "../lib/config/config";
import { DEFAULT_RELEASE } from "../lib/plan/image-inputs";
import { describeChange, lockFileName, packageChanges, renderLock } from "../lib/image/package-index";
import { packageSetRequest, PackageSetError, readLock, resolvePackageSet, type Resolution } from "../lib/image/package-set";
import { readStackConfigFile } from "../lib/config/stack-file";

const USAGE = "usage: npm run packages -- show|lock|update|unlock --stack NAME";
const projectDir = resolve(__dirname, "..");

function main(): number {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { stack: { type: "string" } } });
  const [command, ...rest] = positionals;
  if (!command || rest.length > 0 || !["show", "lock", "update", "unlock"].includes(command) || !values.stack) throw new Error(USAGE);
  const stack = values.stack;
  if (!/^[A-Za-z0-9_.-]+$/.test(stack) || stack.startsWith("-")) throw new Error(`--stack: ${JSON.stringify(stack)} is not a stack name`);
  const file = join(projectDir, lockFileName(stack));
  if (command === "unlock") {
    if (!existsSync(file)) {
      console.log(`stack ${stack} is not held (${lockFileName(stack)} does not exist): its base follows image.mirrors`);
      return 0;
    }
    rmSync(file);
    console.log(`removed ${lockFileName(stack)}: stack ${stack}'s base follows image.mirrors again; the next pulumi up deploys what they serve`);
    return 0;
  }
  const config = readStackConfigFile(projectDir, stack);
  if (config.image.flavour !== "debian") throw new Error(`stack ${stack} builds an ${config.image.flavour} base: only Debian's package set is resolved and held`);
  const request = packageSetRequest(config, projectDir, config.image.release ?? DEFAULT_RELEASE[config.image.flavour]);
  const held = readLock(projectDir, stack);
  const result = resolvePackageSet(request, { projectDir, now: new Date() });
  if ("unreachable" in result) throw new PackageSetError(`image.mirrors: ${result.unreachable.map((u) => `${u.uri} (${u.error})`).join("; ")}: cannot be reached`);
  const now: Resolution = result;
  const pending = held ? packageChanges(held.packages, now.packages) : [];
  if (command === "show") {
    console.log(`the mirror serves ${now.packages.length} packages for stack ${stack}'s base (resolved ${now.resolvedAt})`);
    if (!held) console.log(`not held: the next pulumi up deploys them`);
    else {
      console.log(`held by ${lockFileName(stack)} (resolved ${held.resolvedAt}); ${pending.length === 0 ? "no update pending" : `${pending.length} update${pending.length === 1 ? "" : "s"} pending:`}`);
      for (const change of pending) console.log(`  ${describeChange(change)}`);
    }
    return pending.length > 0 ? 1 : 0;
  }
  if (command === "lock" && held) throw new Error(`stack ${stack} is already held by ${lockFileName(stack)} (resolved ${held.resolvedAt}): update re-resolves it, unlock lifts it`);
  writeFileSync(`${file}.tmp`, renderLock(stack, { resolvedAt: now.resolvedAt, sources: request.sources, request: request.include, packages: now.packages }));
  renameSync(`${file}.tmp`, file);
  if (command === "lock") console.log(`stack ${stack}'s base is held on ${now.packages.length} packages (${lockFileName(stack)}): check it in`);
  else {
    console.log(`${lockFileName(stack)} re-resolved: ${pending.length === 0 ? "no package changed" : `${pending.length} packages change; the next pulumi up deploys them:`}`);
    for (const change of pending) console.log(`  ${describeChange(change)}`);
  }
  return 0;
}

try {
  process.exitCode = main();
} catch (err) {
  console.error(err instanceof ConfigError || err instanceof PackageSetError ? err.message : `packages: ${(err as Error).message}`);
  process.exitCode = 2;
}
