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
    expect(mismatchCause(other, launch)).toMatchObject({ kind: "unknown", unmeasurable: [] });
    expect(explainMismatch(other, launch, "exit-1")).toMatch(/no launch of this UKI and OVMF .* gives it: the VM booted other bytes.*; npm run status -- --node-ovmf FILE also tries a firmware copied from the node$/);
    // The expected measurement itself is no mismatch of the launch: the registration is.
    expect(mismatchCause(expectedLaunchMeasurement(launch), launch)).toEqual({ kind: "expected" });
  });

  it("says when the report matches another firmware the operator hands in: the node's own, booted instead of sev.ovmf", () => {
    // The node's firmware: other bytes in a page OVMF measures (its first byte), the same SEV metadata.
    const nodeOvmf = Buffer.from(ovmf);
    nodeOvmf[0] = nodeOvmf[0]! ^ 0xff;
    const actual = expectedLaunchMeasurement({ ovmf: nodeOvmf, kernel, vcpus: 1, vcpuType: "EPYC-v4" });
    expect(actual).not.toBe(expectedLaunchMeasurement(launch));
    const others = [
      { name: "not-firmware.bin", ovmf: Buffer.from("not a firmware image") },
      { name: "OVMF_SEV_4M.fd", ovmf: nodeOvmf },
    ];
    expect(mismatchCause(actual, launch, others)).toEqual({ kind: "firmware", firmware: "OVMF_SEV_4M.fd", vcpus: 1, vcpuType: "EPYC-v4" });
    expect(explainMismatch(actual, launch, "exit-1", others)).toMatch(/^the report matches the firmware OVMF_SEV_4M\.fd \(1 vCPU of EPYC-v4\), not relay exit-1's sev\.ovmf: .*the -bios of its args did not take effect/);
    // Without the node's firmware nothing matches, and a file that is no SEV firmware is named as such.
    const unknown = mismatchCause(actual, launch, others.slice(0, 1));
    expect(unknown).toMatchObject({ kind: "unknown", unmeasurable: [expect.stringMatching(/^not-firmware\.bin \(/)] });
    expect(explainMismatch(actual, launch, "exit-1", others.slice(0, 1))).toMatch(/nor with not-firmware\.bin.*could not be measured: not-firmware\.bin/);
  });
});
