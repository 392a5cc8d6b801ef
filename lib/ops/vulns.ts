/**
 * Known vulnerabilities in the relays' images: what grype's JSON output says
 * (parsed and checked here), which image of a relay is judged, the exit
 * status a run ends with, and the report `npm run vulns` writes to
 * artifacts/vulns/<stack>.json for other commands to read.
 * I/O: readVulnReport reads that report file; the rest is pure. Running grype
 * is lib/ops/grype.ts.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { shellQuote } from "../core/shell-quote";
import { formatIssues } from "../core/zod-issues";
import { artifactsDirOf, vulnsDir } from "../config/build-layout";

/** grype's severities, least to most severe. */
const SEVERITIES = ["Unknown", "Negligible", "Low", "Medium", "High", "Critical"] as const;
export type Severity = (typeof SEVERITIES)[number];

/**
 * The exit status of `npm run vulns` by the worst severity found: 0 nothing
 * found, 1 a usage error or a failure (no database, a missing SBOM…), then
 * one code per severity, so a scheduler can tell "high" from "low".
 */
export const EXIT_STATUS: Record<Severity | "none" | "error", number> = {
  none: 0,
  error: 1,
  Unknown: 2,
  Negligible: 2,
  Low: 3,
  Medium: 4,
  High: 5,
  Critical: 6,
};

/** One vulnerable package of one relay's image. */
export interface VulnMatch {
  /** The vulnerability's id as the database names it (CVE-…, DSA-…, GHSA-…). */
  id: string;
  package: string;
  installed: string;
  /** Versions that fix it; empty when there is no fix yet. */
  fixedIn: string[];
  /** grype's fix state: fixed, not-fixed, wont-fix or unknown. */
  fixState: string;
  severity: Severity;
  /** The package type (deb, go-module, …). */
  type: string;
}

/** What grype's JSON output (`-o json`) carries that this project reads. */
const grypeOutputSchema = z.object({
  matches: z.array(
    z.object({
      vulnerability: z.object({
        id: z.string(),
        severity: z.string(),
        fix: z.object({ versions: z.array(z.string()).nullish(), state: z.string() }),
      }),
      artifact: z.object({ name: z.string(), version: z.string(), type: z.string() }),
    }),
  ),
  descriptor: z.object({
    name: z.literal("grype"),
    version: z.string(),
    db: z.object({ status: z.object({ built: z.string(), schemaVersion: z.string() }) }).optional(),
  }),
});

const severityOf = (value: string): Severity => (SEVERITIES as readonly string[]).includes(value) ? (value as Severity) : "Unknown";

/** Parses `grype -o json` output; the matches sorted most severe first, duplicates (one package, one id) once. */
export function parseGrypeOutput(text: string, what = "grype's output"): { matches: VulnMatch[]; grypeVersion: string; database?: { built: string; schema: string } } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${what} is not JSON: ${(err as Error).message}`);
  }
  const parsed = grypeOutputSchema.safeParse(json);
  if (!parsed.success) throw new Error(`${what} is not grype's JSON output: ${formatIssues(parsed.error)}`);
  const seen = new Set<string>();
  const matches: VulnMatch[] = [];
  for (const m of parsed.data.matches) {
    const key = `${m.artifact.name}\0${m.artifact.version}\0${m.vulnerability.id}`;
    if (seen.has(key)) continue;
    seen.add(key);
    matches.push({
      id: m.vulnerability.id,
      package: m.artifact.name,
      installed: m.artifact.version,
      fixedIn: m.vulnerability.fix.versions ?? [],
      fixState: m.vulnerability.fix.state,
      severity: severityOf(m.vulnerability.severity),
      type: m.artifact.type,
    });
  }
  const status = parsed.data.descriptor.db?.status;
  return { matches: sortMatches(matches), grypeVersion: parsed.data.descriptor.version, ...(status ? { database: { built: status.built, schema: status.schemaVersion } } : {}) };
}

const rank = (s: Severity) => SEVERITIES.indexOf(s);

function sortMatches(matches: VulnMatch[]): VulnMatch[] {
  return [...matches].sort((a, b) => rank(b.severity) - rank(a.severity) || a.package.localeCompare(b.package) || a.id.localeCompare(b.id));
}

export function worstSeverity(matches: readonly VulnMatch[]): Severity | undefined {
  return matches.reduce<Severity | undefined>((worst, m) => (worst === undefined || rank(m.severity) > rank(worst) ? m.severity : worst), undefined);
}

/**
 * The base SBOM lists every package of the base, but an image may leave out
 * a base layer: the relay SBOM record names the packages it does not hold
 * (withoutBasePackages, e.g. openssh-server in broker mode), and their
 * matches do not concern that relay.
 */
export function matchesInImage(matches: VulnMatch[], withoutBasePackages: readonly string[] = []): VulnMatch[] {
  const absent = new Set(withoutBasePackages);
  return matches.filter((m) => !absent.has(m.package));
}

/** The parts of a relay SBOM record (cli/steps/sbom.ts, writeRelaySbom) a scan needs. */
export const relaySbomRecordSchema = z.object({
  schema: z.literal("diskless-relays/relay-sbom/v1"),
  relay: z.string(),
  imageDigest: z.string().regex(/^[0-9a-f]{64}$/),
  base: z.object({ syftJson: z.object({ file: z.string().regex(/^[^/]+\.syft\.json$/), sha256: z.string().regex(/^[0-9a-f]{64}$/) }) }),
  withoutBasePackages: z.array(z.string()).optional(),
});

/** A relay SBOM record on disk: its image digest and when it was written. */
export interface SbomRecordFile {
  file: string;
  imageDigest: string;
  mtimeMs: number;
}

export type ImageChoice = { imageDigest: string; source: "running" | "latest-built"; record: string } | { problem: string };

/**
 * Which image of a relay is judged: the one it was last found healthy on
 * (running.json), which is what it runs unless a rollout is under way;
 * a relay never found healthy yet is judged on its newest built image (the
 * relay SBOM record written last), which is what `pulumi up` deploys.
 */
export function chooseImage(relay: string, runningDigest: string | undefined, records: readonly SbomRecordFile[]): ImageChoice {
  if (runningDigest) {
    const record = records.find((r) => r.imageDigest === runningDigest);
    return record
      ? { imageDigest: runningDigest, source: "running", record: record.file }
      : { problem: `relay ${relay} runs image ${runningDigest.slice(0, 12)} (running.json), but artifacts/relays/${relay}/ has no SBOM record of it: restore artifacts/ from the build host's archive` };
  }
  const newest = [...records].sort((a, b) => b.mtimeMs - a.mtimeMs)[0];
  return newest
    ? { imageDigest: newest.imageDigest, source: "latest-built", record: newest.file }
    : { problem: `relay ${relay} has neither running.json nor an SBOM record under artifacts/relays/${relay}/: nothing to evaluate (has pulumi up built it?)` };
}

/** Stack names end up in file names: Pulumi's own alphabet, no path. */
export function checkStackName(stack: string): string {
  if (!/^[A-Za-z0-9_.-]{1,100}$/.test(stack) || stack === "." || stack === "..") throw new Error(`--stack: ${JSON.stringify(stack)} is not a stack name (letters, digits, - _ .)`);
  return stack;
}

export const VULN_REPORT_SCHEMA = "diskless-relays/vulns/v1";

/** artifacts/vulns/<stack>.json: the last evaluation of a stack's relays. */
export interface VulnReport {
  schema: typeof VULN_REPORT_SCHEMA;
  stack: string;
  generatedAt: string;
  grypeVersion: string;
  database: { built: string; schema: string };
  relays: Record<
    string,
    {
      imageDigest: string;
      /** running: the image running.json names; latest-built: the relay was never found healthy, its newest image was judged. */
      imageSource: "running" | "latest-built";
      /** The relay SBOM record and the Syft JSON that was scanned, relative to the project. */
      sbom: string;
      syftJson: string;
      matches: VulnMatch[];
      worst: Severity | null;
      /**
       * Package updates the mirror served at the stack's last preview or up
       * on this host that the base of the judged image lacks, "tor a → b";
       * absent when unknown (lib/image/package-set.ts pendingUpdates).
       */
      updates?: { asOf: string; changes: string[] };
    }
  >;
  worst: Severity | null;
}

/** <artifacts>/vulns/<stack>.json; artifacts/ is the project's unless a run was given another. */
export const vulnReportFile = (artifactsDir: string, stack: string) => join(vulnsDir(artifactsDir), `${checkStackName(stack)}.json`);
export const vulnReportPath = (projectDir: string, stack: string) => vulnReportFile(artifactsDirOf(projectDir), stack);

/** The exit status for a report: the worst severity of any relay. */
export const exitStatusOf = (report: Pick<VulnReport, "worst">) => EXIT_STATUS[report.worst ?? "none"];

/** The stack's last report, or undefined when `npm run vulns` has not run for it; throws on a file that is not one. */
export function readVulnReport(projectDir: string, stack: string): VulnReport | undefined {
  const file = vulnReportPath(projectDir, stack);
  if (!existsSync(file)) return undefined;
  const report = JSON.parse(readFileSync(file, "utf8")) as Partial<VulnReport>;
  if (report.schema !== VULN_REPORT_SCHEMA || typeof report.relays !== "object" || report.relays === null) {
    throw new Error(`${file} is not a vulnerability report (${VULN_REPORT_SCHEMA}); run npm run vulns -- --stack ${shellQuote(stack)} again`);
  }
  return report as VulnReport;
}

/** Whole hours and days, for "built 3 days ago". */
export function describeAge(builtIso: string, now: Date): string {
  const hours = Math.floor((now.getTime() - Date.parse(builtIso)) / 3_600_000);
  if (hours < 0) return "in the future (check this machine's clock)";
  if (hours < 48) return `${hours} hour${hours === 1 ? "" : "s"} ago`;
  return `${Math.floor(hours / 24)} days ago`;
}
