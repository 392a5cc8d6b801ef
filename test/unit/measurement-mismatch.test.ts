/**
 * A refusal `measurement-mismatch` on the status board (lib/ops/status-probe.ts
 * brokerObservation) carries its explanation, and the UKI it is worked out
 * from is the newest build of that image digest in the relay's build
 * directory (lib/ops/measurement-mismatch.ts builtUkiOf). The explanation
 * itself: test/unit/snp/measurement-causes.test.ts; booted:
 * test/vm/broker-boot.test.ts.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { BrokerRelayStatus } from "../../lib/broker/broker-admin";
import { builtUkiOf, mismatchExplainer } from "../../lib/ops/measurement-mismatch";
import { expectedLaunchMeasurement } from "../../lib/snp/launch-digest";
import { fixturePath } from "../support/snp-fixtures";
import { brokerObservation } from "../../lib/ops/status-probe";
import { privateTmpDir } from "../support/tmp";
import { tsNode } from "../support/pulumi";

const DIGEST = "ab".repeat(32);
const status = (reason: string, measurement?: string): BrokerRelayStatus =>
  ({
    relay: "exit-1",
    images: [],
    lastAttestation: null,
    lastRefusal: { time: "2026-12-06T10:00:00Z", imageDigest: DIGEST, purpose: "boot", evidenceKind: "snp", verdict: "refused", reason, ...(measurement ? { measurement } : {}) },
  }) as unknown as BrokerRelayStatus;

describe("a measurement mismatch on the status board", () => {
  it("is explained from the refused image and measurement; other refusals are not", () => {
    const asked: string[] = [];
    const explain = (digest: string, measurement: string) => (asked.push(`${digest.slice(0, 4)}/${measurement.slice(0, 4)}`), "the report matches 2 vCPUs");
    expect(brokerObservation(status("measurement-mismatch", "cd".repeat(48)), explain).attestation?.refusal).toBe("refused (measurement-mismatch); the report matches 2 vCPUs");
    expect(brokerObservation(status("relay-revoked"), explain).attestation?.refusal).toBe("refused (relay-revoked)");
    expect(asked).toEqual(["abab/cdcd"]);
  });

  it("is worked out from the newest finished build of that image on this host", () => {
    const relayDir = privateTmpDir("mismatch-builds");
    const build = (name: string, mtime: number, record?: object) => {
      const dir = join(relayDir, name);
      mkdirSync(dir);
      writeFileSync(join(dir, "relay.efi"), "uki");
      if (record) writeFileSync(join(dir, "image.json"), JSON.stringify(record));
      utimesSync(dir, mtime, mtime);
      return join(dir, "relay.efi");
    };
    expect(builtUkiOf(relayDir, DIGEST)).toBeUndefined();
    const older = build(`${DIGEST.slice(0, 12)}-00000001`, 1000, { imageDigest: DIGEST, uki: join(relayDir, `${DIGEST.slice(0, 12)}-00000001`, "relay.efi") });
    build(`${DIGEST.slice(0, 12)}-00000003`, 3000);
    expect(builtUkiOf(relayDir, DIGEST)).toBe(older);
    const newer = build(`${DIGEST.slice(0, 12)}-00000002`, 2000, { imageDigest: DIGEST, uki: join(relayDir, `${DIGEST.slice(0, 12)}-00000002`, "relay.efi") });
    expect(builtUkiOf(relayDir, DIGEST)).toBe(newer);
    expect(builtUkiOf(relayDir, "cd".repeat(32))).toBeUndefined();
  });

  it("tries the firmware files npm run status --node-ovmf names, read from disk", () => {
    const dir = privateTmpDir("mismatch-firmware");
    const ovmf = readFileSync(fixturePath("ovmf_AmdSev_suffix.bin"));
    const nodeOvmf = Buffer.from(ovmf);
    nodeOvmf[0] = nodeOvmf[0]! ^ 0xff;
    const kernel = Buffer.from("a unified kernel image\n".repeat(100));
    for (const [name, bytes] of [["pinned.fd", ovmf], ["OVMF_SEV_4M.fd", nodeOvmf], ["relay.efi", kernel]] as const) writeFileSync(join(dir, name), bytes);
    const launch = { ovmf: join(dir, "pinned.fd"), vcpus: 1, vcpuType: "EPYC-v4" };
    const actual = expectedLaunchMeasurement({ ovmf: nodeOvmf, kernel, vcpus: 1, vcpuType: "EPYC-v4" });
    expect(mismatchExplainer("exit-1", join(dir, "relay.efi"), launch, [join(dir, "OVMF_SEV_4M.fd")])(actual)).toMatch(/^the report matches the firmware OVMF_SEV_4M\.fd \(1 vCPU of EPYC-v4\)/);
    expect(mismatchExplainer("exit-1", join(dir, "relay.efi"), launch)(actual)).toMatch(/^no launch of this UKI and OVMF with/);
    // A file that is not there is refused before anything is read, naming it.
    const status = spawnSync(...tsNode("cli/status.ts", "--node-ovmf", join(dir, "missing.fd")), { encoding: "utf8" });
    expect(status.status).toBe(2);
    expect(status.stderr).toContain(`--node-ovmf ${join(dir, "missing.fd")}: no such file`);
  }, 60_000);
});
