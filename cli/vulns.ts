/**
 * Known vulnerabilities in the relays' images, by grype, offline:
 *   npm run vulns -- db import ARCHIVE     load a grype v6 database archive into the project's cache
 *   npm run vulns -- db status             the database's build date and age; exit 1 when grype will not use it
 *   npm run vulns [-- --stack NAME] [--json] [--build-dir DIR] [--artifacts DIR]
 * The last form judges, for each relay the stack has built on this host, the
 * Syft JSON SBOM of the image it runs (running.json; a relay never found
 * healthy: its newest built image), lists what needs patching and the
 * package updates the mirror serves that the image lacks (as of the stack's
 * last preview or up on this host), writes
 * artifacts/vulns/<stack>.json and exits with the worst severity found
 * (lib/ops/vulns.ts, EXIT_STATUS: 0 none, 1 error, 2 negligible/unknown, 3 low,
 * 4 medium, 5 high, 6 critical).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { dbImport, dbProblem, dbStatus, evaluateStack, writeVulnReport } from "../lib/ops/grype";
import { checkStackName, describeAge, EXIT_STATUS, exitStatusOf, type VulnReport } from "../lib/ops/vulns";
import { relaysBuildDir } from "../lib/config/build-layout";

const USAGE = "usage: npm run vulns -- db import ARCHIVE | db status | [--stack NAME] [--json] [--build-dir DIR] [--artifacts DIR]";
const projectDir = resolve(__dirname, "..");

/** The Pulumi project's name, which the build root is named after (<buildDir>/<project>-<stack>). */
function projectName(): string {
  const name = /^name:\s*(\S+)\s*$/m.exec(readFileSync(join(projectDir, "Pulumi.yaml"), "utf8"))?.[1];
  if (!name) throw new Error("Pulumi.yaml names no project");
  return name;
}

/** Without --stack: the one stack this host has built; with several, the operator says which. */
function defaultStack(buildDir: string, project: string): string {
  const stacks = existsSync(buildDir)
    ? readdirSync(buildDir, { withFileTypes: true })
        .filter((e) => e.isDirectory() && e.name.startsWith(`${project}-`) && existsSync(relaysBuildDir(join(buildDir, e.name))))
        .map((e) => e.name.slice(project.length + 1))
    : [];
  if (stacks.length === 1) return stacks[0]!;
  throw new Error(stacks.length === 0 ? `${buildDir} holds no stack's relays: build them (pulumi up), or give --build-dir` : `--stack: this host has built ${stacks.join(", ")}; name one`);
}

function printReport(report: VulnReport, now: Date): void {
  console.log(`grype ${report.grypeVersion}, database built ${report.database.built} (${describeAge(report.database.built, now)}), schema ${report.database.schema}`);
  for (const [relay, result] of Object.entries(report.relays)) {
    const image = `image ${result.imageDigest.slice(0, 12)}${result.imageSource === "latest-built" ? " (newest built; never found healthy)" : ""}`;
    if (result.updates && result.updates.changes.length > 0) {
      console.log(`${relay}: FIXES WAITING: its image lacks ${result.updates.changes.length} package update${result.updates.changes.length === 1 ? "" : "s"} the mirror serves (as of ${result.updates.asOf}); pulumi up deploys them (a held stack: npm run packages -- update first)`);
      for (const change of result.updates.changes) console.log(`  ${change}`);
    }
    if (result.matches.length === 0) {
      console.log(`${relay}: nothing known, ${image}`);
      continue;
    }
    const fixable = result.matches.filter((m) => m.fixedIn.length > 0).length;
    console.log(`${relay}: ${fixable > 0 ? "NEEDS PATCHING" : "vulnerable, no fix yet"}, ${result.matches.length} known (worst ${result.worst}), ${image}`);
    for (const m of result.matches) {
      console.log(`  ${m.severity.padEnd(10)} ${m.id.padEnd(20)} ${m.package} ${m.installed} → ${m.fixedIn.length > 0 ? m.fixedIn.join(" or ") : `no fix (${m.fixState})`}`);
    }
  }
}

function main(): number {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { stack: { type: "string" }, json: { type: "boolean", default: false }, "build-dir": { type: "string", default: "build" }, artifacts: { type: "string", default: "artifacts" } },
  });
  const now = new Date();
  if (positionals[0] === "db") {
    const [, command, archive] = positionals;
    if (command === "import" && archive && positionals.length === 3) {
      const status = dbImport(resolve(archive));
      console.log(`imported ${archive}: built ${status.built} (${status.built ? describeAge(status.built, now) : "unknown"}), schema ${status.schemaVersion}`);
      if (!status.valid) {
        console.error(dbProblem(status));
        return EXIT_STATUS.error;
      }
      return 0;
    }
    if (command === "status" && positionals.length === 2) {
      const status = dbStatus();
      if (status.built) console.log(`grype database ${status.path}: built ${status.built} (${describeAge(status.built, now)}), schema ${status.schemaVersion}`);
      if (!status.valid) {
        console.error(dbProblem(status));
        return EXIT_STATUS.error;
      }
      console.log("grype accepts it");
      return 0;
    }
    throw new Error(USAGE);
  }
  if (positionals.length > 0) throw new Error(USAGE);
  const project = projectName();
  const buildDir = resolve(projectDir, values["build-dir"]!);
  const stack = checkStackName(values.stack ?? defaultStack(buildDir, project));
  const artifactsDir = resolve(projectDir, values.artifacts!);
  const report = evaluateStack({ projectDir, stack, buildRoot: join(buildDir, `${project}-${stack}`), artifactsDir, now });
  const file = writeVulnReport(artifactsDir, report);
  if (values.json) console.log(JSON.stringify(report, null, 1));
  else {
    printReport(report, now);
    console.log(`report: ${file}`);
  }
  return exitStatusOf(report);
}

try {
  process.exitCode = main();
} catch (err) {
  console.error((err as Error).message);
  process.exitCode = EXIT_STATUS.error;
}
