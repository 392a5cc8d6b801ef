import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fixture, FIXTURE_MEASUREMENT, fixturePath } from "../../support/snp-fixtures";
import { repoRoot, tsNode } from "../../support/pulumi";

const scratch = mkdtempSync(path.join(tmpdir(), "snp-cli-"));
const emptyFile = path.join(scratch, "empty");
writeFileSync(emptyFile, "");
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function snp(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(...tsNode("cli/snp.ts", ...args), { cwd: repoRoot, encoding: "utf8" });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const AMD_SEV = fixturePath("ovmf_AmdSev_suffix.bin");

describe("snp measure", () => {
  it("prints the digest alone on stdout", () => {
    const run = snp(
      "measure",
      "--ovmf", AMD_SEV,
      "--kernel", emptyFile,
      "--initrd", emptyFile,
      "--append", "console=ttyS0 loglevel=7",
      "--vcpus", "1",
      "--vcpu-type", "EPYC-v4",
      "--guest-features", "0x21",
    );
    expect(run.status).toBe(0);
    expect(run.stdout).toBe(
      "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977\n",
    );
  });

  it("starts from --ovmf-hash and takes --vcpu-sig", () => {
    const run = snp(
      "measure",
      "--ovmf", AMD_SEV,
      "--ovmf-hash", "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74",
      "--kernel", emptyFile,
      "--initrd", emptyFile,
      "--vcpus", "1",
      "--vcpu-sig", "0x800f12",
    );
    expect(run.status).toBe(0);
    expect(run.stdout).toBe(
      "ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5\n",
    );
  });

  it("refuses a kernel with the OvmfX64 firmware (exit 1, reason on stderr)", () => {
    const run = snp(
      "measure",
      "--ovmf", fixturePath("ovmf_OvmfX64_suffix.bin"),
      "--kernel", emptyFile,
      "--vcpus", "1",
      "--vcpu-type", "EPYC-v4",
    );
    expect(run.status).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(/SNP_KERNEL_HASHES/);
    expect(run.stderr).toMatch(/AmdSevX64/);
  });

  it.each([
    ["no --vcpus", ["measure", "--ovmf", AMD_SEV, "--vcpu-type", "EPYC-v4"]],
    ["an unknown vCPU type", ["measure", "--ovmf", AMD_SEV, "--vcpus", "1", "--vcpu-type", "Pentium"]],
    ["an unknown option", ["measure", "--ovmf", AMD_SEV, "--vcpus", "1", "--vcpu-type", "EPYC", "--bogus", "x"]],
  ])("exits 2 with usage on stderr for %s", (_name, args) => {
    const run = snp(...args);
    expect(run.status).toBe(2);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(/usage:/);
  });
});

describe("snp verify", () => {
  const base = [
    "verify",
    "--report", fixturePath("attestation.bin"),
    "--vcek", fixturePath("vcek.testcer"),
    "--chain", fixturePath("ask_ark_milan.pem"),
  ];

  it("passes the genuine fixtures with --allow-debug, one PASS line per check", () => {
    const run = snp(...base, "--expected", FIXTURE_MEASUREMENT, "--report-data", "0102030405", "--allow-debug");
    expect(run.status).toBe(0);
    const lines = run.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(10);
    for (const line of lines) {
      expect(line).toMatch(/^PASS [a-z-]+: /);
    }
  });

  it("exits 1 and names the policy check without --allow-debug", () => {
    const run = snp(...base);
    expect(run.status).toBe(1);
    expect(run.stdout).toMatch(/^FAIL policy-debug-disabled: /m);
    expect(run.stdout.match(/^FAIL/gm)).toHaveLength(1);
  });

  it("exits 1 on a tampered measurement", () => {
    const tampered = Buffer.from(fixture("attestation.bin"));
    tampered[0x90] = (tampered[0x90] as number) ^ 0xff;
    const tamperedPath = path.join(scratch, "tampered.bin");
    writeFileSync(tamperedPath, tampered);
    const run = snp(
      "verify",
      "--report", tamperedPath,
      "--vcek", fixturePath("vcek.testcer"),
      "--chain", fixturePath("ask_ark_milan.pem"),
      "--expected", FIXTURE_MEASUREMENT,
      "--allow-debug",
    );
    expect(run.status).toBe(1);
    expect(run.stdout).toMatch(/^FAIL report-signature: /m);
    expect(run.stdout).toMatch(/^FAIL measurement-expected: /m);
  });

  it("exits 2 when --chain is missing", () => {
    const run = snp("verify", "--report", fixturePath("attestation.bin"), "--vcek", fixturePath("vcek.testcer"));
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/--chain is required/);
  });
});
