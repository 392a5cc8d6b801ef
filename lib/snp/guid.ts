/**
 * EFI GUIDs as firmware stores them: the first three groups little-endian,
 * the last two as plain bytes (the "mixed-endian" layout of RFC 4122 GUIDs on x86).
 * Pure: bytes in, values out.
 */

const GUID_TEXT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function guidToBytes(guid: string): Buffer {
  const text = guid.toLowerCase();
  if (!GUID_TEXT.test(text)) {
    throw new Error(`not a GUID: ${guid}`);
  }
  const [a, b, c, d, e] = text.split("-") as [string, string, string, string, string];
  return Buffer.concat([
    Buffer.from(a, "hex").reverse(),
    Buffer.from(b, "hex").reverse(),
    Buffer.from(c, "hex").reverse(),
    Buffer.from(d, "hex"),
    Buffer.from(e, "hex"),
  ]);
}

export function guidFromBytes(bytes: Uint8Array): string {
  if (bytes.length !== 16) {
    throw new Error(`a GUID is 16 bytes, got ${bytes.length}`);
  }
  const raw = Buffer.from(bytes);
  const hex = (start: number, end: number, reverse: boolean): string => {
    const part = Buffer.from(raw.subarray(start, end));
    return (reverse ? part.reverse() : part).toString("hex");
  };
  return [hex(0, 4, true), hex(4, 6, true), hex(6, 8, true), hex(8, 10, false), hex(10, 16, false)].join("-");
}
