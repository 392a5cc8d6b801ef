/**
 * Reads the parts of an OVMF image that decide an SEV-SNP launch measurement:
 * the GUIDed footer table just below the reset vector, the SEV metadata
 * section list it points to, the SEV-ES reset block (where APs start) and the
 * location of the kernel-hashes table.
 * Pure: bytes in, values out.
 */
import { guidFromBytes } from "./guid";

const FOUR_GIB = 0x1_0000_0000;
export const PAGE_SIZE = 4096;

const OVMF_GUIDS = {
  footerTable: "96b582de-1fb2-45f7-baea-a366c55a082d",
  sevHashTableReservedArea: "7255371f-3a3b-4b04-927b-1da6efa8d454",
  sevEsResetBlock: "00f771de-1a7e-4fcb-890e-68c77e2fb44e",
  sevMetadata: "dc886566-984a-4798-a75e-5585a7bf67cc",
} as const;

/** Section types of the OVMF SEV metadata (OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm). */
export enum SevMetadataSectionType {
  SNP_SEC_MEM = 1,
  SNP_SECRETS = 2,
  CPUID = 3,
  SVSM_CAA = 4,
  SNP_KERNEL_HASHES = 0x10,
}

export interface SevMetadataSection {
  gpa: number;
  size: number;
  type: SevMetadataSectionType;
}

export interface OvmfImage {
  bytes: Buffer;
  /** Guest physical address of the first byte: the image is mapped so that it ends at 4 GiB. */
  gpa: number;
  /** Footer-table entries by lower-case GUID, each holding the entry's data without its header. */
  footerTable: Map<string, Buffer>;
  sections: SevMetadataSection[];
  /** Where application processors start; 0 when the image has no SEV-ES reset block. */
  sevEsResetEip: number;
  /** GPA of the SEV kernel-hashes table; undefined when the image reserves none. */
  hashTableGpa: number | undefined;
}

const FOOTER_ENTRY_HEADER_SIZE = 2 + 16;
// The table's last entry sits just below the final 32 bytes (reset vector and padding).
const FOOTER_TABLE_END_FROM_IMAGE_END = 32;
const METADATA_HEADER_SIZE = 16;
const METADATA_SECTION_SIZE = 12;

function parseFooterTable(image: Buffer): Map<string, Buffer> {
  const table = new Map<string, Buffer>();
  const footerStart = image.length - FOOTER_TABLE_END_FROM_IMAGE_END - FOOTER_ENTRY_HEADER_SIZE;
  if (footerStart < 0) {
    return table;
  }
  const footerGuid = guidFromBytes(image.subarray(footerStart + 2, footerStart + FOOTER_ENTRY_HEADER_SIZE));
  if (footerGuid !== OVMF_GUIDS.footerTable) {
    return table;
  }
  const tableSize = image.readUInt16LE(footerStart) - FOOTER_ENTRY_HEADER_SIZE;
  if (tableSize < 0 || tableSize > footerStart) {
    throw new Error(`OVMF footer table size ${tableSize} does not fit in the image`);
  }
  // Entries are laid out back to back and are read from the end: each one's
  // header (length, GUID) follows its data, and the length covers both.
  let end = footerStart;
  const tableStart = footerStart - tableSize;
  while (end - tableStart >= FOOTER_ENTRY_HEADER_SIZE) {
    const headerStart = end - FOOTER_ENTRY_HEADER_SIZE;
    const entrySize = image.readUInt16LE(headerStart);
    if (entrySize < FOOTER_ENTRY_HEADER_SIZE || entrySize > end - tableStart) {
      throw new Error(`OVMF footer table entry has an invalid size ${entrySize}`);
    }
    const guid = guidFromBytes(image.subarray(headerStart + 2, end));
    table.set(guid, Buffer.from(image.subarray(end - entrySize, headerStart)));
    end -= entrySize;
  }
  return table;
}

function readU32Entry(table: Map<string, Buffer>, guid: string): number | undefined {
  const data = table.get(guid);
  if (data === undefined) {
    return undefined;
  }
  if (data.length < 4) {
    throw new Error(`OVMF footer table entry ${guid} is too short`);
  }
  return data.readUInt32LE(0);
}

function parseSevMetadata(image: Buffer, table: Map<string, Buffer>): SevMetadataSection[] {
  const offsetFromEnd = readU32Entry(table, OVMF_GUIDS.sevMetadata);
  if (offsetFromEnd === undefined) {
    return [];
  }
  const start = image.length - offsetFromEnd;
  if (start < 0 || start + METADATA_HEADER_SIZE > image.length) {
    throw new Error("OVMF SEV metadata offset points outside the image");
  }
  const signature = image.subarray(start, start + 4).toString("latin1");
  if (signature !== "ASEV") {
    throw new Error(`OVMF SEV metadata has signature ${JSON.stringify(signature)}, expected "ASEV"`);
  }
  const headerSize = image.readUInt32LE(start + 4);
  const version = image.readUInt32LE(start + 8);
  const count = image.readUInt32LE(start + 12);
  if (version !== 1) {
    throw new Error(`OVMF SEV metadata version ${version} is not supported (expected 1)`);
  }
  const itemsEnd = start + METADATA_HEADER_SIZE + count * METADATA_SECTION_SIZE;
  if (itemsEnd > start + headerSize || itemsEnd > image.length) {
    throw new Error("OVMF SEV metadata section list runs past its header's size");
  }
  const sections: SevMetadataSection[] = [];
  for (let i = 0; i < count; i++) {
    const at = start + METADATA_HEADER_SIZE + i * METADATA_SECTION_SIZE;
    const type = image.readUInt32LE(at + 8);
    if (!(type in SevMetadataSectionType)) {
      throw new Error(`OVMF SEV metadata section ${i} has unknown type 0x${type.toString(16)}`);
    }
    sections.push({ gpa: image.readUInt32LE(at), size: image.readUInt32LE(at + 4), type });
  }
  return sections;
}

/** Parses an OVMF image mapped so that its last byte is just below `endAt` (4 GiB for QEMU). */
export function parseOvmf(bytes: Uint8Array, endAt: number = FOUR_GIB): OvmfImage {
  const image = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (image.length === 0 || image.length % PAGE_SIZE !== 0) {
    throw new Error(`OVMF image size ${image.length} is not a positive multiple of ${PAGE_SIZE}`);
  }
  const footerTable = parseFooterTable(image);
  const sections = parseSevMetadata(image, footerTable);
  const hashTableGpa = readU32Entry(footerTable, OVMF_GUIDS.sevHashTableReservedArea);
  return {
    bytes: image,
    gpa: endAt - image.length,
    footerTable,
    sections,
    sevEsResetEip: readU32Entry(footerTable, OVMF_GUIDS.sevEsResetBlock) ?? 0,
    hashTableGpa: hashTableGpa === 0 ? undefined : hashTableGpa,
  };
}

export function hasSection(ovmf: OvmfImage, type: SevMetadataSectionType): boolean {
  return ovmf.sections.some((section) => section.type === type);
}
