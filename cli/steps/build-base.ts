/** The shared base of every relay of a flavour: built once per digest of its inputs, then reused. */
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { BASE_RECORD, writeBaseRecord } from "../../lib/image/base-record";
import { canonicalSet, describeChanges, packageChanges } from "../../lib/image/package-index";
import { absoluteSourceLines } from "../../lib/image/package-set";
import { runToolStreaming } from "../../lib/core/run";
import type { StepSpec } from "../../lib/steps/steps";
import { KERNEL_MODULES, KERNEL_MODULES_DIR } from "../../lib/image/image-layout";
import { GUEST_PATHS_FILE, renderGuestPathsEnv } from "../../lib/image/guest-paths";

export async function buildBase(spec: StepSpec<"build-base">): Promise<void> {
  if (existsSync(join(spec.dir, ".complete")) && existsSync(join(spec.dir, BASE_RECORD))) {
    console.log(`base ${spec.dir} already built`);
    return;
  }
  mkdirSync(dirname(spec.dir), { recursive: true, mode: 0o700 });
  const script = join("images", spec.flavour, "build-base.sh");
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SOURCE_DATE_EPOCH: String(spec.sourceDateEpoch),
    // pack-initrd.sh's zstd level, checked by the step's schema and again by the script.
    INITRD_ZSTD_LEVEL: String(spec.compressLevel),
    // The modules the RAM root keeps and lists for the scripts that load them (pack-initrd.sh).
    KERNEL_MODULES_BOOT: KERNEL_MODULES.boot.join(" "),
    KERNEL_MODULES_HARDENING: KERNEL_MODULES.hardening.join(" "),
    KERNEL_MODULES_DIR,
    // The paths file every guest script sources (install.sh).
    GUEST_PATHS_FILE,
    GUEST_PATHS_ENV: renderGuestPathsEnv(),
  };
  if (spec.flavour === "debian") {
    if (!spec.sources || !spec.packages) throw new Error("the Debian base's spec carries no apt sources or package set: plan it again (pulumi preview)");
    // Beside the base's directory (which the script replaces), in the private build root.
    const sourcesFile = join(dirname(spec.dir), `${basename(spec.dir)}.sources.list`);
    writeFileSync(sourcesFile, absoluteSourceLines(spec.sources, process.cwd()).join("\n") + "\n", { mode: 0o600 });
    env.APT_SOURCES = sourcesFile;
  }
  await runToolStreaming("bash", [script, spec.dir, spec.release, spec.geoip ? "yes" : "no", spec.torUser, ...spec.extraPackages], { what: `building the ${spec.flavour} base`, env });
  const record = writeBaseRecord(spec);
  if (spec.packages) {
    // The base's directory is named after the package set preview resolved: a mirror that has moved on since, or a held set
    // it no longer serves, must not leave another set under that name.
    const changes = packageChanges(spec.packages, canonicalSet(record.packages));
    if (changes.length > 0) {
      rmSync(spec.dir, { recursive: true, force: true });
      throw new Error(
        `the mirror served other packages than the plan resolved (${describeChanges(changes, 20)}): it changed since the preview, or a held package set (Pulumi.<stack>.packages.lock) is no longer on it. Run the preview again; to deploy what the mirror serves now, lift the hold (npm run packages -- update)`,
      );
    }
  }
  const uname = readFileSync(join(spec.dir, "uname"), "utf8").trim();
  console.log(`base ${spec.dir}: ${statSync(join(spec.dir, "base.cpio.zst")).size} bytes initrd, kernel ${uname}, ${record.packages.length} packages, SOURCE_DATE_EPOCH ${spec.sourceDateEpoch}, zstd -${spec.compressLevel}`);
}
