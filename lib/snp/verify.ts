/**
 * Verifies an SEV-SNP attestation report against AMD's certificate chain and
 * the caller's expectations. Every check runs and reports on its own so an
 * operator sees all that is wrong at once; any check that cannot get the data
 * it needs fails rather than being skipped.
 * Pure: bytes in, values out.
 */
import { verify as verifySignature } from "node:crypto";
import {
  AMD_PRODUCTS,
  AmdCertificate,
  AmdProduct,
  oneLine,
  parseCertificate,
  parseCertificateBundle,
  productForArk,
  tcbComponent,
  TcbComponent,
  vcekHardwareId,
  vcekPatchLevel,
  verifyIssuedBy,
} from "./amd-certs";
import {
  AttestationReport,
  parseAttestationReport,
  policyAllowsDebug,
  SIGNATURE_ALGO_ECDSA_P384_SHA384,
  signingKey,
} from "./report";

export const CHECK_NAMES = {
  reportParses: "report-parses",
  arkPinned: "ark-pinned",
  askSignedByArk: "ask-signed-by-ark",
  vcekSignedByAsk: "vcek-signed-by-ask",
  reportSignature: "report-signature",
  vcekHwIdMatchesChipId: "vcek-hwid-matches-chip-id",
  vcekTcbMatchesReportedTcb: "vcek-tcb-matches-reported-tcb",
  policyDebugDisabled: "policy-debug-disabled",
  measurementExpected: "measurement-expected",
  reportDataMatches: "report-data-matches",
} as const;

export type CheckName = (typeof CHECK_NAMES)[keyof typeof CHECK_NAMES];

interface CheckResult {
  name: CheckName;
  ok: boolean;
  detail: string;
}

export interface VerificationResult {
  ok: boolean;
  checks: CheckResult[];
  /** Present when the report parsed. */
  report?: AttestationReport;
  /** The product whose pinned ARK the chain ends in. */
  product?: string;
}

export interface VerificationInput {
  /** The 1184-byte report. */
  report: Uint8Array;
  /** The VCEK certificate, DER or PEM. */
  vcek: Uint8Array | string;
  /** AMD's cert_chain PEM bundle: ASK first, then ARK. */
  chain: Uint8Array | string;
  /** Acceptable MEASUREMENT values as hex; when given, the report's must be one of them (an empty list accepts none). */
  expectedMeasurements?: readonly string[];
  /** Expected REPORT_DATA as hex, up to 64 bytes; shorter values are compared zero-padded on the right. */
  reportData?: string;
  /** Accept a guest whose policy lets the hypervisor debug it. */
  allowDebug?: boolean;
  /** ARK pins; defaults to AMD_PRODUCTS. */
  products?: readonly AmdProduct[];
}

const REPORT_DATA_SIZE = 64;
const MEASUREMENT_SIZE = 48;
const P384_COMPONENT_SIZE = 48;
const REPORT_SIGNATURE_COMPONENT_SIZE = 72;

interface Outcome {
  ok: boolean;
  detail: string;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function attempt(run: () => string): Outcome {
  try {
    return { ok: true, detail: run() };
  } catch (error) {
    return { ok: false, detail: messageOf(error) };
  }
}

function need<T>(value: T | undefined, why: string): T {
  if (value === undefined) {
    throw new Error(why);
  }
  return value;
}

function parseHex(hex: string, what: string): Buffer {
  const digits = hex.trim().replace(/^0x/i, "");
  if (digits.length === 0 || digits.length % 2 !== 0 || !/^[0-9a-f]+$/i.test(digits)) {
    throw new Error(`${what} "${hex}" is not an even number of hex digits`);
  }
  return Buffer.from(digits, "hex");
}

/** The report's R and S are little-endian and zero-extended to 72 bytes; P-384 wants 48 big-endian bytes each. */
function p1363Signature(report: AttestationReport): Buffer {
  const component = (littleEndian: Buffer, name: string): Buffer => {
    if (littleEndian.length !== REPORT_SIGNATURE_COMPONENT_SIZE) {
      throw new Error(`signature ${name} has ${littleEndian.length} bytes`);
    }
    if (littleEndian.subarray(P384_COMPONENT_SIZE).some((byte) => byte !== 0)) {
      throw new Error(`signature ${name} exceeds 384 bits`);
    }
    return Buffer.from(littleEndian.subarray(0, P384_COMPONENT_SIZE)).reverse();
  };
  return Buffer.concat([component(report.signatureR, "R"), component(report.signatureS, "S")]);
}

function parseChain(chain: Uint8Array | string): { ask: AmdCertificate; ark: AmdCertificate } {
  const certificates = parseCertificateBundle(typeof chain === "string" ? chain : Buffer.from(chain).toString("latin1"));
  if (certificates.length !== 2) {
    throw new Error(`certificate chain holds ${certificates.length} certificates, expected 2 (ASK, then ARK)`);
  }
  return { ask: certificates[0] as AmdCertificate, ark: certificates[1] as AmdCertificate };
}

function parseVcek(vcek: Uint8Array | string): AmdCertificate {
  if (typeof vcek === "string") {
    return parseCertificate(vcek);
  }
  const text = Buffer.from(vcek).toString("latin1");
  return parseCertificate(text.includes("-----BEGIN CERTIFICATE-----") ? text : vcek);
}

export function verifyAttestationReport(input: VerificationInput): VerificationResult {
  const products = input.products ?? AMD_PRODUCTS;
  const checks: CheckResult[] = [];
  const record = (name: CheckName, outcome: Outcome): void => {
    checks.push({ name, ok: outcome.ok, detail: outcome.detail });
  };

  let report: AttestationReport | undefined;
  record(
    CHECK_NAMES.reportParses,
    attempt(() => {
      report = parseAttestationReport(input.report);
      return `version ${report.version}, VMPL ${report.vmpl}, policy 0x${report.policy.toString(16)}`;
    }),
  );
  const noReport = "report did not parse";

  let certificates: { ask: AmdCertificate; ark: AmdCertificate } | undefined;
  let noChain = "";
  try {
    certificates = parseChain(input.chain);
  } catch (error) {
    noChain = `certificate chain unusable: ${messageOf(error)}`;
  }

  let vcek: AmdCertificate | undefined;
  let vcekProblem = "";
  try {
    vcek = parseVcek(input.vcek);
  } catch (error) {
    vcekProblem = `VCEK unusable: ${messageOf(error)}`;
  }

  let product: AmdProduct | undefined;
  record(
    CHECK_NAMES.arkPinned,
    attempt(() => {
      const { ark } = need(certificates, noChain);
      verifyIssuedBy(ark, ark);
      product = productForArk(ark, products);
      if (product === undefined) {
        throw new Error(
          `ARK "${oneLine(ark.x509.subject)}" (SHA-256 ${ark.sha256}) matches no pinned ARK ` +
            `(${products.map((known) => known.name).join(", ")})`,
        );
      }
      return `self-signed ARK-${product.name}, SHA-256 ${ark.sha256}`;
    }),
  );

  record(
    CHECK_NAMES.askSignedByArk,
    attempt(() => {
      const { ask, ark } = need(certificates, noChain);
      verifyIssuedBy(ask, ark);
      return `"${oneLine(ask.x509.subject)}" signed by ARK (RSA-PSS SHA-384)`;
    }),
  );

  record(
    CHECK_NAMES.vcekSignedByAsk,
    attempt(() => {
      const { ask } = need(certificates, noChain);
      const cert = need(vcek, vcekProblem);
      verifyIssuedBy(cert, ask);
      return `VCEK signed by "${oneLine(ask.x509.subject)}" (RSA-PSS SHA-384)`;
    }),
  );

  record(
    CHECK_NAMES.reportSignature,
    attempt(() => {
      const parsed = need(report, noReport);
      const cert = need(vcek, vcekProblem);
      if (parsed.signatureAlgo !== SIGNATURE_ALGO_ECDSA_P384_SHA384) {
        throw new Error(`signature algorithm ${parsed.signatureAlgo} is not ECDSA P-384 SHA-384 (1)`);
      }
      if (signingKey(parsed) !== 0) {
        throw new Error(`report is signed by key type ${signingKey(parsed)}, not the VCEK (0)`);
      }
      const key = cert.x509.publicKey;
      if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "secp384r1") {
        throw new Error("VCEK key is not an ECDSA P-384 key");
      }
      const valid = verifySignature(
        "sha384",
        parsed.signedBytes,
        { key, dsaEncoding: "ieee-p1363" },
        p1363Signature(parsed),
      );
      if (!valid) {
        throw new Error("ECDSA P-384 SHA-384 signature over bytes 0x000-0x29F does not verify with the VCEK");
      }
      return "ECDSA P-384 SHA-384 signature by the VCEK verifies";
    }),
  );

  record(
    CHECK_NAMES.vcekHwIdMatchesChipId,
    attempt(() => {
      const parsed = need(report, noReport);
      const cert = need(vcek, vcekProblem);
      const hwId = need(vcekHardwareId(cert), "VCEK has no hwID extension (1.3.6.1.4.1.3704.1.4)");
      if (!hwId.equals(parsed.chipId)) {
        const masked = parsed.chipId.every((byte) => byte === 0) ? " (the report's CHIP_ID is masked)" : "";
        throw new Error(`VCEK hwID ${hwId.toString("hex")} differs from CHIP_ID ${parsed.chipId.toString("hex")}${masked}`);
      }
      return `hwID equals CHIP_ID ${parsed.chipId.toString("hex").slice(0, 16)}...`;
    }),
  );

  record(
    CHECK_NAMES.vcekTcbMatchesReportedTcb,
    attempt(() => {
      const parsed = need(report, noReport);
      const cert = need(vcek, vcekProblem);
      const known = need(product, "product unknown (ARK not pinned), so the TCB layout is unknown");
      const parts: string[] = [];
      const mismatches: string[] = [];
      for (const [component, byteIndex] of Object.entries(known.tcbLayout) as [TcbComponent, number][]) {
        const reported = tcbComponent(parsed.reportedTcb, byteIndex);
        const certified = vcekPatchLevel(cert, component);
        parts.push(`${component}=${reported}`);
        if (reported !== certified) {
          mismatches.push(`${component}: report ${reported}, VCEK ${certified}`);
        }
      }
      if (mismatches.length > 0) {
        throw new Error(`REPORTED_TCB 0x${parsed.reportedTcb.toString(16)} differs from the VCEK: ${mismatches.join("; ")}`);
      }
      return `REPORTED_TCB ${parts.join(" ")} matches the VCEK`;
    }),
  );

  record(
    CHECK_NAMES.policyDebugDisabled,
    attempt(() => {
      const parsed = need(report, noReport);
      if (!policyAllowsDebug(parsed.policy)) {
        return `debug bit 19 clear (policy 0x${parsed.policy.toString(16)})`;
      }
      if (input.allowDebug === true) {
        return `debug bit 19 set (policy 0x${parsed.policy.toString(16)}), explicitly allowed`;
      }
      throw new Error(`policy 0x${parsed.policy.toString(16)} has debug bit 19 set: the host can read guest memory`);
    }),
  );

  if (input.expectedMeasurements !== undefined) {
    const expected = input.expectedMeasurements;
    record(
      CHECK_NAMES.measurementExpected,
      attempt(() => {
        const parsed = need(report, noReport);
        const wanted = expected.map((hex) => {
          const value = parseHex(hex, "expected measurement");
          if (value.length !== MEASUREMENT_SIZE) {
            throw new Error(`expected measurement "${hex}" is not ${MEASUREMENT_SIZE} bytes`);
          }
          return value;
        });
        const actual = parsed.measurement.toString("hex");
        if (!wanted.some((value) => value.equals(parsed.measurement))) {
          throw new Error(`MEASUREMENT ${actual} is not among the ${wanted.length} expected value(s)`);
        }
        return `MEASUREMENT ${actual}`;
      }),
    );
  }

  if (input.reportData !== undefined) {
    const reportData = input.reportData;
    record(
      CHECK_NAMES.reportDataMatches,
      attempt(() => {
        const parsed = need(report, noReport);
        const wanted = parseHex(reportData, "report data");
        if (wanted.length > REPORT_DATA_SIZE) {
          throw new Error(`expected REPORT_DATA has ${wanted.length} bytes, more than ${REPORT_DATA_SIZE}`);
        }
        const padded = Buffer.concat([wanted, Buffer.alloc(REPORT_DATA_SIZE - wanted.length)]);
        if (!padded.equals(parsed.reportData)) {
          throw new Error(`REPORT_DATA ${parsed.reportData.toString("hex")} differs from ${padded.toString("hex")}`);
        }
        return `REPORT_DATA ${parsed.reportData.toString("hex")}`;
      }),
    );
  }

  return {
    ok: checks.length > 0 && checks.every((check) => check.ok),
    checks,
    ...(report === undefined ? {} : { report }),
    ...(product === undefined ? {} : { product: product.name }),
  };
}
