/**
 * Once per `npm test` run, before any test's time limit starts: the Debian
 * base every image test and end-to-end run shares (test/support/images.ts),
 * built by the program's own build-base step unless this machine has it.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { debianBase, debianBaseDir } from "./images";

export default function setup(): void {
  if (existsSync(join(debianBaseDir(), ".complete"))) return;
  const started = Date.now();
  console.log(`[global setup] building the Debian base for the tests in ${debianBaseDir()} (once per machine)`);
  debianBase();
  console.log(`[global setup] Debian base built in ${Math.round((Date.now() - started) / 1000)}s`);
}

// scripts/run-tests.sh runs it alone first, so that the two vitest processes find the base built.
if (process.argv[1]?.endsWith("global-setup.ts")) setup();
