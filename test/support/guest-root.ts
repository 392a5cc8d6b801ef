/**
 * A directory standing in for a booted relay's /, for running the image's own
 * scripts on this machine: the guest scripts read RELAY_ROOT and find every
 * path under it, by the names in lib/image/guest-paths.ts, from the paths file
 * the base build writes (here written the same way).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { GUEST_PATHS, GUEST_PATHS_FILE, renderGuestPathsEnv, type GuestPathName } from "../../lib/image/guest-paths";

export interface GuestRoot {
  root: string;
  /** That guest path, under the root. */
  at(name: GuestPathName): string;
}

export function makeGuestRoot(root: string): GuestRoot {
  const at = (name: GuestPathName) => join(root, GUEST_PATHS[name]);
  mkdirSync(dirname(join(root, GUEST_PATHS_FILE)), { recursive: true });
  writeFileSync(join(root, GUEST_PATHS_FILE), renderGuestPathsEnv(), { mode: 0o644 });
  for (const dir of ["RELAY_RUN", "RELAY_TOR_DATA"] as const) mkdirSync(at(dir), { recursive: true, mode: dir === "RELAY_TOR_DATA" ? 0o700 : 0o755 });
  mkdirSync(dirname(at("RELAY_IMAGE_LABEL")), { recursive: true, mode: 0o755 });
  return { root, at };
}
