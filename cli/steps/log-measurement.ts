/**
 * Adds one image's launch to the public measurement log before the key
 * broker learns of the image (components/launch-measurement.ts orders it):
 * the entry is read from the signed measurement document and the build
 * record's digest, written to a private temporary file, and appended by
 * tools/broker's measurement-log with the image signing key as one signed
 * commit. The same launch again adds nothing; another measurement for a
 * logged image is refused by the log. Writes the signers file volunteers
 * check the log with beside it. Prints where the entry is.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { allowedSignersLine, measurementLogEntry } from "../../lib/image/measurement-log";
import { runTool, withPrivateTmpDir } from "../../lib/core/run";
import { sha256File } from "../../lib/core/digest";
import { encodeStepOutput, parseStepOutput, type StepSpec } from "../../lib/steps/steps";

function readJson(file: string, what: string): unknown {
  try {
    return JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new Error(`${what} ${file}: ${(err as Error).message}`);
  }
}

export function logMeasurement(spec: StepSpec<"log-measurement">): void {
  const publicKeyFile = `${spec.signingKey}.pub`;
  if (!existsSync(publicKeyFile)) throw new Error(`image.signingKeyFile: ${publicKeyFile} is missing; ssh-keygen -y -f ${spec.signingKey} > ${publicKeyFile} makes it`);
  const signers = allowedSignersLine(readFileSync(publicKeyFile, "utf8"));
  const buildRecordSha256 = sha256File(spec.buildRecord);
  const entry = measurementLogEntry(readJson(spec.measurementDocument, "measurement document"), spec, buildRecordSha256, new Date());
  // The signers file first: a log that exists is always checkable with the file beside it.
  mkdirSync(dirname(spec.allowedSigners), { recursive: true });
  if (!existsSync(spec.allowedSigners) || readFileSync(spec.allowedSigners, "utf8") !== signers) {
    writeFileSync(`${spec.allowedSigners}.tmp`, signers);
    renameSync(`${spec.allowedSigners}.tmp`, spec.allowedSigners);
  }
  const out = withPrivateTmpDir("log-entry", (dir) => {
    const entryFile = join(dir, "entry.json");
    writeFileSync(entryFile, JSON.stringify(entry, null, 1) + "\n");
    // The existing log must verify against the published signers before anything is added to it.
    return runTool("measurement-log", ["append", "--log", spec.log, "--signing-key", spec.signingKey, "--entry", entryFile, "--allowed-signers", spec.allowedSigners], {
      what: `adding ${spec.relay}'s launch measurement to the log ${spec.log}`,
    });
  });
  const logged = parseStepOutput("log-measurement", JSON.stringify(JSON.parse(out)));
  console.log(encodeStepOutput("log-measurement", logged));
}
