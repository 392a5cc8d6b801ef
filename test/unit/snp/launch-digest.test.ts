import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { buildHashTable, kernelHashes } from "../../../lib/snp/kernel-hashes";
import { expectedLaunchMeasurement, firmwareLaunchDigest, snpLaunchDigest } from "../../../lib/snp/launch-digest";
import { parseOvmf, SevMetadataSectionType } from "../../../lib/snp/ovmf";
import { cpuSignature, parseVcpuSignature, vcpuSignatureForType } from "../../../lib/snp/vcpu-types";
import { fixture } from "../../support/snp-fixtures";

const amdSev = fixture("ovmf_AmdSev_suffix.bin");
const ovmfX64 = fixture("ovmf_OvmfX64_suffix.bin");
const empty = new Uint8Array(0);
const sha256 = (data: Uint8Array | string): string => createHash("sha256").update(data).digest("hex");

const FIRMWARE_ONLY =
  "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74";

describe("published vectors (VECTORS.md)", () => {
  const common = { ovmf: amdSev, vcpus: 1, vcpuType: "EPYC-v4" } as const;

  it("firmware-only hash", () => {
    expect(firmwareLaunchDigest(amdSev).toString("hex")).toBe(FIRMWARE_ONLY);
  });

  it("kernel, append, features 0x21", () => {
    const digest = snpLaunchDigest({
      ...common,
      kernel: empty,
      initrd: empty,
      append: "console=ttyS0 loglevel=7",
      guestFeatures: 0x21,
    });
    expect(digest.toString("hex")).toBe(
      "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977",
    );
  });

  it("kernel, append, features 0x1", () => {
    const digest = snpLaunchDigest({
      ...common,
      kernel: empty,
      initrd: empty,
      append: "console=ttyS0 loglevel=7",
      guestFeatures: 0x1,
    });
    expect(digest.toString("hex")).toBe(
      "6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa",
    );
  });

  it("no kernel, features 0x21", () => {
    expect(snpLaunchDigest({ ...common, guestFeatures: 0x21 }).toString("hex")).toBe(
      "e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b",
    );
  });

  it("no kernel, features 0x1", () => {
    expect(snpLaunchDigest({ ...common, guestFeatures: 0x1 }).toString("hex")).toBe(
      "19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d",
    );
  });

  it("seeded with firmware hash, features 0x1", () => {
    const digest = snpLaunchDigest({
      ...common,
      ovmfHash: FIRMWARE_ONLY,
      kernel: empty,
      initrd: empty,
      guestFeatures: 0x1,
    });
    expect(digest.toString("hex")).toBe(
      "ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5",
    );
  });

  it("seeding with the firmware hash gives the same digest as measuring the firmware pages", () => {
    const inputs = { ...common, kernel: empty, initrd: empty, append: "console=ttyS0 loglevel=7", guestFeatures: 0x21 };
    expect(snpLaunchDigest({ ...inputs, ovmfHash: FIRMWARE_ONLY }).equals(snpLaunchDigest(inputs))).toBe(true);
  });
});

describe("further vectors from sev-snp-measure's test suite", () => {
  const kernelInputs = { ovmf: amdSev, kernel: empty, initrd: empty, append: "" };
  const cases: [string, Parameters<typeof snpLaunchDigest>[0], string][] = [
    [
      "4 vCPUs, features 0x21 (AP VMSAs from the SEV-ES reset block)",
      { ...kernelInputs, vcpus: 4, vcpuType: "EPYC-v4", guestFeatures: 0x21 },
      "4953b1fb416fa874980e8442b3706d345926d5f38879134e00813c5d7abcbe78eafe7b422907be0b4698e2414a631942",
    ],
    [
      "4 vCPUs, features 0x1",
      { ...kernelInputs, vcpus: 4, vcpuType: "EPYC-v4", guestFeatures: 0x1 },
      "5061fffb019493a903613d56d54b94912a1a2f9e4502385f5c194616753720a92441310ba6c4933de877c36e23046ad5",
    ],
    [
      "OvmfX64 without kernel, features 0x21",
      { ovmf: ovmfX64, vcpus: 1, vcpuType: "EPYC-v4", guestFeatures: 0x21 },
      "28797ae0afaba4005a81e629acebfb59e6687949d6be44007cd5506823b0dd66f146aaae26ff291eed7b493d8a64c385",
    ],
    [
      "OvmfX64 without kernel, features 0x1",
      { ovmf: ovmfX64, vcpus: 1, vcpuType: "EPYC-v4", guestFeatures: 0x1 },
      "da0296de8193586a5512078dcd719eccecbd87e2b825ad4148c44f665dc87df21e5b49e21523a9ad993afdb6a30b4005",
    ],
    [
      "ec2, features 0x21",
      { ...kernelInputs, vcpus: 1, vcpuType: "EPYC-v4", guestFeatures: 0x21, vmm: "ec2" },
      "0ce9ccc06bab55eebe8abc234f3df6514883977a68a591b71052498ab52b2f1aa415db338033946ef93aa8278c0d67fb",
    ],
    [
      "ec2, features 0x1",
      { ...kernelInputs, vcpus: 1, vcpuType: "EPYC-v4", guestFeatures: 0x1, vmm: "ec2" },
      "0883bd0eeb716e65b7b977a321c278d1e51b33b5c655fab985443bbcc65c086b9c15e8a0bd8811050dec7e24964e5056",
    ],
    [
      "gce, 1 vCPU",
      { ...kernelInputs, vcpus: 1, guestFeatures: 0x1, vmm: "gce" },
      "5da7106cf14cf46b1725ebab123eb9e53bd46a1e9f400cd0c08e7827b04b688ea8b4e403c8404efed4397ea5d5d0722e",
    ],
    [
      "gce, 4 vCPUs",
      { ...kernelInputs, vcpus: 4, guestFeatures: 0x1, vmm: "gce" },
      "5c5debf100fc339f90276e761ee1f1658d08922c3b20e2a2e6c7a6c3370b2452a15a00eae11886a93d6fd1e7ab81e29d",
    ],
  ];
  it.each(cases)("%s", (_name, input, expected) => {
    expect(snpLaunchDigest(input).toString("hex")).toBe(expected);
  });
});

describe("OvmfX64 firmware (no kernel-hashes section)", () => {
  it("refuses to measure a kernel, naming the missing section and the AmdSevX64 build", () => {
    const measure = (): Buffer => snpLaunchDigest({ ovmf: ovmfX64, kernel: empty, vcpus: 1, vcpuType: "EPYC-v4" });
    expect(measure).toThrow(/SNP_KERNEL_HASHES/);
    expect(measure).toThrow(/AmdSevX64/);
  });

  it("is refused by expectedLaunchMeasurement as well", () => {
    expect(() =>
      expectedLaunchMeasurement({ ovmf: ovmfX64, kernel: Buffer.from("uki"), vcpus: 2, vcpuType: "EPYC-Milan" }),
    ).toThrow(/SNP_KERNEL_HASHES.*AmdSevX64/);
  });
});

describe("hashing rules", () => {
  it("hashes a missing initrd as the empty string", () => {
    expect(kernelHashes(empty).initrd.toString("hex")).toBe(sha256(""));
  });

  it("hashes no command line as a single NUL byte", () => {
    expect(kernelHashes(empty).cmdline.toString("hex")).toBe(sha256("\0"));
  });

  it("hashes a command line with its trailing NUL", () => {
    expect(kernelHashes(empty, undefined, "console=ttyS0").cmdline.toString("hex")).toBe(sha256("console=ttyS0\0"));
  });

  it("hashes the whole kernel file (a UKI) as the kernel", () => {
    const uki = Buffer.from("MZ pretend this is a unified kernel image");
    expect(kernelHashes(uki).kernel.toString("hex")).toBe(sha256(uki));
  });

  it("lays the table out as header, cmdline, initrd, kernel, padded to 16 bytes", () => {
    const hashes = kernelHashes(Buffer.from("k"), Buffer.from("i"), "c");
    const table = buildHashTable(hashes);
    expect(table.length).toBe(176);
    expect(table.readUInt16LE(16)).toBe(168);
    expect(table.subarray(16 + 2 + 18, 16 + 2 + 50).equals(hashes.cmdline)).toBe(true);
    expect(table.subarray(68 + 18, 68 + 50).equals(hashes.initrd)).toBe(true);
    expect(table.subarray(118 + 18, 118 + 50).equals(hashes.kernel)).toBe(true);
    expect(table.subarray(168).every((byte) => byte === 0)).toBe(true);
  });

  it("changes the digest when only the kernel changes", () => {
    const base = { ovmf: amdSev, vcpus: 1, vcpuType: "EPYC-v4" };
    const a = snpLaunchDigest({ ...base, kernel: Buffer.from("a") });
    const b = snpLaunchDigest({ ...base, kernel: Buffer.from("b") });
    expect(a.equals(b)).toBe(false);
  });
});

describe("OVMF parsing", () => {
  const ovmf = parseOvmf(amdSev);

  it("maps the image to end at 4 GiB", () => {
    expect(ovmf.gpa).toBe(0x1_0000_0000 - amdSev.length);
  });

  it("finds the SEV-ES reset block and the hash table", () => {
    expect(ovmf.sevEsResetEip).toBe(0x80b004);
    expect(ovmf.hashTableGpa).toBe(0x810c00);
  });

  it("lists the SEV metadata sections in order", () => {
    expect(ovmf.sections.map((section) => [section.type, section.gpa, section.size])).toEqual([
      [SevMetadataSectionType.SNP_SEC_MEM, 0x800000, 0x9000],
      [SevMetadataSectionType.SNP_SEC_MEM, 0x80a000, 0x3000],
      [SevMetadataSectionType.SNP_SECRETS, 0x80d000, 0x1000],
      [SevMetadataSectionType.CPUID, 0x80e000, 0x1000],
      [SevMetadataSectionType.SVSM_CAA, 0x80f000, 0x1000],
      [SevMetadataSectionType.SNP_KERNEL_HASHES, 0x810000, 0x1000],
      [SevMetadataSectionType.SNP_SEC_MEM, 0x811000, 0xf000],
    ]);
  });

  it("sees no kernel-hashes section in the OvmfX64 build", () => {
    const x64 = parseOvmf(ovmfX64);
    expect(x64.sections.length).toBeGreaterThan(0);
    expect(x64.sections.some((section) => section.type === SevMetadataSectionType.SNP_KERNEL_HASHES)).toBe(false);
  });

  it("rejects an image that is not whole pages", () => {
    expect(() => parseOvmf(amdSev.subarray(1))).toThrow(/multiple of 4096/);
  });
});

describe("vCPU signatures", () => {
  it("packs family, model and stepping like CPUID leaf 1", () => {
    expect(cpuSignature(23, 1, 2)).toBe(0x800f12);
    expect(cpuSignature(14, 1, 2)).toBe(0x0e12);
  });

  it.each([
    ["EPYC-v4", 0x800f12],
    ["EPYC", 0x800f12],
    ["EPYC-IBPB", 0x800f12],
    ["EPYC-Rome", 0x830f10],
    ["EPYC-Rome-v3", 0x830f10],
    ["EPYC-Milan", 0xa00f11],
    ["EPYC-Milan-v2", 0xa00f11],
    ["EPYC-Genoa", 0xa10f10],
    ["EPYC-Genoa-v1", 0xa10f10],
    ["EPYC-Turin", 0xb00f00],
    ["kvm64", 0xf61],
    ["qemu64", 0x60fb1],
  ])("%s", (name, signature) => {
    expect(vcpuSignatureForType(name)).toBe(signature);
  });

  it("rejects unknown types and malformed hex", () => {
    expect(() => vcpuSignatureForType("EPYC-Bogus")).toThrow(/unknown vCPU type/);
    expect(() => parseVcpuSignature("0xzz")).toThrow(/hex/);
    expect(parseVcpuSignature("0x800f12")).toBe(0x800f12);
  });

  it("gives the same digest for a type and its signature", () => {
    const base = { ovmf: amdSev, vcpus: 2 };
    const byType = snpLaunchDigest({ ...base, vcpuType: "EPYC-Milan" });
    const bySignature = snpLaunchDigest({ ...base, vcpuSignature: "0xa00f11" });
    const other = snpLaunchDigest({ ...base, vcpuType: "EPYC-Genoa" });
    expect(byType.equals(bySignature)).toBe(true);
    expect(byType.equals(other)).toBe(false);
  });
});

describe("expectedLaunchMeasurement", () => {
  it("measures a UKI as the kernel with no initrd (matches the seeded published vector)", () => {
    expect(expectedLaunchMeasurement({ ovmf: amdSev, kernel: empty, vcpus: 1, vcpuType: "EPYC-v4" })).toBe(
      "ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5",
    );
  });

  it("takes guest features and an append string", () => {
    const measurement = expectedLaunchMeasurement({
      ovmf: amdSev,
      kernel: empty,
      vcpus: 1,
      vcpuType: "EPYC-v4",
      guestFeatures: 0x21,
      append: "console=ttyS0 loglevel=7",
    });
    expect(measurement).toBe(
      "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977",
    );
  });

  it("rejects a zero vCPU count", () => {
    expect(() => expectedLaunchMeasurement({ ovmf: amdSev, kernel: empty, vcpus: 0, vcpuType: "EPYC-v4" })).toThrow(
      /vCPU count/,
    );
  });
});
