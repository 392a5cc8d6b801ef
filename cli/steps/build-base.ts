/** The shared base of every relay of a flavour: built once per digest of its inputs, then reused. */
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { BASE_RECORD, writeBaseRecord } from "../../lib/base-record";
import { runToolStreaming } from "../../lib/run";
import type { StepSpec } from "../../lib/steps";

export async function buildBase(spec: StepSpec<"build-base">): Promise<void> {
  if (existsSync(join(spec.dir, ".complete")) && existsSync(join(spec.dir, BASE_RECORD))) {
    console.log(`base ${spec.dir} already built`);
    return;
  }
  mkdirSync(dirname(spec.dir), { recursive: true, mode: 0o700 });
  const script = join("images", spec.flavour, "build-base.sh");
  await runToolStreaming("bash", [script, spec.dir, spec.release, spec.geoip ? "yes" : "no", spec.torUser, ...spec.extraPackages], {
    what: `building the ${spec.flavour} base`,
    env: { ...process.env, SOURCE_DATE_EPOCH: String(spec.sourceDateEpoch) },
  });
  const record = writeBaseRecord(spec);
  const uname = readFileSync(join(spec.dir, "uname"), "utf8").trim();
  console.log(`base ${spec.dir}: ${statSync(join(spec.dir, "base.cpio.zst")).size} bytes initrd, kernel ${uname}, ${record.packages.length} packages, SOURCE_DATE_EPOCH ${spec.sourceDateEpoch}`);
}
