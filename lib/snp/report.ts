/**
 * The SEV-SNP ATTESTATION_REPORT structure (SNP firmware ABI, "ATTESTATION_REPORT"),
 * versions 2 and later. Later versions only fill fields that were reserved before,
 * so one parser serves them all.
 * Pure: bytes in, values out.
 */

export const REPORT_SIZE = 1184;
const SIGNED_LENGTH = 0x2a0;
const MIN_REPORT_VERSION = 2;
/** Policy bit 19: the hypervisor may debug (decrypt) the guest. */
const POLICY_DEBUG_BIT = 19n;
/** SIGNATURE_ALGO 1: ECDSA P-384 with SHA-384. */
export const SIGNATURE_ALGO_ECDSA_P384_SHA384 = 1;

const SIGNATURE_OFFSET = 0x2a0;
const SIGNATURE_COMPONENT_SIZE = 72;

export interface AttestationReport {
  version: number;
  guestSvn: number;
  policy: bigint;
  familyId: Buffer;
  imageId: Buffer;
  vmpl: number;
  signatureAlgo: number;
  currentTcb: bigint;
  platformInfo: bigint;
  /** Bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 4:2 SIGNING_KEY (0 = VCEK, 1 = VLEK). */
  signerInfo: number;
  reportData: Buffer;
  measurement: Buffer;
  hostData: Buffer;
  idKeyDigest: Buffer;
  authorKeyDigest: Buffer;
  reportId: Buffer;
  reportIdMa: Buffer;
  reportedTcb: bigint;
  /** CPUID family/model/stepping of the chip; zero before report version 3. */
  cpuidFamily: number;
  cpuidModel: number;
  cpuidStepping: number;
  chipId: Buffer;
  committedTcb: bigint;
  currentBuild: number;
  currentMinor: number;
  currentMajor: number;
  committedBuild: number;
  committedMinor: number;
  committedMajor: number;
  launchTcb: bigint;
  /** The signature's R and S as 72-byte little-endian numbers. */
  signatureR: Buffer;
  signatureS: Buffer;
  /** Bytes 0x000..0x29F, the part the signature covers. */
  signedBytes: Buffer;
}

export function parseAttestationReport(bytes: Uint8Array): AttestationReport {
  const data = Buffer.from(bytes);
  if (data.length !== REPORT_SIZE) {
    throw new Error(`an attestation report is ${REPORT_SIZE} bytes, got ${data.length}`);
  }
  const version = data.readUInt32LE(0x00);
  if (version < MIN_REPORT_VERSION) {
    throw new Error(`report version ${version} is not supported (need ${MIN_REPORT_VERSION} or later)`);
  }
  const slice = (start: number, end: number): Buffer => Buffer.from(data.subarray(start, end));
  return {
    version,
    guestSvn: data.readUInt32LE(0x04),
    policy: data.readBigUInt64LE(0x08),
    familyId: slice(0x10, 0x20),
    imageId: slice(0x20, 0x30),
    vmpl: data.readUInt32LE(0x30),
    signatureAlgo: data.readUInt32LE(0x34),
    currentTcb: data.readBigUInt64LE(0x38),
    platformInfo: data.readBigUInt64LE(0x40),
    signerInfo: data.readUInt32LE(0x48),
    reportData: slice(0x50, 0x90),
    measurement: slice(0x90, 0xc0),
    hostData: slice(0xc0, 0xe0),
    idKeyDigest: slice(0xe0, 0x110),
    authorKeyDigest: slice(0x110, 0x140),
    reportId: slice(0x140, 0x160),
    reportIdMa: slice(0x160, 0x180),
    reportedTcb: data.readBigUInt64LE(0x180),
    cpuidFamily: data.readUInt8(0x188),
    cpuidModel: data.readUInt8(0x189),
    cpuidStepping: data.readUInt8(0x18a),
    chipId: slice(0x1a0, 0x1e0),
    committedTcb: data.readBigUInt64LE(0x1e0),
    currentBuild: data.readUInt8(0x1e8),
    currentMinor: data.readUInt8(0x1e9),
    currentMajor: data.readUInt8(0x1ea),
    committedBuild: data.readUInt8(0x1ec),
    committedMinor: data.readUInt8(0x1ed),
    committedMajor: data.readUInt8(0x1ee),
    launchTcb: data.readBigUInt64LE(0x1f0),
    signatureR: slice(SIGNATURE_OFFSET, SIGNATURE_OFFSET + SIGNATURE_COMPONENT_SIZE),
    signatureS: slice(SIGNATURE_OFFSET + SIGNATURE_COMPONENT_SIZE, SIGNATURE_OFFSET + 2 * SIGNATURE_COMPONENT_SIZE),
    signedBytes: slice(0, SIGNED_LENGTH),
  };
}

export function policyAllowsDebug(policy: bigint): boolean {
  return ((policy >> POLICY_DEBUG_BIT) & 1n) === 1n;
}

/** SIGNING_KEY field of the signer info: 0 VCEK, 1 VLEK, 7 none. */
export function signingKey(report: AttestationReport): number {
  return (report.signerInfo >> 2) & 0x7;
}
