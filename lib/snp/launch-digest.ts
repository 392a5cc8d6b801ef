/**
 * The SEV-SNP launch digest (the MEASUREMENT of an attestation report),
 * recomputed from the inputs the host feeds to SNP_LAUNCH_UPDATE: every page
 * the VMM measures extends a SHA-384 chain through a PAGE_INFO structure
 * (SNP firmware ABI, "PAGE_INFO" layout).
 * Pure: bytes in, values out.
 */
import { createHash } from "node:crypto";
import { buildHashTable, kernelHashes } from "./kernel-hashes";
import {
  hasSection,
  OvmfImage,
  PAGE_SIZE,
  parseOvmf,
  SevMetadataSection,
  SevMetadataSectionType,
} from "./ovmf";
import { parseVcpuSignature, vcpuSignatureForType } from "./vcpu-types";
import { BSP_RESET_EIP, buildVmsaPage, VmmType } from "./vmsa";

const LAUNCH_DIGEST_SIZE = 48;

enum PageType {
  NORMAL = 0x01,
  VMSA = 0x02,
  ZERO = 0x03,
  UNMEASURED = 0x04,
  SECRETS = 0x05,
  CPUID = 0x06,
}

const PAGE_INFO_SIZE = 0x70;
// The PSP records VMSA pages at GPA -1, page-aligned and cut to 52 bits.
const VMSA_GPA = 0xfffffffff000n;
const NO_CONTENTS = Buffer.alloc(LAUNCH_DIGEST_SIZE);

function sha384(data: Uint8Array): Buffer {
  return createHash("sha384").update(data).digest();
}

/** The running digest over PAGE_INFO structures, one per measured page. */
class LaunchDigest {
  private digest: Buffer;
  private readonly pageInfo = Buffer.alloc(PAGE_INFO_SIZE);

  constructor(seed: Uint8Array = NO_CONTENTS) {
    if (seed.length !== LAUNCH_DIGEST_SIZE) {
      throw new Error(`a launch digest seed is ${LAUNCH_DIGEST_SIZE} bytes, got ${seed.length}`);
    }
    this.digest = Buffer.from(seed);
  }

  value(): Buffer {
    return Buffer.from(this.digest);
  }

  private extend(pageType: PageType, gpa: bigint, contents: Buffer): void {
    const info = this.pageInfo;
    this.digest.copy(info, 0);
    contents.copy(info, 0x30);
    info.writeUInt16LE(PAGE_INFO_SIZE, 0x60);
    info.writeUInt8(pageType, 0x62);
    // IMI_PAGE, the VMPL1..3 permissions and the reserved byte are zero for a normal launch.
    info.writeUInt32LE(0, 0x63);
    info.writeUInt8(0, 0x67);
    info.writeBigUInt64LE(gpa, 0x68);
    this.digest = sha384(info);
  }

  private static requirePageMultiple(what: string, length: number): void {
    if (length % PAGE_SIZE !== 0) {
      throw new Error(`${what} length ${length} is not a multiple of ${PAGE_SIZE}`);
    }
  }

  normalPages(gpa: number, data: Uint8Array): void {
    LaunchDigest.requirePageMultiple("measured data", data.length);
    for (let offset = 0; offset < data.length; offset += PAGE_SIZE) {
      this.extend(PageType.NORMAL, BigInt(gpa + offset), sha384(data.subarray(offset, offset + PAGE_SIZE)));
    }
  }

  zeroPages(gpa: number, length: number): void {
    this.sameForEachPage(PageType.ZERO, gpa, length);
  }

  unmeasuredPages(gpa: number, length: number): void {
    this.sameForEachPage(PageType.UNMEASURED, gpa, length);
  }

  secretsPage(gpa: number): void {
    this.extend(PageType.SECRETS, BigInt(gpa), NO_CONTENTS);
  }

  cpuidPage(gpa: number): void {
    this.extend(PageType.CPUID, BigInt(gpa), NO_CONTENTS);
  }

  vmsaPage(page: Uint8Array): void {
    if (page.length !== PAGE_SIZE) {
      throw new Error(`a VMSA is one ${PAGE_SIZE}-byte page, got ${page.length} bytes`);
    }
    this.extend(PageType.VMSA, VMSA_GPA, sha384(page));
  }

  private sameForEachPage(pageType: PageType, gpa: number, length: number): void {
    LaunchDigest.requirePageMultiple("section", length);
    for (let offset = 0; offset < length; offset += PAGE_SIZE) {
      this.extend(pageType, BigInt(gpa + offset), NO_CONTENTS);
    }
  }
}

export interface LaunchDigestInput {
  /** The whole OVMF image (needed even with ovmfHash, for its metadata). */
  ovmf: Uint8Array;
  /** Firmware-only digest (from firmwareLaunchDigest) to start from instead of hashing the OVMF pages. */
  ovmfHash?: string | Uint8Array;
  /** Measured as "the kernel": for a UKI booted with -kernel, the whole .efi file. */
  kernel?: Uint8Array;
  initrd?: Uint8Array;
  /** Kernel command line (QEMU -append). */
  append?: string;
  vcpus: number;
  /** QEMU model name such as "EPYC-v4"; give this or vcpuSignature. */
  vcpuType?: string;
  /** CPUID leaf 1 EAX value, as a number or hex string. */
  vcpuSignature?: number | string;
  /** SEV_FEATURES of the guest; defaults to 0x1 (SNPActive only). */
  guestFeatures?: bigint | number | string;
  vmm?: VmmType;
}

function toBigInt(value: bigint | number | string): bigint {
  if (typeof value === "bigint") {
    return value;
  }
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new Error(`guest features must be a non-negative integer, got ${value}`);
    }
    return BigInt(value);
  }
  const digits = value.trim().replace(/^0x/i, "");
  if (!/^[0-9a-f]{1,16}$/i.test(digits)) {
    throw new Error(`guest features must be a 64-bit hex number, got "${value}"`);
  }
  return BigInt(`0x${digits}`);
}

function parseSeed(hash: string | Uint8Array): Buffer {
  if (typeof hash !== "string") {
    return Buffer.from(hash);
  }
  const digits = hash.trim().replace(/^0x/i, "");
  if (!new RegExp(`^[0-9a-f]{${2 * LAUNCH_DIGEST_SIZE}}$`, "i").test(digits)) {
    throw new Error(`OVMF hash must be ${2 * LAUNCH_DIGEST_SIZE} hex digits, got "${hash}"`);
  }
  return Buffer.from(digits, "hex");
}

function resolveVcpuSignature(input: LaunchDigestInput): number {
  const { vcpuType, vcpuSignature } = input;
  if (vcpuType !== undefined && vcpuSignature !== undefined) {
    throw new Error("give either a vCPU type or a vCPU signature, not both");
  }
  if (vcpuType !== undefined) {
    return vcpuSignatureForType(vcpuType);
  }
  if (typeof vcpuSignature === "string") {
    return parseVcpuSignature(vcpuSignature);
  }
  if (typeof vcpuSignature === "number" && Number.isInteger(vcpuSignature) && vcpuSignature >= 0) {
    return vcpuSignature >>> 0;
  }
  if ((input.vmm ?? "QEMU") !== "QEMU") {
    // EC2 and GCE put a fixed value in RDX instead of the model's signature.
    return 0;
  }
  throw new Error("a vCPU type or vCPU signature is needed: QEMU puts it into every VMSA");
}

/** The kernel-hashes section: zero-filled except for the hash table at its GPA. */
function kernelHashesSection(ovmf: OvmfImage, section: SevMetadataSection, table: Buffer): Buffer {
  const tableGpa = ovmf.hashTableGpa;
  if (tableGpa === undefined) {
    throw new Error(
      "the OVMF footer table has no SEV hash table entry, so it cannot check a measured kernel; use an AmdSevX64 OVMF build",
    );
  }
  const offset = tableGpa - section.gpa;
  if (offset < 0 || offset + table.length > section.size) {
    throw new Error(
      `the SEV hash table at 0x${tableGpa.toString(16)} lies outside the SNP_KERNEL_HASHES section ` +
        `0x${section.gpa.toString(16)}+0x${section.size.toString(16)}`,
    );
  }
  const contents = Buffer.alloc(section.size);
  table.copy(contents, offset);
  return contents;
}

function measureMetadataSections(
  digest: LaunchDigest,
  ovmf: OvmfImage,
  hashTable: Buffer | undefined,
  vmm: VmmType,
): void {
  for (const section of ovmf.sections) {
    switch (section.type) {
      case SevMetadataSectionType.SNP_SEC_MEM:
        if (vmm === "gce") {
          digest.unmeasuredPages(section.gpa, section.size);
        } else {
          digest.zeroPages(section.gpa, section.size);
        }
        break;
      case SevMetadataSectionType.SNP_SECRETS:
        digest.secretsPage(section.gpa);
        break;
      case SevMetadataSectionType.CPUID:
        // EC2 adds the CPUID page after all other sections.
        if (vmm !== "ec2") {
          digest.cpuidPage(section.gpa);
        }
        break;
      case SevMetadataSectionType.SNP_KERNEL_HASHES:
        if (hashTable === undefined) {
          digest.zeroPages(section.gpa, section.size);
        } else {
          digest.normalPages(section.gpa, kernelHashesSection(ovmf, section, hashTable));
        }
        break;
      case SevMetadataSectionType.SVSM_CAA:
        digest.zeroPages(section.gpa, section.size);
        break;
    }
  }
  if (vmm === "ec2") {
    for (const section of ovmf.sections) {
      if (section.type === SevMetadataSectionType.CPUID) {
        digest.cpuidPage(section.gpa);
      }
    }
  }
}

/** The digest over the firmware pages alone: what --ovmf-hash takes, so a large OVMF need not be re-hashed. */
export function firmwareLaunchDigest(ovmfBytes: Uint8Array): Buffer {
  const ovmf = parseOvmf(ovmfBytes);
  const digest = new LaunchDigest();
  digest.normalPages(ovmf.gpa, ovmf.bytes);
  return digest.value();
}

/** Computes the 48-byte SNP launch digest a guest started with these inputs will report. */
export function snpLaunchDigest(input: LaunchDigestInput): Buffer {
  const vmm = input.vmm ?? "QEMU";
  if (!Number.isInteger(input.vcpus) || input.vcpus < 1) {
    throw new Error(`vCPU count must be a positive integer, got ${input.vcpus}`);
  }
  if (input.kernel === undefined && (input.initrd !== undefined || input.append !== undefined)) {
    throw new Error("an initrd or command line is only measured together with a kernel");
  }
  const vcpuSignature = resolveVcpuSignature(input);
  const guestFeatures = toBigInt(input.guestFeatures ?? 1n);
  const ovmf = parseOvmf(input.ovmf);

  if (input.kernel !== undefined && !hasSection(ovmf, SevMetadataSectionType.SNP_KERNEL_HASHES)) {
    throw new Error(
      "this OVMF has no SNP_KERNEL_HASHES section in its SEV metadata, so QEMU cannot measure a kernel " +
        "(measured direct boot); an AmdSevX64 OVMF build (OvmfPkg/AmdSev/AmdSevX64.dsc) is needed",
    );
  }
  const hashTable =
    input.kernel === undefined ? undefined : buildHashTable(kernelHashes(input.kernel, input.initrd, input.append));

  let digest: LaunchDigest;
  if (input.ovmfHash !== undefined) {
    digest = new LaunchDigest(parseSeed(input.ovmfHash));
  } else {
    digest = new LaunchDigest();
    digest.normalPages(ovmf.gpa, ovmf.bytes);
  }

  measureMetadataSections(digest, ovmf, hashTable, vmm);

  if (input.vcpus > 1 && ovmf.sevEsResetEip === 0) {
    throw new Error("this OVMF has no SEV-ES reset block, so its application processors cannot start");
  }
  const vmsa = (eip: number): Buffer =>
    buildVmsaPage({ eip, sevFeatures: guestFeatures, vcpuSignature, vmm });
  const bspVmsa = vmsa(BSP_RESET_EIP);
  const apVmsa = input.vcpus > 1 ? vmsa(ovmf.sevEsResetEip) : bspVmsa;
  for (let vcpu = 0; vcpu < input.vcpus; vcpu++) {
    digest.vmsaPage(vcpu === 0 ? bspVmsa : apVmsa);
  }
  return digest.value();
}

/**
 * The measurements of one UKI and OVMF launched with each of `vcpuTypes` and every count of 1 to `maxVcpus`
 * vCPUs, keyed "COUNT/TYPE". The pages before the VMSAs are the same for all of them, so they are hashed
 * once; each model then extends that digest one VMSA at a time. What a measurement mismatch is checked
 * against (lib/snp/measurement-causes.ts).
 */
export function launchMeasurementsByVcpus(input: { ovmf: Uint8Array; kernel: Uint8Array; vcpuTypes: string[]; maxVcpus: number }): Map<string, string> {
  const ovmf = parseOvmf(input.ovmf);
  const hashTable = buildHashTable(kernelHashes(input.kernel, undefined, undefined));
  const prefix = new LaunchDigest();
  prefix.normalPages(ovmf.gpa, ovmf.bytes);
  measureMetadataSections(prefix, ovmf, hashTable, "QEMU");
  const out = new Map<string, string>();
  for (const vcpuType of input.vcpuTypes) {
    const vmsa = (eip: number) => buildVmsaPage({ eip, sevFeatures: 1n, vcpuSignature: vcpuSignatureForType(vcpuType), vmm: "QEMU" });
    const digest = new LaunchDigest(prefix.value());
    const apVmsa = ovmf.sevEsResetEip === 0 ? undefined : vmsa(ovmf.sevEsResetEip);
    for (let vcpus = 1; vcpus <= input.maxVcpus; vcpus++) {
      if (vcpus === 1) digest.vmsaPage(vmsa(BSP_RESET_EIP));
      else if (apVmsa) digest.vmsaPage(apVmsa);
      else break;
      out.set(`${vcpus}/${vcpuType}`, digest.value().toString("hex"));
    }
  }
  return out;
}

export interface ExpectedMeasurementInput {
  ovmf: Uint8Array;
  kernel: Uint8Array;
  vcpus: number;
  vcpuType: string;
  guestFeatures?: bigint | number | string;
  append?: string;
}

/** Hex MEASUREMENT of a QEMU SNP guest booting `kernel` (a UKI) directly: expectedLaunchMeasurement({ ovmf, kernel, vcpus: 2, vcpuType: "EPYC-v4" }). */
export function expectedLaunchMeasurement(input: ExpectedMeasurementInput): string {
  return snpLaunchDigest({
    ovmf: input.ovmf,
    kernel: input.kernel,
    vcpus: input.vcpus,
    vcpuType: input.vcpuType,
    guestFeatures: input.guestFeatures ?? 1n,
    append: input.append,
    vmm: "QEMU",
  }).toString("hex");
}
