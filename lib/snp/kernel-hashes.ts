/**
 * The SEV hash table QEMU writes into guest memory for measured direct boot
 * (-kernel/-initrd/-append): OVMF checks the files it is handed against these
 * hashes, and the page holding the table is part of the launch measurement.
 * Pure: bytes in, values out.
 */
import { createHash } from "node:crypto";
import { guidToBytes } from "./guid";

const HASH_TABLE_GUIDS = {
  header: "9438d606-4f22-4cc9-b479-a793d411fd21",
  kernel: "4de79437-abd2-427f-b835-d5b172d2045b",
  initrd: "44baf731-3a2f-4bd7-9af1-41e29169781d",
  cmdline: "97d02dd8-bd20-4c94-aa78-e7714d36ab2a",
} as const;

const GUID_SIZE = 16;
const SHA256_SIZE = 32;
const ENTRY_SIZE = GUID_SIZE + 2 + SHA256_SIZE;
const TABLE_SIZE = GUID_SIZE + 2 + 3 * ENTRY_SIZE;
// QEMU rounds the table up to 16 bytes and zero-fills the padding.
const PADDED_HASH_TABLE_SIZE = Math.ceil(TABLE_SIZE / 16) * 16;

export interface KernelHashes {
  kernel: Buffer;
  initrd: Buffer;
  cmdline: Buffer;
}

function sha256(data: Uint8Array | string): Buffer {
  return createHash("sha256").update(data).digest();
}

/**
 * Hashes the way QEMU does: a missing initrd hashes as empty, and the command
 * line is hashed with its terminating NUL, so no command line hashes as "\0".
 */
export function kernelHashes(kernel: Uint8Array, initrd?: Uint8Array, append?: string): KernelHashes {
  return {
    kernel: sha256(kernel),
    initrd: sha256(initrd ?? new Uint8Array(0)),
    cmdline: sha256(Buffer.concat([Buffer.from(append ?? "", "utf8"), Buffer.from([0])])),
  };
}

function hashEntry(guid: string, hash: Buffer): Buffer {
  if (hash.length !== SHA256_SIZE) {
    throw new Error(`hash-table entry ${guid} needs a SHA-256 digest, got ${hash.length} bytes`);
  }
  const length = Buffer.alloc(2);
  length.writeUInt16LE(ENTRY_SIZE);
  return Buffer.concat([guidToBytes(guid), length, hash]);
}

/** The padded table: header GUID and length, then the cmdline, initrd and kernel entries. */
export function buildHashTable(hashes: KernelHashes): Buffer {
  const length = Buffer.alloc(2);
  length.writeUInt16LE(TABLE_SIZE);
  const table = Buffer.concat([
    guidToBytes(HASH_TABLE_GUIDS.header),
    length,
    hashEntry(HASH_TABLE_GUIDS.cmdline, hashes.cmdline),
    hashEntry(HASH_TABLE_GUIDS.initrd, hashes.initrd),
    hashEntry(HASH_TABLE_GUIDS.kernel, hashes.kernel),
  ]);
  return Buffer.concat([table, Buffer.alloc(PADDED_HASH_TABLE_SIZE - table.length)]);
}
