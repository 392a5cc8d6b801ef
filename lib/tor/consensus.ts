/**
 * Router status entries as tor's control port prints them (GETINFO ns/all,
 * dir-spec §3.4.1 "r" and "s" lines). Pure.
 */

export interface RouterStatus {
  nickname: string;
  /** RSA identity fingerprint, hex upper case. */
  fingerprint: string;
  address: string;
  orPort: number;
  flags: string[];
}

export function parseRouterStatuses(text: string): RouterStatus[] {
  const routers: RouterStatus[] = [];
  for (const line of text.split("\n")) {
    const fields = line.trim().split(" ");
    if (fields[0] === "r" && fields.length >= 8) {
      // r nickname identity digest|publication... address orport dirport (microdesc consensus: no digest)
      const identity = Buffer.from(fields[2]!, "base64").toString("hex").toUpperCase();
      const address = fields.length >= 9 ? fields[6]! : fields[5]!;
      const orPort = Number(fields.length >= 9 ? fields[7] : fields[6]);
      routers.push({ nickname: fields[1]!, fingerprint: identity, address, orPort, flags: [] });
    } else if (fields[0] === "s" && routers.length > 0) {
      routers.at(-1)!.flags = fields.slice(1);
    }
  }
  return routers;
}
