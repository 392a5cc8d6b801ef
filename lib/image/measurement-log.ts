/**
 * The public measurement log's entries and signers file, made from what a
 * build publishes: the launch measurement document (cli/steps/measure-launch.ts)
 * and the digest of the signed build record. The log itself is kept by
 * tools/broker's measurement-log program (a git repository of SSH-signed
 * commits), which checks each entry again with its own rules. Pure.
 */
import { z } from "zod";
import { formatIssues } from "../core/zod-issues";

/** The fields of a published measurement document the log repeats; the document's other fields stay in the document. */
const measurementDocument = z.object({
  relay: z.string(),
  imageDigest: z.string().regex(/^[0-9a-f]{64}$/),
  measurement: z.string().regex(/^[0-9a-f]{96}$/),
  policy: z.string().regex(/^0x[0-9a-f]{1,16}$/),
  vcpus: z.number().int().min(1),
  vcpuType: z.string().min(1),
});

export interface MeasurementLogEntry {
  relay: string;
  imageDigest: string;
  measurement: string;
  policy: string;
  vcpus: number;
  vcpuType: string;
  buildRecordSha256: string;
  time: string;
}

/**
 * The log entry for one image's launch. Throws, naming the document, when it
 * is not a measurement document of that relay and image: a log entry must
 * never describe another image than the one about to be registered.
 */
export function measurementLogEntry(document: unknown, image: { relay: string; imageDigest: string }, buildRecordSha256: string, time: Date): MeasurementLogEntry {
  const parsed = measurementDocument.safeParse(document);
  if (!parsed.success) throw new Error(`the measurement document is not one measure-launch writes: ${formatIssues(parsed.error)}`);
  const doc = parsed.data;
  if (doc.relay !== image.relay || doc.imageDigest !== image.imageDigest) {
    throw new Error(`the measurement document is for ${doc.relay} image ${doc.imageDigest.slice(0, 12)}, not ${image.relay} image ${image.imageDigest.slice(0, 12)}: rebuild with pulumi up`);
  }
  if (!/^[0-9a-f]{64}$/.test(buildRecordSha256)) throw new Error(`the build record's SHA-256 must be 64 lowercase hex digits, not ${JSON.stringify(buildRecordSha256)}`);
  // RFC 3339 in UTC to the second, as the log's entries are written.
  const stamp = time.toISOString().replace(/\.\d{3}Z$/, "Z");
  return { relay: doc.relay, imageDigest: doc.imageDigest, measurement: doc.measurement, policy: doc.policy, vcpus: doc.vcpus, vcpuType: doc.vcpuType, buildRecordSha256, time: stamp };
}

/** The principal volunteers' allowed-signers file names the image signing key by. */
const MEASUREMENT_LOG_PRINCIPAL = "diskless-relays-measurement-log";

/**
 * The allowed-signers line (ssh-keygen(1) ALLOWED SIGNERS) that lets git
 * check the log's commits: the image signing key's public key, for git's
 * signature namespace only. Throws on anything but one OpenSSH public key line.
 */
export function allowedSignersLine(publicKeyLine: string): string {
  const match = /^(ssh-ed25519|ecdsa-sha2-nistp(?:256|384|521)|ssh-rsa) ([A-Za-z0-9+/]+={0,2})(?: [^\n]*)?\n?$/.exec(publicKeyLine);
  if (!match) throw new Error("the image signing key's .pub is not one OpenSSH public key line (ssh-keygen -y -f KEY prints it)");
  return `${MEASUREMENT_LOG_PRINCIPAL} namespaces="git" ${match[1]} ${match[2]}\n`;
}
