/** The SEV-SNP verifier's public face: certificates and the report check. Pure. */
export { expectedLaunchMeasurement, firmwareLaunchDigest, LaunchDigest, snpLaunchDigest } from "./launch-digest";
export type { ExpectedMeasurementInput, LaunchDigestInput } from "./launch-digest";
export { hasSection, parseOvmf, SevMetadataSectionType } from "./ovmf";
export type { OvmfImage, SevMetadataSection } from "./ovmf";
export { buildHashTable, kernelHashes } from "./kernel-hashes";
export { buildVmsaPage } from "./vmsa";
export type { VmmType } from "./vmsa";
export { cpuSignature, parseVcpuSignature, VCPU_SIGNATURES, vcpuSignatureForType, vcpuTypeNames } from "./vcpu-types";
export { parseAttestationReport, policyAllowsDebug, REPORT_SIZE } from "./report";
export type { AttestationReport } from "./report";
export { AMD_PRODUCTS, parseCertificate, parseCertificateBundle } from "./amd-certs";
export type { AmdProduct, TcbComponent } from "./amd-certs";
export { CHECK_NAMES, verifyAttestationReport } from "./verify";
export type { CheckName, CheckResult, VerificationInput, VerificationResult } from "./verify";
