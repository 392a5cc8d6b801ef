/**
 * vCPU signatures (CPUID Fn0000_0001_EAX) of QEMU's named CPU models. QEMU
 * puts the signature in RDX of every initial VMSA, so the model a guest is
 * started with is part of its launch measurement.
 * Pure: bytes in, values out.
 */

/** Packs family, model and stepping the way CPUID leaf 1 EAX reports them (AMD pub. 25481). */
export function cpuSignature(family: number, model: number, stepping: number): number {
  const baseFamily = family > 0xf ? 0xf : family;
  const extendedFamily = family > 0xf ? (family - 0xf) & 0xff : 0;
  return (
    ((extendedFamily << 20) |
      (((model >> 4) & 0xf) << 16) |
      (baseFamily << 8) |
      ((model & 0xf) << 4) |
      (stepping & 0xf)) >>>
    0
  );
}

const EPYC = cpuSignature(23, 1, 2); // Naples
const EPYC_ROME = cpuSignature(23, 49, 0);
const EPYC_MILAN = cpuSignature(25, 1, 1);
const EPYC_GENOA = cpuSignature(25, 17, 0);
const EPYC_TURIN = cpuSignature(26, 0, 0);

/**
 * QEMU model name to signature. Versioned models (-vN) only change feature
 * flags, never family/model/stepping, so they share their base model's value.
 * kvm64 and qemu64 are the host-independent generic 64-bit models; qemu64 is
 * family 15 model 107 stepping 1 since QEMU 6.1 (older machine types keep 6/6/3).
 */
export const VCPU_SIGNATURES: Readonly<Record<string, number>> = Object.freeze({
  EPYC: EPYC,
  "EPYC-v1": EPYC,
  "EPYC-v2": EPYC,
  "EPYC-IBPB": EPYC,
  "EPYC-v3": EPYC,
  "EPYC-v4": EPYC,
  "EPYC-v5": EPYC,
  "EPYC-Rome": EPYC_ROME,
  "EPYC-Rome-v1": EPYC_ROME,
  "EPYC-Rome-v2": EPYC_ROME,
  "EPYC-Rome-v3": EPYC_ROME,
  "EPYC-Rome-v4": EPYC_ROME,
  "EPYC-Rome-v5": EPYC_ROME,
  "EPYC-Milan": EPYC_MILAN,
  "EPYC-Milan-v1": EPYC_MILAN,
  "EPYC-Milan-v2": EPYC_MILAN,
  "EPYC-Milan-v3": EPYC_MILAN,
  "EPYC-Genoa": EPYC_GENOA,
  "EPYC-Genoa-v1": EPYC_GENOA,
  "EPYC-Genoa-v2": EPYC_GENOA,
  "EPYC-Turin": EPYC_TURIN,
  "EPYC-Turin-v1": EPYC_TURIN,
  qemu64: cpuSignature(15, 107, 1),
  "qemu64-v1": cpuSignature(15, 107, 1),
  kvm64: cpuSignature(15, 6, 1),
  "kvm64-v1": cpuSignature(15, 6, 1),
});

export function vcpuTypeNames(): string[] {
  return Object.keys(VCPU_SIGNATURES);
}

/** Looks a QEMU model name up, ignoring case so "epyc-v4" from a config file still resolves. */
export function vcpuSignatureForType(name: string): number {
  const wanted = name.toLowerCase();
  for (const [model, signature] of Object.entries(VCPU_SIGNATURES)) {
    if (model.toLowerCase() === wanted) {
      return signature;
    }
  }
  throw new Error(`unknown vCPU type "${name}"; known types: ${vcpuTypeNames().join(", ")}`);
}

/** Accepts "0x800f12" or "800f12". */
export function parseVcpuSignature(hex: string): number {
  const digits = hex.trim().replace(/^0x/i, "");
  if (!/^[0-9a-f]{1,8}$/i.test(digits)) {
    throw new Error(`vCPU signature must be a 32-bit hex number, got "${hex}"`);
  }
  return Number.parseInt(digits, 16) >>> 0;
}
