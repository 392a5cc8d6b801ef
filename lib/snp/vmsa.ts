/**
 * Initial VMSA pages (the encrypted register state of each vCPU) as the
 * hypervisor hands them to the PSP. Offsets follow the SEV-ES save area in
 * AMD APM vol. 2, table B-4; only the fields a VMM sets at reset are written.
 * Pure: bytes in, values out.
 */
import { PAGE_SIZE } from "./ovmf";

export type VmmType = "QEMU" | "ec2" | "gce";

/** Where the BSP starts: the x86 reset vector just below 4 GiB. */
export const BSP_RESET_EIP = 0xfffffff0;

const SEGMENT_OFFSETS = {
  es: 0x00,
  cs: 0x10,
  ss: 0x20,
  ds: 0x30,
  fs: 0x40,
  gs: 0x50,
  gdtr: 0x60,
  ldtr: 0x70,
  idtr: 0x80,
  tr: 0x90,
} as const;

const FIELD_OFFSETS = {
  efer: 0xd0,
  cr4: 0x148,
  cr0: 0x158,
  dr7: 0x160,
  dr6: 0x168,
  rflags: 0x170,
  rip: 0x178,
  gPat: 0x268,
  rdx: 0x310,
  sevFeatures: 0x3b0,
  xcr0: 0x3e8,
  mxcsr: 0x408,
  x87Fcw: 0x410,
} as const;

interface Segment {
  selector: number;
  attributes: number;
  limit: number;
  base: number;
}

interface VmmResetState {
  csAttributes: number;
  ssAttributes: number;
  trAttributes: number;
  rdx: number;
  gPat: bigint;
  mxcsr: number;
  x87Fcw: number;
}

// PAT MSR power-on value (APM vol. 2, A.3).
const DEFAULT_G_PAT = 0x0007040600070406n;

/** The register values that differ between VMMs; everything else is common reset state. */
function resetStateFor(vmm: VmmType, eip: number, vcpuSignature: number): VmmResetState {
  switch (vmm) {
    case "QEMU":
      return {
        csAttributes: 0x9b,
        ssAttributes: 0x93,
        trAttributes: 0x8b,
        rdx: vcpuSignature,
        gPat: DEFAULT_G_PAT,
        mxcsr: 0x1f80,
        x87Fcw: 0x37f,
      };
    case "ec2":
      return {
        csAttributes: eip === BSP_RESET_EIP ? 0x9a : 0x9b,
        ssAttributes: 0x92,
        trAttributes: 0x83,
        rdx: 0x600,
        gPat: DEFAULT_G_PAT,
        mxcsr: 0,
        x87Fcw: 0,
      };
    case "gce":
      return {
        csAttributes: 0x9b,
        ssAttributes: 0x93,
        trAttributes: 0x8b,
        rdx: 0x600,
        gPat: 0x00070106n,
        mxcsr: 0,
        x87Fcw: 0,
      };
  }
}

function writeSegment(page: Buffer, offset: number, segment: Segment): void {
  page.writeUInt16LE(segment.selector, offset);
  page.writeUInt16LE(segment.attributes, offset + 2);
  page.writeUInt32LE(segment.limit, offset + 4);
  page.writeBigUInt64LE(BigInt(segment.base), offset + 8);
}

export interface VmsaOptions {
  eip: number;
  /** SEV_FEATURES: bit 0 SNPActive, bit 5 DebugSwap, ... (the "guest features"). */
  sevFeatures: bigint;
  vcpuSignature: number;
  vmm: VmmType;
}

export function buildVmsaPage(options: VmsaOptions): Buffer {
  const { eip, sevFeatures, vcpuSignature, vmm } = options;
  const state = resetStateFor(vmm, eip, vcpuSignature);
  const page = Buffer.alloc(PAGE_SIZE);
  const dataSegment = (attributes: number): Segment => ({ selector: 0, attributes, limit: 0xffff, base: 0 });

  writeSegment(page, SEGMENT_OFFSETS.es, dataSegment(0x93));
  // Real-mode CS: the reset EIP's upper half lives in the CS base, the lower half in RIP.
  writeSegment(page, SEGMENT_OFFSETS.cs, {
    selector: 0xf000,
    attributes: state.csAttributes,
    limit: 0xffff,
    base: (eip & 0xffff0000) >>> 0,
  });
  writeSegment(page, SEGMENT_OFFSETS.ss, dataSegment(state.ssAttributes));
  writeSegment(page, SEGMENT_OFFSETS.ds, dataSegment(0x93));
  writeSegment(page, SEGMENT_OFFSETS.fs, dataSegment(0x93));
  writeSegment(page, SEGMENT_OFFSETS.gs, dataSegment(0x93));
  writeSegment(page, SEGMENT_OFFSETS.gdtr, dataSegment(0));
  writeSegment(page, SEGMENT_OFFSETS.ldtr, dataSegment(0x82));
  writeSegment(page, SEGMENT_OFFSETS.idtr, dataSegment(0));
  writeSegment(page, SEGMENT_OFFSETS.tr, dataSegment(state.trAttributes));

  // KVM sets EFER.SVME and CR4.MCE at vCPU reset.
  page.writeBigUInt64LE(0x1000n, FIELD_OFFSETS.efer);
  page.writeBigUInt64LE(0x40n, FIELD_OFFSETS.cr4);
  page.writeBigUInt64LE(0x10n, FIELD_OFFSETS.cr0);
  page.writeBigUInt64LE(0x400n, FIELD_OFFSETS.dr7);
  page.writeBigUInt64LE(0xffff0ff0n, FIELD_OFFSETS.dr6);
  page.writeBigUInt64LE(0x2n, FIELD_OFFSETS.rflags);
  page.writeBigUInt64LE(BigInt(eip & 0xffff), FIELD_OFFSETS.rip);
  page.writeBigUInt64LE(state.gPat, FIELD_OFFSETS.gPat);
  page.writeBigUInt64LE(BigInt(state.rdx >>> 0), FIELD_OFFSETS.rdx);
  page.writeBigUInt64LE(BigInt.asUintN(64, sevFeatures), FIELD_OFFSETS.sevFeatures);
  page.writeBigUInt64LE(0x1n, FIELD_OFFSETS.xcr0);
  page.writeUInt32LE(state.mxcsr, FIELD_OFFSETS.mxcsr);
  page.writeUInt16LE(state.x87Fcw, FIELD_OFFSETS.x87Fcw);
  return page;
}
