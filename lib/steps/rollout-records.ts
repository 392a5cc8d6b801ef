/**
 * What the build host remembers about each relay between runs, in the
 * relay's private build directory: the image it was last found healthy on
 * (its recipe, so the same image can be rebuilt with newer onion keys for a
 * rollback, and its SSH host key, the pin for talking to it), and the last
 * rollback. Recipes hold texts and paths, never key bytes.
 * I/O: reads and writes <relayDir>/running.json and rolled-back.json.
 */
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { RelayRecipe } from "./steps";

export interface RunningRecord {
  imageDigest: string;
  recipe: RelayRecipe;
  hostPublicKey: string;
  isoName: string;
  /** What healthy means for this image: its ORPort and whether it exits. */
  orPort: number;
  exit: boolean;
  /** When the relay was found healthy on it. */
  since: string;
}

export interface RollbackRecord {
  /** The image that did not come back. */
  failedImageDigest: string;
  /** The image the relay was put back on. */
  imageDigest: string;
  at: string;
  reason: string;
}

const RUNNING = "running.json";
const ROLLED_BACK = "rolled-back.json";

function readJson<T>(file: string): T | undefined {
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as T) : undefined;
}

function writeJson(file: string, value: unknown): void {
  writeFileSync(`${file}.tmp`, JSON.stringify(value, null, 1) + "\n", { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

export const readRunningRecord = (relayDir: string) => readJson<RunningRecord>(join(relayDir, RUNNING));
export const writeRunningRecord = (relayDir: string, record: RunningRecord) => writeJson(join(relayDir, RUNNING), record);
export const readRollbackRecord = (relayDir: string) => readJson<RollbackRecord>(join(relayDir, ROLLED_BACK));
export const writeRollbackRecord = (relayDir: string, record: RollbackRecord) => writeJson(join(relayDir, ROLLED_BACK), record);
export const clearRollbackRecord = (relayDir: string) => rmSync(join(relayDir, ROLLED_BACK), { force: true });
