/**
 * A broker refusal `measurement-mismatch`, explained: the relay's UKI and
 * firmware are read once and the refused measurement is tried against other
 * launches of them (lib/snp/measurement-causes.ts). Used by the rollout gate
 * and the status board. I/O: reads the UKI, the OVMF file and the relay's
 * build directory.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { readBuiltImage } from "../image/relay-build";
import { explainMismatch } from "../snp/measurement-causes";

/** What the image's measurement was computed with. */
export interface LaunchFiles {
  ovmf: string;
  vcpus: number;
  vcpuType: string;
}

/**
 * A function that explains a refused measurement of `relay`'s image; each measurement is worked out once.
 * `otherFirmware`: firmware files to try besides the pinned one (npm run status --node-ovmf).
 */
export function mismatchExplainer(relay: string, uki: string, launch: LaunchFiles, otherFirmware: string[] = []): (measurement: string) => string {
  const said = new Map<string, string>();
  return (measurement) => {
    let text = said.get(measurement);
    if (text === undefined) {
      try {
        const others = otherFirmware.map((file) => ({ name: basename(file), ovmf: readFileSync(file) }));
        text = explainMismatch(measurement, { ovmf: readFileSync(launch.ovmf), kernel: readFileSync(uki), vcpus: launch.vcpus, vcpuType: launch.vcpuType }, relay, others);
      } catch (err) {
        text = `its cause could not be worked out (${(err as Error).message})`;
      }
      said.set(measurement, text);
    }
    return text;
  };
}

/**
 * The UKI of `imageDigest` as this build host built it for the relay (its newest build directory,
 * DIGEST12-COLLECTION8 in the relay's build directory), or undefined when there is none here.
 */
export function builtUkiOf(relayDir: string, imageDigest: string): string | undefined {
  if (!existsSync(relayDir)) return undefined;
  const prefix = `${imageDigest.slice(0, 12)}-`;
  const dirs = readdirSync(relayDir)
    .filter((name) => name.startsWith(prefix))
    .map((name) => join(relayDir, name))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  for (const dir of dirs) {
    try {
      const built = readBuiltImage(dir);
      if (built.imageDigest === imageDigest && existsSync(built.uki)) return built.uki;
    } catch {
      // A build directory without its record is an unfinished build: the next one may do.
    }
  }
  return undefined;
}
