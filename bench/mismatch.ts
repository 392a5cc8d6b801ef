/**
 * What explaining a measurement mismatch costs (lib/snp/measurement-causes.ts):
 * for a relay's UKI and the AmdSevX64 OVMF, one launch measurement, a search
 * that finds a report of 2 vCPUs where 1 was published, and a search that
 * finds nothing (every count of 1–64 vCPUs of every known model). Prints
 * one JSON line; reproduce with
 *   npm run bench:mismatch -- UKI [OVMF]
 * (a UKI from a build directory: build/diskless-relays-local/relays/*\/*\/relay.efi;
 * OVMF defaults to the public test description in test/fixtures/snp).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { expectedLaunchMeasurement } from "../lib/snp/launch-digest";
import { mismatchCause } from "../lib/snp/measurement-causes";

const [uki, ovmfFile = join(__dirname, "..", "test", "fixtures", "snp", "ovmf_AmdSev_suffix.bin")] = process.argv.slice(2);
if (!uki) {
  console.error("usage: npm run bench:mismatch -- UKI [OVMF]");
  process.exit(2);
}
const ovmf = readFileSync(ovmfFile);
const kernel = readFileSync(uki);
const launch = { ovmf, kernel, vcpus: 1, vcpuType: "EPYC-v4" };
const timed = <T>(work: () => T): [T, number] => {
  const start = process.hrtime.bigint();
  const value = work();
  return [value, Number(process.hrtime.bigint() - start) / 1e6];
};
const [actual, oneMs] = timed(() => expectedLaunchMeasurement({ ...launch, vcpus: 2 }));
const [found, foundMs] = timed(() => mismatchCause(actual, launch));
const [none, noneMs] = timed(() => mismatchCause("00".repeat(48), launch));
console.log(JSON.stringify({ ukiBytes: kernel.length, oneMeasurementMs: Math.round(oneMs), foundMs: Math.round(foundMs), found, noMatchMs: Math.round(noneMs), launchesTried: none.kind === "unknown" ? none.tried : undefined }));
