/**
 * A measurement mismatch explains itself (lib/snp/measurement-causes.ts):
 * the report's measurement is matched against the same UKI and OVMF with
 * other vCPU counts and models. The "actual" measurements here are made by
 * the one-launch calculator (snpLaunchDigest, checked against
 * sev-snp-measure's published vectors in launch-digest.test.ts), not by the
 * incremental variant search under test.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { expectedLaunchMeasurement, launchMeasurementsByVcpus } from "../../../lib/snp/launch-digest";
import { explainMismatch, mismatchCause } from "../../../lib/snp/measurement-causes";
import { fixturePath } from "../../support/snp-fixtures";

const ovmf = readFileSync(fixturePath("ovmf_AmdSev_suffix.bin"));
// A stand-in UKI: any bytes are measured as "the kernel" (its SHA-256 goes into the hash table).
const kernel = Buffer.from("a unified kernel image, as bytes\n".repeat(1000));
const launch = { ovmf, kernel, vcpus: 1, vcpuType: "EPYC-v4" };

describe("a measurement mismatch", () => {
  it("finds every count and model the one-launch calculator gives", () => {
    const all = launchMeasurementsByVcpus({ ovmf, kernel, vcpuTypes: ["EPYC-v4", "EPYC-Milan"], maxVcpus: 8 });
    for (const [vcpus, vcpuType] of [[1, "EPYC-v4"], [2, "EPYC-v4"], [8, "EPYC-v4"], [1, "EPYC-Milan"], [3, "EPYC-Milan"]] as const) {
      expect(all.get(`${vcpus}/${vcpuType}`), `${vcpus}/${vcpuType}`).toBe(expectedLaunchMeasurement({ ovmf, kernel, vcpus, vcpuType }));
    }
  });

  it("says which vCPU count and model the report matches, and the field to set", () => {
    const actual = expectedLaunchMeasurement({ ovmf, kernel, vcpus: 2, vcpuType: "EPYC-v4" });
    expect(mismatchCause(actual, launch)).toEqual({ kind: "vcpus", vcpus: 2, vcpuType: "EPYC-v4" });
    expect(explainMismatch(actual, launch, "local-exit")).toMatch(/^the report matches 2 vCPUs of EPYC-v4, not the 1 vCPU of EPYC-v4 the image was measured for: .*set cores of relay local-exit/);
    const milan = expectedLaunchMeasurement({ ovmf, kernel, vcpus: 4, vcpuType: "EPYC-Milan" });
    expect(explainMismatch(milan, launch, "exit-1")).toMatch(/matches 4 vCPUs of EPYC-Milan.*set cores and cpuType \(and sev\.vcpuType\) of relay exit-1/);
  });

  it("says when nothing matches: other bytes were booted", () => {
    const other = expectedLaunchMeasurement({ ovmf, kernel: Buffer.concat([kernel, Buffer.from("x")]), vcpus: 1, vcpuType: "EPYC-v4" });
    expect(mismatchCause(other, launch)).toMatchObject({ kind: "unknown" });
    expect(explainMismatch(other, launch, "exit-1")).toMatch(/no launch of this UKI and OVMF .* gives it: the VM booted other bytes/);
    // The expected measurement itself is no mismatch of the launch: the registration is.
    expect(mismatchCause(expectedLaunchMeasurement(launch), launch)).toEqual({ kind: "expected" });
  });
});
