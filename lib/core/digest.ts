/**
 * SHA-256 as the project writes it everywhere: lower-case hex. I/O:
 * sha256File reads the file it digests.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

const sha256 = (data: string | Buffer): string => createHash("sha256").update(data).digest("hex");

export const sha256File = (file: string): string => sha256(readFileSync(file));
