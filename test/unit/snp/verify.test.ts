import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { AMD_PRODUCTS, parseCertificateBundle, verifyIssuedBy } from "../../../lib/snp/amd-certs";
import { parseAttestationReport, policyAllowsDebug, REPORT_SIZE } from "../../../lib/snp/report";
import { CHECK_NAMES, CheckName, VerificationInput, verifyAttestationReport } from "../../../lib/snp/verify";
import { fixture, FIXTURE_MEASUREMENT } from "../../support/snp-fixtures";
import { fixturePath } from "../../support/snp-fixtures";

const report = fixture("attestation.bin");
const vcek = fixture("vcek.testcer");
const milanChain = fixture("ask_ark_milan.pem").toString("latin1");
const genoaChain = fixture("ask_ark_genoa.pem").toString("latin1");

const genuine: VerificationInput = {
  report,
  vcek,
  chain: milanChain,
  expectedMeasurements: [FIXTURE_MEASUREMENT],
  reportData: "0102030405",
  allowDebug: true,
};

const ALL_CHECKS: CheckName[] = Object.values(CHECK_NAMES);

function failedChecks(input: VerificationInput): CheckName[] {
  return verifyAttestationReport(input)
    .checks.filter((check) => !check.ok)
    .map((check) => check.name);
}

function flipByte(data: Buffer, offset: number, mask = 0x01): Buffer {
  const copy = Buffer.from(data);
  copy[offset] = (copy[offset] as number) ^ mask;
  return copy;
}

/** Rewrites the n-th certificate of a PEM bundle with one byte of its DER flipped. */
function tamperPem(pem: string, index: number, offsetFromEnd: number): string {
  let seen = -1;
  return pem.replace(/-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/g, (block, body: string) => {
    seen += 1;
    if (seen !== index) {
      return block;
    }
    const der = Buffer.from(body.replace(/\s+/g, ""), "base64");
    const tampered = flipByte(der, der.length - offsetFromEnd);
    const lines = tampered.toString("base64").match(/.{1,64}/g) ?? [];
    return `-----BEGIN CERTIFICATE-----\n${lines.join("\n")}\n-----END CERTIFICATE-----`;
  });
}

describe("attestation report parser", () => {
  const parsed = parseAttestationReport(report);

  it("reads the fields at their ABI offsets", () => {
    expect(parsed.version).toBe(2);
    expect(parsed.measurement.toString("hex")).toBe(FIXTURE_MEASUREMENT);
    expect(parsed.policy).toBe(0xb0000n);
    expect(parsed.vmpl).toBe(0);
    expect(parsed.signatureAlgo).toBe(1);
    expect(parsed.reportedTcb).toBe(0x4405000000000002n);
    expect(parsed.chipId.toString("hex").startsWith("3ac3fe21e13fb099")).toBe(true);
    expect(parsed.reportData.subarray(0, 5).toString("hex")).toBe("0102030405");
    expect(parsed.signedBytes.length).toBe(0x2a0);
    expect(parsed.signatureR.length).toBe(72);
    expect(parsed.signatureS.length).toBe(72);
  });

  it("reads the debug bit as policy bit 19", () => {
    expect(policyAllowsDebug(parsed.policy)).toBe(true);
    expect(policyAllowsDebug(0x30000n)).toBe(false);
  });

  it("rejects the wrong size and versions before 2", () => {
    expect(() => parseAttestationReport(report.subarray(0, REPORT_SIZE - 1))).toThrow(/1184/);
    const version1 = Buffer.from(report);
    version1.writeUInt32LE(1, 0);
    expect(() => parseAttestationReport(version1)).toThrow(/version 1/);
  });
});

describe("verifier on the genuine fixtures", () => {
  it("passes every check, each by name, when debug is allowed", () => {
    const result = verifyAttestationReport(genuine);
    expect(result.checks.map((check) => check.name)).toEqual(ALL_CHECKS);
    for (const check of result.checks) {
      expect(check, `${check.name}: ${check.detail}`).toMatchObject({ ok: true });
    }
    expect(result.ok).toBe(true);
    expect(result.product).toBe("Milan");
  });

  it("fails only the policy check without allowDebug: the fixture guest's policy (0xb0000) allows debugging", () => {
    const result = verifyAttestationReport({ ...genuine, allowDebug: false });
    expect(failedChecks({ ...genuine, allowDebug: false })).toEqual([CHECK_NAMES.policyDebugDisabled]);
    expect(result.ok).toBe(false);
  });

  it("omits the measurement and report-data checks when no expectation is given", () => {
    const result = verifyAttestationReport({ report, vcek, chain: milanChain, allowDebug: true });
    expect(result.checks.map((check) => check.name)).not.toContain(CHECK_NAMES.measurementExpected);
    expect(result.checks.map((check) => check.name)).not.toContain(CHECK_NAMES.reportDataMatches);
    expect(result.ok).toBe(true);
  });

  it("fails closed on an empty expected-measurement list", () => {
    expect(failedChecks({ ...genuine, expectedMeasurements: [] })).toEqual([CHECK_NAMES.measurementExpected]);
  });

  it("fails when the measurement is not the expected one", () => {
    const other = `${"00".repeat(47)}01`;
    expect(failedChecks({ ...genuine, expectedMeasurements: [other] })).toEqual([CHECK_NAMES.measurementExpected]);
    expect(failedChecks({ ...genuine, expectedMeasurements: [other, FIXTURE_MEASUREMENT] })).toEqual([]);
  });

  it("fails when REPORT_DATA differs", () => {
    expect(failedChecks({ ...genuine, reportData: "0102030406" })).toEqual([CHECK_NAMES.reportDataMatches]);
  });
});

describe("verifier on tampered copies", () => {
  it("a flipped byte in the measurement fails the report signature and the measurement check", () => {
    const tampered = flipByte(report, 0x90);
    const failed = failedChecks({ ...genuine, report: tampered });
    expect(failed).toEqual([CHECK_NAMES.reportSignature, CHECK_NAMES.measurementExpected]);
    expect(verifyAttestationReport({ ...genuine, report: tampered }).ok).toBe(false);
  });

  it("a flipped byte in the signature fails the report signature only", () => {
    const tampered = flipByte(report, 0x2a0 + 5);
    expect(failedChecks({ ...genuine, report: tampered })).toEqual([CHECK_NAMES.reportSignature]);
    expect(verifyAttestationReport({ ...genuine, report: tampered }).ok).toBe(false);
  });

  it("a flipped policy debug bit fails the report signature (the bit cannot be edited)", () => {
    const tampered = flipByte(report, 0x08 + 2, 0x08);
    expect(policyAllowsDebug(parseAttestationReport(tampered).policy)).toBe(false);
    const failed = failedChecks({ ...genuine, report: tampered, allowDebug: false });
    expect(failed).toEqual([CHECK_NAMES.reportSignature]);
    expect(verifyAttestationReport({ ...genuine, report: tampered, allowDebug: false }).ok).toBe(false);
  });

  it("the policy check itself fails on the fixture's debug bit, which is set in the signed report", () => {
    const result = verifyAttestationReport({ ...genuine, allowDebug: false });
    const policy = result.checks.find((check) => check.name === CHECK_NAMES.policyDebugDisabled);
    expect(policy?.ok).toBe(false);
    expect(policy?.detail).toMatch(/bit 19/);
  });

  it("a flipped byte in the VCEK fails the VCEK-by-ASK check", () => {
    const tampered = flipByte(vcek, vcek.length - 10);
    expect(failedChecks({ ...genuine, vcek: tampered })).toEqual([CHECK_NAMES.vcekSignedByAsk]);
    expect(verifyAttestationReport({ ...genuine, vcek: tampered }).ok).toBe(false);
  });

  it("a flipped byte in the ASK fails the ASK-by-ARK check", () => {
    const tampered = tamperPem(milanChain, 0, 10);
    expect(tampered).not.toBe(milanChain);
    expect(failedChecks({ ...genuine, chain: tampered })).toEqual([CHECK_NAMES.askSignedByArk]);
  });

  it("a flipped byte in the ARK fails the ARK pin (and what hangs off it)", () => {
    const tampered = tamperPem(milanChain, 1, 10);
    const failed = failedChecks({ ...genuine, chain: tampered });
    expect(failed).toContain(CHECK_NAMES.arkPinned);
    expect(failed).toContain(CHECK_NAMES.vcekTcbMatchesReportedTcb);
    expect(verifyAttestationReport({ ...genuine, chain: tampered }).ok).toBe(false);
  });

  it("the Genoa chain does not vouch for a Milan VCEK", () => {
    expect(failedChecks({ ...genuine, chain: genoaChain })).toEqual([CHECK_NAMES.vcekSignedByAsk]);
  });

  it("an ARK that matches no pin fails ark-pinned", () => {
    const onlyGenoa = AMD_PRODUCTS.filter((product) => product.name === "Genoa");
    const failed = failedChecks({ ...genuine, products: onlyGenoa });
    expect(failed).toEqual([CHECK_NAMES.arkPinned, CHECK_NAMES.vcekTcbMatchesReportedTcb]);
  });

  it("a chain missing its ARK fails every chain check", () => {
    const askOnly = milanChain.slice(0, milanChain.indexOf("-----END CERTIFICATE-----") + 25);
    const failed = failedChecks({ ...genuine, chain: askOnly });
    expect(failed).toEqual([
      CHECK_NAMES.arkPinned,
      CHECK_NAMES.askSignedByArk,
      CHECK_NAMES.vcekSignedByAsk,
      CHECK_NAMES.vcekTcbMatchesReportedTcb,
    ]);
  });

  it("a REPORTED_TCB that differs from the VCEK fails the TCB check", () => {
    const tampered = flipByte(report, 0x180 + 6);
    const failed = failedChecks({ ...genuine, report: tampered });
    expect(failed).toEqual([CHECK_NAMES.reportSignature, CHECK_NAMES.vcekTcbMatchesReportedTcb]);
  });

  it("a CHIP_ID that differs from the VCEK hwID fails the hwID check", () => {
    const tampered = flipByte(report, 0x1a0);
    const failed = failedChecks({ ...genuine, report: tampered });
    expect(failed).toEqual([CHECK_NAMES.reportSignature, CHECK_NAMES.vcekHwIdMatchesChipId]);
  });

  it("a report that does not parse fails every check that reads it", () => {
    const truncated = report.subarray(0, 1000);
    const result = verifyAttestationReport({ ...genuine, report: truncated });
    expect(result.ok).toBe(false);
    expect(result.checks.filter((check) => !check.ok).map((check) => check.name)).toEqual([
      CHECK_NAMES.reportParses,
      CHECK_NAMES.reportSignature,
      CHECK_NAMES.vcekHwIdMatchesChipId,
      CHECK_NAMES.vcekTcbMatchesReportedTcb,
      CHECK_NAMES.policyDebugDisabled,
      CHECK_NAMES.measurementExpected,
      CHECK_NAMES.reportDataMatches,
    ]);
  });
});

describe("pinned ARKs", () => {
  const bundles: [string, string][] = [
    ["Milan", milanChain],
    ["Genoa", genoaChain],
    ["Turin", readFileSync(fixturePath("ask_ark_turin.pem"), "latin1")],
  ];

  it.each(bundles)("the %s bundle's ARK is self-signed, matches its pin and signed its ASK", (name, pem) => {
    const [ask, ark] = parseCertificateBundle(pem);
    if (ask === undefined || ark === undefined) {
      throw new Error(`${name} bundle lacks a certificate`);
    }
    expect(() => verifyIssuedBy(ark, ark)).not.toThrow();
    expect(() => verifyIssuedBy(ask, ark)).not.toThrow();
    expect(AMD_PRODUCTS.find((product) => product.arkSha256 === ark.sha256)?.name).toBe(name);
    expect(ark.x509.subject).toContain(`CN=ARK-${name}`);
  });
});
