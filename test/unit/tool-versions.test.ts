/**
 * Each tool's version is pinned in one file, the one its build reads
 * (scripts/setup.sh reads them from there): the Pulumi CLI in
 * tools/pulumi/go.mod, grype and syft in tools/vulndb/go.mod, the provider
 * plugins in package.json. Where two ecosystems must pin the same version
 * (npm's Pulumi SDK and the Go-built CLI; a provider's npm SDK and the
 * plugin built for it), this test holds them together, with the installed
 * npm packages' own metadata as the oracle.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "../support/pulumi";

const text = (path: string) => readFileSync(join(repoRoot, path), "utf8");
const goModVersion = (file: string, module: string) => new RegExp(`${module.replace(/[./]/g, "\\$&")} v(\\S+)`).exec(text(file))?.[1];
const pkg = JSON.parse(text("package.json"));

describe("tool versions", () => {
  it("builds the Pulumi CLI at the version of the Pulumi SDK npm installs", () => {
    const sdk = JSON.parse(text("node_modules/@pulumi/pulumi/package.json")).version;
    expect(pkg.dependencies["@pulumi/pulumi"]).toBe(sdk);
    expect(goModVersion("tools/pulumi/go.mod", "github.com/pulumi/pulumi/pkg/v3")).toBe(sdk);
    expect(goModVersion("tools/pulumi/go.mod", "github.com/pulumi/pulumi/sdk/v3")).toBe(sdk);
  });

  it("builds each provider plugin at the version its npm SDK asks the engine for", () => {
    for (const name of ["@pulumi/command", "@muhlba91/pulumi-proxmoxve"]) {
      const installed = JSON.parse(text(`node_modules/${name}/package.json`));
      // The plugin version the SDK registers its resources with (package.json "pulumi.version"), which setup.sh builds.
      expect(pkg.dependencies[name], name).toBe(installed.pulumi.version);
    }
  });

  it("writes no version in scripts/setup.sh that another file pins", () => {
    const literal = [...text("scripts/setup.sh").matchAll(/^([A-Z_]+_VERSION)=[0-9]/gm)].map((m) => m[1]);
    expect(literal).toEqual(["ACTIONLINT_VERSION"]);
  });

  it("builds the Pulumi CLI and both provider plugins from one version of every module they share", () => {
    // Go's build cache reuses a compiled package only when it and everything it imports are the same versions:
    // one set of versions lets the plugins' builds reuse most of what the CLI's compiled. Two modules may differ:
    // the CLI's Pulumi follows npm's SDK while the bridge needs a newer one; tablewriter's v1 changed the API the CLI uses.
    const mayDiffer = new Set(["github.com/pulumi/pulumi/pkg/v3", "github.com/pulumi/pulumi/sdk/v3", "github.com/olekukonko/tablewriter"]);
    const versions = new Map<string, Map<string, string>>();
    for (const tool of ["pulumi", "command", "proxmoxve"]) {
      const listed = spawnSync("go", ["list", "-m", "all"], {
        cwd: join(repoRoot, "tools", tool),
        encoding: "utf8",
        // The set-up's prefetch leaves every go.mod of the graph in Go's module cache; a cache without them fetches them.
        env: { ...process.env, GOFLAGS: "-mod=readonly", GOTOOLCHAIN: "local", GOWORK: "off" },
      });
      expect(listed.status, listed.stderr).toBe(0);
      for (const [path, version] of listed.stdout.trim().split("\n").slice(1).map((line) => line.split(" "))) {
        if (!mayDiffer.has(path!) && version) versions.set(path!, (versions.get(path!) ?? new Map()).set(tool, version));
      }
    }
    const split = [...versions].filter(([, byTool]) => new Set(byTool.values()).size > 1).map(([path, byTool]) => `${path}: ${[...byTool].map(([tool, v]) => `${tool} ${v}`).join(", ")}`);
    expect(split).toEqual([]);
    expect(versions.get("google.golang.org/grpc")?.size).toBe(3);
  }, 600_000);
});
