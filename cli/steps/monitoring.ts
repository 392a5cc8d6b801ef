/**
 * Writes the fleet's Prometheus files into artifacts/monitoring/<stack>/:
 * prometheus.yml (the scrape job), targets.json (the relays, with their
 * labels) and rules.yml (the alert rules), rendered by lib/render/monitoring.ts
 * from the spec. Each file is replaced whole (written beside, then renamed),
 * so a Prometheus server watching the directory never reads half a file.
 * When the fleet no longer exposes a MetricsPort, the files go: stale
 * targets would page someone about relays nobody scrapes any more.
 */
import { mkdirSync, renameSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MONITORING_FILES, renderAlertRules, renderPrometheusConfig, renderScrapeTargets } from "../../lib/render/monitoring";
import type { StepSpec } from "../../lib/steps/steps";

export function writeMonitoring(spec: StepSpec<"write-monitoring">): void {
  const { outDir, ...monitoring } = spec;
  mkdirSync(outDir, { recursive: true });
  const files: [string, string][] = [
    [MONITORING_FILES.targets, renderScrapeTargets(monitoring)],
    [MONITORING_FILES.rules, renderAlertRules(monitoring)],
    [MONITORING_FILES.config, renderPrometheusConfig(monitoring)],
  ];
  for (const [name, text] of files) {
    const file = join(outDir, name);
    writeFileSync(`${file}.tmp`, text, { mode: 0o644 });
    renameSync(`${file}.tmp`, file);
  }
  console.log(`${monitoring.targets.length} relay${monitoring.targets.length === 1 ? "" : "s"} to scrape: ${join(outDir, MONITORING_FILES.config)}`);
}

/** Removes the files write-monitoring wrote (only those), and the directory if nothing else is in it. */
export function removeMonitoring(spec: StepSpec<"remove-monitoring">): void {
  for (const name of Object.values(MONITORING_FILES)) rmSync(join(spec.outDir, name), { force: true });
  try {
    rmdirSync(spec.outDir);
  } catch {
    // Not empty (the operator keeps something there) or already gone: leave it.
  }
}
