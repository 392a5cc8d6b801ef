/**
 * The testnet's authoritative DNS zone as a pure function: one query message
 * in (RFC 1035), one answer out. A and AAAA records for the zone's names,
 * NXDOMAIN for other names in the zone, REFUSED outside it. Enough for an
 * exit's resolver to resolve web.testnet; not a general DNS server.
 */

export interface ZoneRecords {
  zone: string;
  /** name → addresses (IPv4 dotted quad, IPv6 in full or compressed form). */
  names: Record<string, { a?: string; aaaa?: string }>;
}

const TYPE_A = 1;
const TYPE_AAAA = 28;

function readName(message: Buffer, offset: number): { name: string; end: number } | undefined {
  const labels: string[] = [];
  let at = offset;
  for (;;) {
    const length = message[at];
    if (length === undefined || length > 63) return undefined;
    at += 1;
    if (length === 0) break;
    labels.push(message.subarray(at, at + length).toString("latin1").toLowerCase());
    at += length;
  }
  return { name: labels.join("."), end: at };
}

function ipv6Bytes(address: string): Buffer {
  const [head = "", tail = ""] = address.split("::");
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups = address.includes("::") ? [...left, ...Array(8 - left.length - right.length).fill("0"), ...right] : left;
  return Buffer.from(groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]));
}

/** The answer to one DNS query message, or undefined for a message that is not a query. */
export function answerQuery(query: Buffer, records: ZoneRecords): Buffer | undefined {
  if (query.length < 12 || query.readUInt16BE(4) !== 1 || query[2]! & 0x80) return undefined;
  const question = readName(query, 12);
  if (!question || question.end + 4 > query.length) return undefined;
  const type = query.readUInt16BE(question.end);
  const questionBytes = query.subarray(12, question.end + 4);
  const inZone = question.name === records.zone || question.name.endsWith(`.${records.zone}`);
  const entry = records.names[question.name];
  let rcode = 0;
  const answers: Buffer[] = [];
  if (!inZone) rcode = 5; // REFUSED: not ours
  else if (!entry && question.name !== records.zone) rcode = 3; // NXDOMAIN
  else if (entry && type === TYPE_A && entry.a) answers.push(Buffer.from(entry.a.split(".").map(Number)));
  else if (entry && type === TYPE_AAAA && entry.aaaa) answers.push(ipv6Bytes(entry.aaaa));

  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2); // id
  // QR, opcode 0, AA (authoritative), RD copied; RA 0; rcode.
  header[2] = 0x84 | (query[2]! & 0x01);
  header[3] = rcode;
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(answers.length, 6);
  const records_ = answers.map((data) => {
    const rr = Buffer.alloc(12);
    rr.writeUInt16BE(0xc00c, 0); // pointer to the question's name
    rr.writeUInt16BE(type, 2);
    rr.writeUInt16BE(1, 4); // class IN
    rr.writeUInt32BE(60, 6); // TTL
    rr.writeUInt16BE(data.length, 10);
    return Buffer.concat([rr, data]);
  });
  return Buffer.concat([header, questionBytes, ...records_]);
}
