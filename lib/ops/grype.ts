/**
 * Runs grype, offline, on the relays' SBOMs: its database lives in the
 * project's cache ($DISKLESS_RELAYS_CACHE/grype-db, GRYPE_DB_CACHE_DIR) and
 * changes only by an explicit import; grype never updates it nor checks for
 * a newer grype. The operator's GRYPE_DB_MAX_ALLOWED_BUILT_AGE (or
 * GRYPE_DB_VALIDATE_AGE) passes through: the way to accept an old database
 * knowingly.
 * I/O: runs grype, reads running.json and the SBOMs under artifacts/,
 * writes <artifacts>/vulns/<stack>.json.
 */
import { describeChange } from "../image/package-index";
import { pendingUpdates, readMirrorRecord } from "../image/package-set";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { readRunningRecord } from "../steps/rollout-records";
import { toolsBin, withToolsOnPath } from "../core/paths";
import { chooseImage, matchesInImage, parseGrypeOutput, relaySbomRecordSchema, VULN_REPORT_SCHEMA, vulnReportFile, worstSeverity, type SbomRecordFile, type VulnReport } from "./vulns";
import { sha256File } from "../core/digest";
import { formatIssues } from "../core/zod-issues";
import { relayArtifactsDir, relaysBuildDir, sbomDir } from "../config/build-layout";

/** grype's environment: the project's tools first, its database in the project's cache, nothing fetched. */
function grypeEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return {
    ...withToolsOnPath(env),
    GRYPE_DB_CACHE_DIR: env.GRYPE_DB_CACHE_DIR ?? join(dirname(toolsBin()), "grype-db"),
    GRYPE_DB_AUTO_UPDATE: "false",
    GRYPE_CHECK_FOR_APP_UPDATE: "false",
  };
}

export interface DbStatus {
  valid: boolean;
  built?: string;
  schemaVersion?: string;
  path: string;
  /** grype's reason when not valid, e.g. "the vulnerability database was built 1 week ago (max allowed age is 5 days)". */
  error?: string;
}

function grype(args: string[], env: NodeJS.ProcessEnv) {
  const result = spawnSync("grype", args, { encoding: "utf8", env, maxBuffer: 256 * 1024 * 1024 });
  if (result.error) throw new Error(`cannot run grype (${result.error.message}): run scripts/setup.sh, which builds it`);
  return result;
}

/** `grype db status -o json`: grype's own verdict, age limit included. */
export function dbStatus(env: NodeJS.ProcessEnv = grypeEnv()): DbStatus {
  const result = grype(["db", "status", "-o", "json"], env);
  try {
    const status = JSON.parse(result.stdout) as { valid: boolean; built?: string; schemaVersion?: string; path: string; error?: string };
    return { valid: status.valid, path: status.path, ...(status.built ? { built: status.built } : {}), ...(status.schemaVersion ? { schemaVersion: status.schemaVersion } : {}), ...(status.error ? { error: status.error } : {}) };
  } catch {
    throw new Error(`grype db status failed (exit status ${result.status}):\n${result.stdout}${result.stderr}`);
  }
}

/** What to tell the operator when grype will not use its database. */
export function dbProblem(status: DbStatus): string {
  if (!status.built) return `no grype database at ${status.path} (${status.error ?? "missing"}): import one with npm run vulns -- db import ARCHIVE (see README, "Vulnerabilities")`;
  const tooOld = status.error?.includes("max allowed age");
  return [
    `grype will not use its database ${status.path}: ${status.error ?? "invalid"}.`,
    tooOld
      ? "Import a newer one (npm run vulns -- db import ARCHIVE), or accept this one knowingly for a run with a longer limit, e.g. GRYPE_DB_MAX_ALLOWED_BUILT_AGE=240h npm run vulns (grype's db.max-allowed-built-age; findings then miss everything published since it was built)."
      : "Import a database again: npm run vulns -- db import ARCHIVE.",
  ].join("\n");
}

/** `grype db import ARCHIVE`, then the database's status. */
export function dbImport(archive: string, env: NodeJS.ProcessEnv = grypeEnv()): DbStatus {
  if (!existsSync(archive)) throw new Error(`${archive}: no such file; give the path of a grype v6 database archive (vulnerability-db_v6…tar.gz/.tar.zst)`);
  // Absolute: an archive path is never read as an option.
  const result = grype(["db", "import", resolve(archive)], env);
  if (result.status !== 0) throw new Error(`grype db import ${archive} failed (exit status ${result.status}):\n${result.stderr.trim()}`);
  return dbStatus(env);
}

/** grype over one Syft JSON SBOM (grype's native input): its JSON output. */
function scanSyftJson(syftJson: string, env: NodeJS.ProcessEnv = grypeEnv()): string {
  const result = grype([`sbom:${syftJson}`, "-o", "json", "--quiet"], env);
  if (result.status !== 0) throw new Error(`grype sbom:${syftJson} failed (exit status ${result.status}):\n${result.stderr.trim()}`);
  return result.stdout;
}


/** A relay's SBOM records under artifacts/relays/<relay>/ (DIGEST12.json; signatures and measurements left out). */
function sbomRecords(artifactsDir: string, relay: string): SbomRecordFile[] {
  const dir = relayArtifactsDir(artifactsDir, relay);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => /^[0-9a-f]{12}\.json$/.test(name))
    .map((name) => {
      const file = join(dir, name);
      const record = relaySbomRecordSchema.safeParse(JSON.parse(readFileSync(file, "utf8")));
      if (!record.success) throw new Error(`${file} is not a relay SBOM record: ${formatIssues(record.error)}`);
      return { file, imageDigest: record.data.imageDigest, mtimeMs: statSync(file).mtimeMs };
    });
}

export interface EvaluateOptions {
  projectDir: string;
  stack: string;
  /** The stack's build root, <buildDir>/<project>-<stack>, whose relays/ holds each relay's running.json. */
  buildRoot: string;
  artifactsDir: string;
  now: Date;
  env?: NodeJS.ProcessEnv;
}

/**
 * Every relay the stack has built on this host (a directory under
 * <buildRoot>/relays): the SBOM of the image it runs, through grype. The
 * database is checked first, so an outdated one stops the run with grype's
 * reason. Throws with every relay's problem when an SBOM cannot be found.
 */
export function evaluateStack(options: EvaluateOptions): VulnReport {
  const env = options.env ?? grypeEnv();
  const status = dbStatus(env);
  if (!status.valid || !status.built) throw new Error(dbProblem(status));
  const relaysDir = relaysBuildDir(options.buildRoot);
  if (!existsSync(relaysDir)) throw new Error(`${relaysDir} is missing: stack ${options.stack} has built no relay on this host (or give --build-dir)`);
  const relays = readdirSync(relaysDir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();
  const problems: string[] = [];
  // What the mirror served at the stack's last preview or up on this host.
  const mirror = readMirrorRecord(options.buildRoot);
  const report: VulnReport = {
    schema: VULN_REPORT_SCHEMA,
    stack: options.stack,
    generatedAt: options.now.toISOString(),
    grypeVersion: "",
    database: { built: status.built, schema: status.schemaVersion ?? "" },
    relays: {},
    worst: null,
  };
  for (const relay of relays) {
    const running = readRunningRecord(join(relaysDir, relay));
    const choice = chooseImage(relay, running?.imageDigest, sbomRecords(options.artifactsDir, relay));
    if ("problem" in choice) {
      problems.push(choice.problem);
      continue;
    }
    const record = relaySbomRecordSchema.parse(JSON.parse(readFileSync(choice.record, "utf8")));
    const syftJson = join(sbomDir(options.artifactsDir), record.base.syftJson.file);
    if (!existsSync(syftJson)) {
      problems.push(`relay ${relay}: ${syftJson}, the SBOM its record ${choice.record} names, is missing: restore artifacts/sbom/ from the build host's archive`);
      continue;
    }
    if (sha256File(syftJson) !== record.base.syftJson.sha256) {
      problems.push(`relay ${relay}: ${syftJson} is not the SBOM its record ${choice.record} names (SHA-256 differs): restore artifacts/sbom/ from the build host's archive`);
      continue;
    }
    const scan = parseGrypeOutput(scanSyftJson(syftJson, env), `grype's output for ${syftJson}`);
    report.grypeVersion = scan.grypeVersion;
    const matches = matchesInImage(scan.matches, record.withoutBasePackages);
    const worst = worstSeverity(matches) ?? null;
    const waiting = pendingUpdates(join(relaysDir, relay), mirror, options.projectDir);
    report.relays[relay] = {
      imageDigest: choice.imageDigest,
      imageSource: choice.source,
      sbom: relative(options.projectDir, choice.record),
      syftJson: relative(options.projectDir, syftJson),
      matches,
      worst,
      ...(waiting && waiting.imageDigest === choice.imageDigest ? { updates: { asOf: waiting.asOf, changes: waiting.changes.map(describeChange) } } : {}),
    };
  }
  if (problems.length > 0) throw new Error(problems.join("\n"));
  report.worst = worstSeverity(Object.values(report.relays).flatMap((r) => r.matches)) ?? null;
  return report;
}

/** Writes the report where readVulnReport (lib/ops/vulns.ts) finds it; returns its path. */
export function writeVulnReport(artifactsDir: string, report: VulnReport): string {
  const file = vulnReportFile(artifactsDir, report.stack);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(`${file}.tmp`, JSON.stringify(report, null, 1) + "\n");
  renameSync(`${file}.tmp`, file);
  return file;
}
