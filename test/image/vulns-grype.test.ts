/**
 * `npm run vulns` with the real grype over the real Syft JSON of the tests'
 * Debian base (written by the program's own scan-base-sbom step), against
 * small databases that tools/vulndb writes with grype's own v6 store. No VM;
 * the Debian base comes from the global set-up (built once per machine).
 * The installed versions expected come from the base's record (dpkg's own
 * list, base.json), not from this project's code.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readBaseRecord } from "../../lib/image/base-record";
import { baseImageDigest } from "../../lib/plan/image-inputs";
import { toolsBin } from "../../lib/core/paths";
import { EXIT_STATUS, readVulnReport, type VulnReport } from "../../lib/ops/vulns";
import { encodeStepSpec, STEP_SPEC_ENV } from "../../lib/steps/steps";
import { debianBase, debianBaseInputs } from "../support/images";
import { repoRoot, toolEnv, tsNode } from "../support/pulumi";

const STACK = "vulnstest";
const GUARD = "relay-guard";
/** Broker mode: its image leaves out the SSH server's layer, and its record says so. */
const BROKERED = "relay-brokered";

describe("npm run vulns with the real grype", () => {
  const dir = mkdtempSync(join(tmpdir(), "diskless-relays-vulns-"));
  const artifacts = join(dir, "artifacts");
  const buildDir = join(dir, "build");
  const env = toolEnv({ GRYPE_DB_CACHE_DIR: join(dir, "grype-db") });
  let installed: Map<string, string>;

  // Asynchronous: a test worker blocked in spawnSync for long misses vitest's own messages.
  const run = (file: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}) =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(file, args, { cwd: repoRoot, encoding: "utf8", env: { ...env, ...extraEnv }, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) =>
        resolve({ status: err ? (typeof err.code === "number" ? err.code : null) : 0, stdout, stderr }),
      );
    });
  const vulns = (...args: string[]) => run(...tsNode(join(repoRoot, "cli/vulns.ts"), ...args));
  const scan = () => vulns("--stack", STACK, "--build-dir", buildDir, "--artifacts", artifacts, "--json");

  /** A database of these entries, built `built` (default now), imported through the CLI. */
  let databases = 0;
  const importDatabase = async (entries: Record<string, string>[], built?: string) => {
    const out = join(dir, `db-${++databases}`);
    const spec = join(dir, `spec-${databases}.json`);
    writeFileSync(spec, JSON.stringify({ ...(built ? { built } : {}), entries }));
    const made = await run(join(toolsBin(), "vulndb"), ["-spec", spec, "-out", out]);
    expect(made.status, made.stderr).toBe(0);
    return vulns("db", "import", made.stdout.trim());
  };

  beforeAll(async () => {
    const inputs = debianBaseInputs();
    const base = debianBase(inputs);
    installed = new Map(readBaseRecord(base).packages.map((p) => [p.name, p.version]));
    const baseDigest = baseImageDigest(inputs);
    const stem = join(artifacts, "sbom", `base-debian-${baseDigest.slice(0, 12)}`);
    // The program's own step, as the build runs it.
    const scanned = await run(...tsNode(join(repoRoot, "cli/step.ts"), "scan-base-sbom"), {
      [STEP_SPEC_ENV]: encodeStepSpec("scan-base-sbom", { rootfs: join(base, "rootfs"), stem, flavour: "debian", baseDigest }),
    });
    expect(scanned.status, scanned.stderr).toBe(0);
    const syftJson = `${stem}.syft.json`;
    const sha256 = createHash("sha256").update(readFileSync(syftJson)).digest("hex");
    // Relay SBOM records as cli/steps/sbom.ts writes them (the fields a scan reads).
    const record = (relay: string, imageDigest: string, extra: Record<string, unknown> = {}) => {
      mkdirSync(join(artifacts, "relays", relay), { recursive: true });
      const file = join(artifacts, "relays", relay, `${imageDigest.slice(0, 12)}.json`);
      writeFileSync(file, JSON.stringify({ schema: "diskless-relays/relay-sbom/v1", relay, imageDigest, base: { syftJson: { file: `base-debian-${baseDigest.slice(0, 12)}.syft.json`, sha256 } }, ...extra }));
      return file;
    };
    const relays = join(buildDir, `diskless-relays-${STACK}`, "relays");
    // The guard runs an older image than its newest build, whose record names a Syft JSON that is not there.
    record(GUARD, "a".repeat(64));
    const newer = join(artifacts, "relays", GUARD, "bbbbbbbbbbbb.json");
    mkdirSync(join(artifacts, "relays", GUARD), { recursive: true });
    writeFileSync(newer, JSON.stringify({ schema: "diskless-relays/relay-sbom/v1", relay: GUARD, imageDigest: "b".repeat(64), base: { syftJson: { file: "base-debian-000000000000.syft.json", sha256 } } }));
    mkdirSync(join(relays, GUARD), { recursive: true });
    writeFileSync(join(relays, GUARD, "running.json"), JSON.stringify({ imageDigest: "a".repeat(64) }));
    // The brokered relay was never found healthy: its newest build is judged.
    const old = record(BROKERED, "c".repeat(64), { withoutBasePackages: ["openssh-server"] });
    utimesSync(old, new Date(Date.now() - 86_400_000), new Date(Date.now() - 86_400_000));
    record(BROKERED, "d".repeat(64), { withoutBasePackages: ["openssh-server"] });
    mkdirSync(join(relays, BROKERED), { recursive: true });
  }, 600_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("without a database, says how to get one", async () => {
    const result = await scan();
    expect(result.status).toBe(EXIT_STATUS.error);
    expect(result.stderr).toMatch(/no grype database at .*npm run vulns -- db import ARCHIVE/);
  }, 120_000);

  it("flags the relays whose installed package the database says is vulnerable, with the fix and severity", async () => {
    const tor = installed.get("tor")!;
    expect(tor).toMatch(/^0\.4\./);
    const imported = await importDatabase([
      { id: "CVE-2099-1001", distro: "debian:12", package: "tor", fixedIn: "0.4.9.999-1", severity: "high" },
      { id: "CVE-2099-1002", distro: "debian:12", package: "openssh", fixedIn: "1:99.0p1-1", severity: "medium" },
    ]);
    expect(imported.status, imported.stderr).toBe(0);
    expect(imported.stdout).toMatch(/^imported .*: built \d{4}-\d\d-\d\dT.*Z \(0 hours ago\), schema v6\./);

    const result = await scan();
    expect(result.status, result.stderr).toBe(EXIT_STATUS.High);
    const report = JSON.parse(result.stdout) as VulnReport;
    expect(report.worst).toBe("High");
    for (const relay of [GUARD, BROKERED]) {
      expect(report.relays[relay]!.matches).toContainEqual({ id: "CVE-2099-1001", package: "tor", installed: tor, fixedIn: ["0.4.9.999-1"], fixState: "fixed", severity: "High", type: "deb" });
    }
    expect(report.relays[GUARD]).toMatchObject({ imageDigest: "a".repeat(64), imageSource: "running" });
    expect(report.relays[BROKERED]).toMatchObject({ imageDigest: "d".repeat(64), imageSource: "latest-built" });
    // openssh-server is in the guard's image, not in the brokered relay's; its client is in both.
    const packages = (relay: string) => report.relays[relay]!.matches.map((m) => m.package);
    expect(packages(GUARD)).toEqual(expect.arrayContaining(["openssh-server", "openssh-client"]));
    expect(packages(BROKERED)).toContain("openssh-client");
    expect(packages(BROKERED)).not.toContain("openssh-server");
    expect(report.relays[GUARD]!.matches.find((m) => m.package === "openssh-server")!.installed).toBe(installed.get("openssh-server"));
    // What another command reads back.
    expect(readVulnReport(dir, STACK)).toEqual(report);

    const text = await vulns("--stack", STACK, "--build-dir", buildDir, "--artifacts", artifacts);
    expect(text.status).toBe(EXIT_STATUS.High);
    expect(text.stdout).toMatch(/database built .* \(0 hours ago\)/);
    expect(text.stdout).toMatch(new RegExp(`${GUARD}: NEEDS PATCHING, \\d+ known \\(worst High\\), image aaaaaaaaaaaa`));
    expect(text.stdout).toContain(`High       CVE-2099-1001        tor ${tor} → 0.4.9.999-1`);
  }, 180_000);

  it("clears a relay once the database says its installed version is the fix", async () => {
    const imported = await importDatabase([{ id: "CVE-2099-1001", distro: "debian:12", package: "tor", fixedIn: installed.get("tor")!, severity: "high" }]);
    expect(imported.status, imported.stderr).toBe(0);
    const result = await scan();
    expect(result.status, result.stderr).toBe(EXIT_STATUS.none);
    const report = JSON.parse(result.stdout) as VulnReport;
    expect(report.worst).toBeNull();
    expect(report.relays[GUARD]!.matches).toEqual([]);
    expect(report.relays[BROKERED]!.matches).toEqual([]);
  }, 180_000);

  it("an unfixed critical entry gives the critical exit status", async () => {
    expect((await importDatabase([{ id: "CVE-2099-1003", distro: "debian:12", package: "zlib", severity: "critical" }])).status).toBe(0);
    const result = await scan();
    expect(result.status, result.stderr).toBe(EXIT_STATUS.Critical);
    expect((JSON.parse(result.stdout) as VulnReport).relays[GUARD]!.matches).toContainEqual(
      expect.objectContaining({ id: "CVE-2099-1003", package: "zlib1g", installed: installed.get("zlib1g"), fixedIn: [], fixState: "not-fixed", severity: "Critical" }),
    );
  }, 180_000);

  it("refuses a database older than grype allows, saying so and what to do, unless the operator raises the limit", async () => {
    const built = new Date(Date.now() - 10 * 86_400_000).toISOString().replace(/\.\d+Z$/, "Z");
    const imported = await importDatabase([{ id: "CVE-2099-1001", distro: "debian:12", package: "tor", fixedIn: "0.4.9.999-1", severity: "high" }], built);
    expect(imported.status).toBe(EXIT_STATUS.error);
    expect(imported.stdout).toContain(`built ${built} (10 days ago)`);
    const status = await vulns("db", "status");
    expect(status.status).toBe(EXIT_STATUS.error);
    expect(status.stdout).toContain("(10 days ago)");
    expect(status.stderr).toMatch(/max allowed age is 5 days/);
    expect(status.stderr).toMatch(/Import a newer one \(npm run vulns -- db import ARCHIVE\), or .*GRYPE_DB_MAX_ALLOWED_BUILT_AGE=240h/);
    const refused = await scan();
    expect(refused.status).toBe(EXIT_STATUS.error);
    expect(refused.stderr).toMatch(/max allowed age is 5 days/);

    env.GRYPE_DB_MAX_ALLOWED_BUILT_AGE = "264h";
    try {
      expect((await vulns("db", "status")).status).toBe(0);
      expect((await scan()).status).toBe(EXIT_STATUS.High);
    } finally {
      delete env.GRYPE_DB_MAX_ALLOWED_BUILT_AGE;
    }
  }, 180_000);

  it("says which relay's SBOM is missing", async () => {
    writeFileSync(join(buildDir, `diskless-relays-${STACK}`, "relays", GUARD, "running.json"), JSON.stringify({ imageDigest: "b".repeat(64) }));
    env.GRYPE_DB_MAX_ALLOWED_BUILT_AGE = "264h";
    try {
      const result = await scan();
      expect(result.status).toBe(EXIT_STATUS.error);
      expect(result.stderr).toMatch(new RegExp(`relay ${GUARD}: .*base-debian-000000000000\\.syft\\.json, the SBOM its record .*bbbbbbbbbbbb\\.json names, is missing`));
    } finally {
      delete env.GRYPE_DB_MAX_ALLOWED_BUILT_AGE;
    }
  }, 120_000);
});
