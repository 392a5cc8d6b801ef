/**
 * The fleet's Prometheus files, judged by Prometheus's own promtool: the
 * configuration loads, its file-based discovery finds each relay with its
 * labels, the rules load, and each alert fires on the series it is meant
 * for and on no other (test/fixtures/monitoring/alerts.test.yml, written by
 * hand). The files are written by the program's own step, as `pulumi up`
 * runs it.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseStackConfig } from "../../lib/config/config";
import { alertRules, MONITORING_FILES, monitoringTargets, prometheusJob, renderAlertRules, renderPrometheusConfig, renderScrapeTargets, type MonitoringSpec } from "../../lib/render/monitoring";
import { encodeStepSpec, STEP_ARGV, STEP_SPEC_ENV } from "../../lib/steps/steps";
import { repoRoot } from "../support/pulumi";
import { privateTmpDir } from "../support/tmp";

const scratch = privateTmpDir("monitoring");
const FIXTURE = join(repoRoot, "test/fixtures/monitoring/alerts.test.yml");

const promtool = (args: string[], cwd: string) => {
  const result = spawnSync("promtool", args, { cwd, encoding: "utf8" });
  if (result.error) throw new Error(`cannot run promtool (${result.error.message}); install it with scripts/setup.sh`);
  return { status: result.status, stdout: result.stdout, output: `${result.stdout}${result.stderr}` };
};

/** Three relays; one IPv4 scraper for two of them, an IPv6-only one for the third, and one relay not scraped. */
function fleetConfig() {
  const relay = (i: number, extra: Record<string, unknown>) => ({
    name: `relay-${i}`,
    nickname: `Relay${i}`,
    node: i < 3 ? "pve1" : "pve2",
    vmId: 9100 + i,
    mac: `BC:24:11:00:00:0${i}`,
    ipv4: { address: `198.51.100.${10 + i}/24`, gateway: "198.51.100.1" },
    ipv6: { address: `2001:db8::${10 + i}/64`, gateway: "2001:db8::1" },
    contactInfo: "email:abuse[]example.net",
    ...extra,
  });
  return parseStackConfig({
    proxmox: { endpoint: "https://pve.example.net:8006", nodes: ["pve1", "pve2"], datastore: "local", bridge: "vmbr0" },
    proxmoxApiToken: "a@pve!b=c",
    stateCollection: { privateKeyFile: "k" },
    metrics: { allowFrom: ["203.0.113.0/28", "2001:db8:5::/48"] },
    relays: [
      relay(1, { exit: { enabled: true }, nameservers: ["198.51.100.53"] }),
      relay(2, { metrics: { allowFrom: "2001:db8:5::9", port: 9100 } }),
      relay(3, { metrics: false }),
      relay(4, { ipv6: undefined, metrics: { allowFrom: "203.0.113.9" } }),
    ],
  });
}

const FINGERPRINTS = ["1".repeat(40), "2".repeat(40), "3".repeat(40), "abcdef".repeat(6) + "abcd"];
const planned = () => fleetConfig().relays.map((config, i) => ({ config, identity: { rsaFingerprint: FINGERPRINTS[i]! } }));

/** Runs the write-monitoring step as a step resource does: the one command line, the spec as JSON in the environment. */
function runStep(step: "write-monitoring" | "remove-monitoring", spec: MonitoringSpec, outDir: string): string {
  const [command, ...args] = STEP_ARGV;
  return execFileSync(command, [...args, step], {
    cwd: repoRoot,
    encoding: "utf8",
    env: { ...process.env, [STEP_SPEC_ENV]: encodeStepSpec(step, { ...spec, outDir }) },
  });
}
const writeWithStep = (spec: MonitoringSpec, outDir: string) => runStep("write-monitoring", spec, outDir);

describe("monitoringTargets", () => {
  it("scrapes each relay with metrics once, on IPv4 unless only IPv6 sources may scrape it", () => {
    expect(monitoringTargets(planned())).toEqual([
      { relay: "relay-1", nickname: "Relay1", fingerprint: "1".repeat(40), node: "pve1", exit: true, host: "198.51.100.11", port: 9035 },
      { relay: "relay-2", nickname: "Relay2", fingerprint: "2".repeat(40), node: "pve1", exit: false, host: "2001:db8::12", port: 9100 },
      { relay: "relay-4", nickname: "Relay4", fingerprint: "ABCDEF".repeat(6) + "ABCD", node: "pve2", exit: false, host: "198.51.100.14", port: 9035 },
    ]);
  });
});

describe("the Prometheus files, as the step writes them", () => {
  const dir = join(scratch, "fleet");
  const spec: MonitoringSpec = { stack: "fremont", targets: monitoringTargets(planned()) };
  let said = "";
  beforeAll(() => {
    said = writeWithStep(spec, dir);
  }, 60_000);

  it("writes the scrape configuration, its targets and the rules", () => {
    expect(said).toMatch(/^3 relays to scrape: .*prometheus\.yml$/m);
    expect(readFileSync(join(dir, MONITORING_FILES.config), "utf8")).toBe(renderPrometheusConfig(spec));
    expect(readFileSync(join(dir, MONITORING_FILES.targets), "utf8")).toBe(renderScrapeTargets(spec));
    expect(readFileSync(join(dir, MONITORING_FILES.rules), "utf8")).toBe(renderAlertRules(spec));
  });

  it("is a configuration promtool accepts, with its rule file", () => {
    const check = promtool(["check", "config", MONITORING_FILES.config], dir);
    expect(check.output).toMatch(/SUCCESS: 1 rule files found/);
    expect(check.output).toMatch(/SUCCESS: 7 rules found/);
    expect(check.status).toBe(0);
    expect(promtool(["check", "rules", MONITORING_FILES.rules], dir).status).toBe(0);
  });

  it("makes Prometheus's discovery find each relay at its MetricsPort, labelled with its name, nickname, fingerprint, node and role", () => {
    const discovery = promtool(["check", "service-discovery", MONITORING_FILES.config, prometheusJob("fremont"), "--timeout=5s"], dir);
    expect(discovery.status).toBe(0);
    const targets = (JSON.parse(discovery.stdout) as { labels: Record<string, string> }[]).map(({ labels }) => ({
      instance: labels.instance,
      job: labels.job,
      relay: labels.relay,
      nickname: labels.nickname,
      fingerprint: labels.fingerprint,
      node: labels.node,
      exit: labels.exit,
      path: labels.__metrics_path__,
    }));
    // promtool lists them in no fixed order.
    targets.sort((a, b) => a.relay!.localeCompare(b.relay!));
    const base = { job: "diskless-relays-fremont", path: "/metrics" };
    expect(targets).toEqual([
      { ...base, instance: "198.51.100.11:9035", relay: "relay-1", nickname: "Relay1", fingerprint: "1".repeat(40), node: "pve1", exit: "true" },
      { ...base, instance: "[2001:db8::12]:9100", relay: "relay-2", nickname: "Relay2", fingerprint: "2".repeat(40), node: "pve1", exit: "false" },
      { ...base, instance: "198.51.100.14:9035", relay: "relay-4", nickname: "Relay4", fingerprint: "ABCDEF".repeat(6) + "ABCD", node: "pve2", exit: "false" },
    ]);
  }, 60_000);

  it("is refused by promtool when a file is broken, so the check can fail", () => {
    const broken = join(scratch, "broken");
    writeWithStep(spec, broken);
    writeFileSync(join(broken, MONITORING_FILES.targets), renderScrapeTargets(spec).replace("[", "[{"));
    expect(promtool(["check", "config", MONITORING_FILES.config], broken).status).not.toBe(0);
  }, 60_000);
});

describe("removing the files with the resource", () => {
  it("removes what write-monitoring wrote, and nothing else", () => {
    const dir = join(scratch, "removed");
    const kept = join(scratch, "kept");
    const spec: MonitoringSpec = { stack: "gone", targets: monitoringTargets(planned()) };
    writeWithStep(spec, dir);
    writeWithStep(spec, kept);
    writeFileSync(join(kept, "operator-notes.txt"), "mine\n");
    runStep("remove-monitoring", spec, dir);
    runStep("remove-monitoring", spec, kept);
    expect(existsSync(dir)).toBe(false);
    expect(readdirSync(kept)).toEqual(["operator-notes.txt"]);
  }, 60_000);
});

describe("the alert rules, fed series by promtool test rules", () => {
  /** The generated rules of a stack named "test", beside the hand-written unit tests. */
  function rulesDir(name: string, edit: (rules: string) => string = (rules) => rules) {
    const dir = join(scratch, name);
    writeWithStep({ stack: "test", targets: [] }, dir);
    writeFileSync(join(dir, MONITORING_FILES.rules), edit(readFileSync(join(dir, MONITORING_FILES.rules), "utf8")));
    copyFileSync(FIXTURE, join(dir, "alerts.test.yml"));
    return dir;
  }

  it("fires each alert when it should and not otherwise", () => {
    const run = promtool(["test", "rules", "alerts.test.yml"], rulesDir("rules"));
    expect(run.output).toMatch(/SUCCESS/);
    expect(run.status).toBe(0);
  }, 60_000);

  it("tests every alert the rules define", () => {
    const tested = new Set([...readFileSync(FIXTURE, "utf8").matchAll(/^\s+- alertname: (\w+)$/gm)].map((match) => match[1]));
    expect(alertRules("test").map((rule) => rule.alert).filter((alert) => !tested.has(alert))).toEqual([]);
    // The names operators' dashboards and silences know from ansible-relayor.
    expect(alertRules("test").map((rule) => rule.alert)).toEqual(expect.arrayContaining(["TorCertificateExpiryUnder15Days", "TorCertificateExpiryUnder1Day"]));
  });

  it("fails when a rule says something else: counting names that do not exist as resolver failures", () => {
    const run = promtool(["test", "rules", "alerts.test.yml"], rulesDir("mutated", (rules) => rules.replace('reason=~\\"serverfailed|', 'reason=~\\"notexist|serverfailed|')));
    expect(run.output).toMatch(/FAILED[\s\S]*TorExitDNSErrors/);
    expect(run.status).not.toBe(0);
  }, 60_000);
});

describe("values travel as data", () => {
  it("refuses a spec whose values could change the files' meaning", () => {
    const target = monitoringTargets(planned())[0]!;
    expect(() => encodeStepSpec("write-monitoring", { stack: 'x",evil="1', targets: [], outDir: "/tmp/x" })).toThrow(/stack/);
    expect(() => encodeStepSpec("write-monitoring", { stack: "s", targets: [{ ...target, nickname: "Relay1\nrule_files: [x]" }], outDir: "/tmp/x" })).toThrow(/nickname/);
    expect(() => encodeStepSpec("write-monitoring", { stack: "s", targets: [{ ...target, host: "198.51.100.11:80/x" }], outDir: "/tmp/x" })).toThrow(/host/);
    expect(() => prometheusJob("a b")).toThrow(/stack name/);
  });
});
