/**
 * Image pipeline benchmark: base build, per-relay image, 1 vs 10 relays on a
 * cached base, and image sizes. Prints a table; reproduce with
 *   npm run bench:images              (builds a fresh Debian base first)
 *   npm run bench:images -- --cached  (reuses a base built at the default zstd level before)
 */
import { mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { baseBuildSpec, baseImageDigest } from "../lib/plan/image-inputs";
import { DEFAULT_COMPRESS_LEVEL } from "../lib/config/config";
import { buildRelayIso, debianBase, debianBaseInputs, runStep } from "../test/support/images";
import { makeTestKeys } from "../test/support/fleet";

const seconds = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e9;
const mb = (bytes: number) => (bytes / 1e6).toFixed(1);

function main() {
  const cached = process.argv.includes("--cached");
  const work = mkdtempSync(join(tmpdir(), "diskless-relays-bench-"));
  try {
    let base: string;
    let baseSeconds: number | undefined;
    // The program's default zstd level, not the tests' faster one: what an operator's images weigh.
    const inputs = debianBaseInputs({ compressLevel: DEFAULT_COMPRESS_LEVEL });
    if (cached) {
      base = debianBase(inputs);
    } else {
      base = join(work, "base", `debian-${baseImageDigest(inputs).slice(0, 12)}`);
      mkdirSync(join(work, "base"), { mode: 0o700 });
      const start = process.hrtime.bigint();
      const result = runStep("build-base", baseBuildSpec(inputs, base));
      if (result.status !== 0) throw new Error(`building the Debian base failed:\n${result.stderr}`);
      baseSeconds = seconds(start);
    }

    const relays = Array.from({ length: 10 }, (_, i) => ({ name: `bench-${i}`, nickname: `BenchRelay${i}`, node: "local", vmId: 100 + i, exit: false }));
    makeTestKeys(work, relays);
    mkdirSync(join(work, "collected"), { mode: 0o700 });
    const build = (i: number) =>
      buildRelayIso(work, base, { name: `bench-${i}`, nickname: `BenchRelay${i}`, vmId: 100 + i, mac: `52:54:00:00:01:${(i + 16).toString(16)}` }, join(work, "collected"), join(work, "out", String(i)));

    const one = process.hrtime.bigint();
    const first = build(0);
    const oneSeconds = seconds(one);
    const ten = process.hrtime.bigint();
    for (let i = 0; i < 10; i++) build(i);
    const tenSeconds = seconds(ten);

    const rows: [string, string][] = [
      ["base build (mmdebstrap + pack, Debian bookworm)", baseSeconds === undefined ? "cached (run without --cached)" : `${baseSeconds.toFixed(1)} s`],
      ["per relay: overlay + UKI + ISO", `${(tenSeconds / 10).toFixed(2)} s`],
      ["1 relay, cached base", `${oneSeconds.toFixed(2)} s`],
      ["10 relays, cached base", `${tenSeconds.toFixed(2)} s`],
      ["ratio 10 / 1, cached base", `${(tenSeconds / oneSeconds).toFixed(2)}x`],
    ];
    if (baseSeconds !== undefined) {
      rows.push(
        ["base + 1 relay", `${(baseSeconds + oneSeconds).toFixed(1)} s`],
        ["base + 10 relays (shared base)", `${(baseSeconds + tenSeconds).toFixed(1)} s`],
        ["ratio, shared base", `${((baseSeconds + tenSeconds) / (baseSeconds + oneSeconds)).toFixed(2)}x`],
        ["10 full builds (one base per relay, as before)", `${(10 * (baseSeconds + oneSeconds)).toFixed(1)} s`],
      );
    }
    rows.push(
      ["Debian kernel (vmlinuz)", `${mb(statSync(join(base, "vmlinuz")).size)} MB`],
      [`Debian base initrd (zstd -${inputs.compressLevel})`, `${mb(statSync(join(base, "base.cpio.zst")).size)} MB`],
      ["Debian UKI", `${mb(statSync(first.uki).size)} MB`],
      ["Debian ISO", `${mb(statSync(first.iso).size)} MB`],
      ["Alpine UKI / ISO", "not measurable here: no Alpine mirror is reachable"],
    );
    const width = Math.max(...rows.map(([k]) => k.length));
    console.log(`diskless-relays image benchmark (${new Date().toISOString()}, ${cpus().length} cores)`);
    for (const [key, value] of rows) console.log(`${key.padEnd(width)}  ${value}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main();
