/**
 * Just enough DER to take AMD's certificates apart: Node's X509Certificate
 * exposes neither the to-be-signed bytes, the signature parameters nor
 * private extensions, and the verifier needs all three.
 * Pure: bytes in, values out.
 */

export const DER_TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  SEQUENCE: 0x30,
} as const;

/** Context-specific constructed tag [n], as used for EXPLICIT fields. */
export function contextTag(n: number): number {
  return 0xa0 | n;
}

export interface DerElement {
  tag: number;
  /** The whole element, header included. */
  encoded: Buffer;
  content: Buffer;
}

function readElement(data: Buffer, offset = 0): DerElement {
  if (offset + 2 > data.length) {
    throw new Error("DER: truncated element header");
  }
  const tag = data[offset] as number;
  if ((tag & 0x1f) === 0x1f) {
    throw new Error("DER: multi-byte tags are not supported");
  }
  let lengthByte = data[offset + 1] as number;
  let headerLength = 2;
  let length: number;
  if (lengthByte < 0x80) {
    length = lengthByte;
  } else {
    const count = lengthByte & 0x7f;
    if (count === 0 || count > 4) {
      throw new Error("DER: indefinite or oversized length");
    }
    if (offset + 2 + count > data.length) {
      throw new Error("DER: truncated length");
    }
    length = 0;
    for (let i = 0; i < count; i++) {
      lengthByte = data[offset + 2 + i] as number;
      length = length * 256 + lengthByte;
    }
    if (length < 0x80 || (count > 1 && (data[offset + 2] as number) === 0)) {
      throw new Error("DER: length is not minimally encoded");
    }
    headerLength += count;
  }
  const contentStart = offset + headerLength;
  const end = contentStart + length;
  if (end > data.length) {
    throw new Error("DER: element runs past the end of its container");
  }
  return { tag, encoded: data.subarray(offset, end), content: data.subarray(contentStart, end) };
}

/** Reads a complete element that must fill `data` exactly. */
export function readSingle(data: Buffer, expectedTag?: number): DerElement {
  const element = readElement(data, 0);
  if (element.encoded.length !== data.length) {
    throw new Error("DER: trailing bytes after element");
  }
  expectTag(element, expectedTag);
  return element;
}

function expectTag(element: DerElement, expectedTag: number | undefined): void {
  if (expectedTag !== undefined && element.tag !== expectedTag) {
    throw new Error(`DER: expected tag 0x${expectedTag.toString(16)}, found 0x${element.tag.toString(16)}`);
  }
}

export function children(element: DerElement): DerElement[] {
  const items: DerElement[] = [];
  let offset = 0;
  while (offset < element.content.length) {
    const child = readElement(element.content, offset);
    items.push(child);
    offset += child.encoded.length;
  }
  return items;
}

export function child(element: DerElement, index: number, expectedTag?: number): DerElement {
  const item = children(element)[index];
  if (item === undefined) {
    throw new Error(`DER: element has no child ${index}`);
  }
  expectTag(item, expectedTag);
  return item;
}

export function decodeOid(element: DerElement): string {
  expectTag(element, DER_TAG.OID);
  const bytes = element.content;
  if (bytes.length === 0) {
    throw new Error("DER: empty OID");
  }
  const arcs: number[] = [];
  let value = 0;
  for (const byte of bytes) {
    value = value * 128 + (byte & 0x7f);
    if ((byte & 0x80) === 0) {
      arcs.push(value);
      value = 0;
    }
  }
  const first = arcs.shift() as number;
  const head = first < 80 ? [Math.floor(first / 40), first % 40] : [2, first - 80];
  return [...head, ...arcs].join(".");
}

/** A non-negative INTEGER small enough for a JavaScript number. */
export function decodeSmallInteger(element: DerElement): number {
  expectTag(element, DER_TAG.INTEGER);
  const bytes = element.content;
  if (bytes.length === 0 || bytes.length > 6 || ((bytes[0] as number) & 0x80) !== 0) {
    throw new Error("DER: INTEGER is empty, negative or too large");
  }
  return bytes.reduce((value, byte) => value * 256 + byte, 0);
}

/** The bytes of a BIT STRING that has no unused bits (signatures, keys). */
export function decodeBitStringBytes(element: DerElement): Buffer {
  expectTag(element, DER_TAG.BIT_STRING);
  if (element.content.length === 0 || element.content[0] !== 0) {
    throw new Error("DER: BIT STRING has unused bits");
  }
  return element.content.subarray(1);
}
