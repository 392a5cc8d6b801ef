/**
 * Writes the fleet's Prometheus files into artifacts/monitoring/<stack>/:
 * prometheus.yml (the scrape job), targets.json (the relays, with their
 * labels) and rules.yml (the alert rules), rendered by lib/monitoring.ts
 * from the spec. Each file is replaced whole (written beside, then renamed),
 * so a Prometheus server watching the directory never reads half a file.
 */
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MONITORING_FILES, renderAlertRules, renderPrometheusConfig, renderScrapeTargets } from "../../lib/monitoring";
import type { StepSpec } from "../../lib/steps";

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
