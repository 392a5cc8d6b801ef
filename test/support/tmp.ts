import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";

/** A private (0700) scratch directory removed after the test file. */
export function privateTmpDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `diskless-relays-${prefix}-`));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
