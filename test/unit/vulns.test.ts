import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { checkStackName, chooseImage, describeAge, EXIT_STATUS, exitStatusOf, matchesInImage, parseGrypeOutput, readVulnReport, vulnReportPath, worstSeverity, type VulnReport } from "../../lib/ops/vulns";
import { repoRoot } from "../support/pulumi";

// Real grype 0.121.2 output over the tests' Debian base (test/fixtures/grype/README.md says how it was made).
const fixture = readFileSync(join(repoRoot, "test", "fixtures", "grype", "base-scan.json"), "utf8");
const spec = JSON.parse(readFileSync(join(repoRoot, "test", "fixtures", "grype", "base-scan.spec.json"), "utf8")) as { entries: { id: string; package: string; fixedIn?: string; severity: string }[] };

describe("grype's JSON output", () => {
  const scan = parseGrypeOutput(fixture);

  it("gives package, installed version, fix and severity of each match, most severe first", () => {
    expect(scan.grypeVersion).toBe("0.121.2");
    expect(scan.database).toEqual({ built: "2026-11-30T06:00:00Z", schema: "v6.1.10" });
    expect(scan.matches.map((m) => m.severity)).toEqual(["Critical", "High", "Medium", "Medium", "Medium", "Low"]);
    const tor = scan.matches.find((m) => m.package === "tor")!;
    expect(tor).toEqual({ id: "CVE-2099-0001", package: "tor", installed: "0.4.9.11-0+deb12u1", fixedIn: ["0.4.9.99-1"], fixState: "fixed", severity: "High", type: "deb" });
    // zlib1g is found through its source package, zlib; the entry has no fix.
    expect(scan.matches[0]).toMatchObject({ id: "CVE-2099-0002", package: "zlib1g", fixedIn: [], fixState: "not-fixed", severity: "Critical" });
  });

  it("leaves out what the database says is fixed in the installed version or before", () => {
    // CVE-2099-0005 is fixed in tor 0.4.9.10-1, older than the base's 0.4.9.11.
    expect(spec.entries.some((e) => e.id === "CVE-2099-0005")).toBe(true);
    expect(scan.matches.some((m) => m.id === "CVE-2099-0005")).toBe(false);
  });

  it("lists a match once even when grype repeats it", () => {
    const doubled = JSON.parse(fixture);
    doubled.matches.push(doubled.matches[0]);
    expect(parseGrypeOutput(JSON.stringify(doubled)).matches).toHaveLength(scan.matches.length);
  });

  it("refuses what is not grype's output, saying what is wrong", () => {
    expect(() => parseGrypeOutput("not json", "grype's output for x")).toThrow(/grype's output for x is not JSON/);
    expect(() => parseGrypeOutput(JSON.stringify({ matches: [{}], descriptor: { name: "grype", version: "1" } }))).toThrow(/matches\.0\.vulnerability/);
    expect(() => parseGrypeOutput(JSON.stringify({ matches: [], descriptor: { name: "trivy", version: "1" } }))).toThrow(/descriptor\.name/);
  });

  it("drops the packages an image does not hold (a broker-mode image has no SSH server)", () => {
    const inImage = matchesInImage(scan.matches, ["openssh-server"]);
    expect(inImage.map((m) => m.package)).not.toContain("openssh-server");
    expect(inImage.map((m) => m.package)).toContain("openssh-client");
    expect(inImage).toHaveLength(scan.matches.length - 1);
  });
});

describe("exit status", () => {
  it("is one code per worst severity, 0 for none and 1 kept for errors", () => {
    const scan = parseGrypeOutput(fixture);
    expect(worstSeverity(scan.matches)).toBe("Critical");
    expect(exitStatusOf({ worst: "Critical" })).toBe(6);
    expect(exitStatusOf({ worst: "High" })).toBe(5);
    expect(exitStatusOf({ worst: "Low" })).toBe(3);
    expect(exitStatusOf({ worst: null })).toBe(0);
    expect(worstSeverity([])).toBeUndefined();
    const codes = Object.entries(EXIT_STATUS).filter(([k]) => k !== "Unknown").map(([, v]) => v);
    expect(new Set(codes).size).toBe(codes.length);
  });
});

describe("which image is judged", () => {
  const records = [
    { file: "a/111111111111.json", imageDigest: "1".repeat(64), mtimeMs: 1000 },
    { file: "a/222222222222.json", imageDigest: "2".repeat(64), mtimeMs: 3000 },
    { file: "a/333333333333.json", imageDigest: "3".repeat(64), mtimeMs: 2000 },
  ];
  it("is the image running.json names, even when newer ones were built", () => {
    expect(chooseImage("a", "1".repeat(64), records)).toEqual({ imageDigest: "1".repeat(64), source: "running", record: "a/111111111111.json" });
  });
  it("is the newest built one for a relay never found healthy", () => {
    expect(chooseImage("a", undefined, records)).toEqual({ imageDigest: "2".repeat(64), source: "latest-built", record: "a/222222222222.json" });
  });
  it("is a problem, named, when the running image has no SBOM record or nothing was built", () => {
    expect(chooseImage("a", "4".repeat(64), records)).toEqual({ problem: expect.stringMatching(/relay a runs image 444444444444 .*no SBOM record/) });
    expect(chooseImage("a", undefined, [])).toEqual({ problem: expect.stringMatching(/relay a has neither running.json nor an SBOM record/) });
  });
});

describe("the report", () => {
  const dir = mkdtempSync(join(tmpdir(), "vulns-report-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("is read back from artifacts/vulns/<stack>.json, and is undefined before any run", () => {
    expect(readVulnReport(dir, "fremont")).toBeUndefined();
    const report: VulnReport = {
      schema: "diskless-relays/vulns/v1",
      stack: "fremont",
      generatedAt: "2026-11-30T06:00:00.000Z",
      grypeVersion: "0.121.2",
      database: { built: "2026-11-30T00:00:00Z", schema: "v6.1.10" },
      relays: { "fmt-exit-1": { imageDigest: "1".repeat(64), imageSource: "running", sbom: "artifacts/relays/fmt-exit-1/111111111111.json", syftJson: "artifacts/sbom/base-debian-aaaaaaaaaaaa.syft.json", matches: parseGrypeOutput(fixture).matches, worst: "Critical" } },
      worst: "Critical",
    };
    mkdirSync(join(dir, "artifacts", "vulns"), { recursive: true });
    writeFileSync(vulnReportPath(dir, "fremont"), JSON.stringify(report));
    expect(readVulnReport(dir, "fremont")).toEqual(report);
  });

  it("refuses a file that is not a report, and stack names that are paths", () => {
    writeFileSync(vulnReportPath(dir, "other"), JSON.stringify({ relays: {} }));
    expect(() => readVulnReport(dir, "other")).toThrow(/is not a vulnerability report/);
    expect(() => checkStackName("../x")).toThrow(/--stack: "\.\.\/x" is not a stack name/);
    expect(() => checkStackName("..")).toThrow(/not a stack name/);
    expect(checkStackName("fremont-2")).toBe("fremont-2");
  });
});

describe("database age", () => {
  const now = new Date("2026-11-30T12:00:00Z");
  it("is said in hours, then days", () => {
    expect(describeAge("2026-11-30T09:00:00Z", now)).toBe("3 hours ago");
    expect(describeAge("2026-11-20T00:00:00Z", now)).toBe("10 days ago");
    expect(describeAge("2026-12-01T00:00:00Z", now)).toMatch(/future/);
  });
});
