/**
 * Option injection, with the real parts: mmdebstrap's, ukify's and
 * xorriso's own option parsers run on the program's image scripts, and the
 * real Pulumi engine runs `pulumi up` with the config: a release
 * "--setup-hook" and a build directory holding a shell command. Before, that
 * up ran `touch` as root: mmdebstrap took the release for an option and ran
 * the rootfs path (inside the build directory) with sh -c.
 */
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toolsBin, withToolsOnPath } from "../../lib/core/paths";
import { makeTestKeys, TEST_API_TOKEN, testStackConfig, type TestRelay } from "../support/fleet";
import { repoRoot, TestProject } from "../support/pulumi";
import { privateTmpDir } from "../support/tmp";

const RELAYS: TestRelay[] = [{ name: "exit-1", nickname: "InjectExitOne", node: "pve1", vmId: 9101, exit: true }];
const script = (name: string) => join(repoRoot, "images", name);

describe("the image scripts hand every value to their tools as a value", { timeout: 900_000 }, () => {
  const scratch = privateTmpDir("inject-scripts");

  it.each(["--setup-hook", "--dry-run"])("build-base.sh gives mmdebstrap the release %s as its suite: no hook runs, nothing appears outside the build directory", (release) => {
    const dir = join(scratch, `base ${release}`);
    mkdirSync(dir);
    const marker = join(dir, "marker");
    // The build directory: as a hook, mmdebstrap's sh -c would run the touch in it.
    const out = join(dir, `b;touch ${marker};#`);
    // The apt sources as the plan would write them for that release (lib/image/package-index.ts aptSourceLines), had its check been bypassed.
    const sources = join(scratch, `sources ${release}`);
    writeFileSync(sources, `deb http://deb.debian.org/debian ${release} main\n`);
    const result = spawnSync("bash", [script("debian/build-base.sh"), out, release, "no", "debian-tor"], {
      encoding: "utf8",
      env: { ...process.env, SOURCE_DATE_EPOCH: "1767225600", APT_SOURCES: sources },
      timeout: 300_000,
    });
    // No suite of that name: mmdebstrap stops at its apt update, having written the suite into the tree's sources.
    expect(result.status, result.stderr).not.toBe(0);
    expect(readFileSync(join(out, "rootfs", "etc", "apt", "sources.list"), "utf8")).toMatch(new RegExp(`^deb \\S+ ${release} main$`, "m"));
    expect(existsSync(marker)).toBe(false);
    // The marker's path has slashes, so the build directory is a few levels deep; nothing else is there.
    expect(readdirSync(dir)).toEqual([relative(dir, out).split("/")[0]]);
  });

  it("build-overlay.sh, build-uki.sh and build-iso.sh take paths that begin with - as paths (ukify signs with a key named -db.key)", () => {
    const dir = join(scratch, "relative");
    mkdirSync(dir);
    const run = (tool: string, args: string[]) => {
      const result = spawnSync(tool, args, { cwd: dir, encoding: "utf8", env: withToolsOnPath() });
      expect(result.status, `${tool} ${args.join(" ")}:\n${result.stdout}${result.stderr}`).toBe(0);
      return result.stdout;
    };
    // A base as build-base.sh leaves it, small: the EFI stub stands in for the kernel (ukify checks it is a PE image).
    mkdirSync(join(dir, "-base"));
    cpSync(join(toolsBin(), "linuxx64.efi.stub"), join(dir, "-base", "vmlinuz"));
    for (const layer of ["base.cpio.zst", "ssh.cpio.zst"]) writeFileSync(join(dir, "-base", layer), `${layer}\n`);
    writeFileSync(join(dir, "-base", "uname"), "6.1.0-test-amd64\n");
    writeFileSync(join(dir, "-base", "os-release"), 'ID=debian\nPRETTY_NAME="test"\n');
    writeFileSync(join(dir, "-base", ".complete"), "");
    mkdirSync(join(dir, "-staging", "etc", "relay"), { recursive: true });
    writeFileSync(join(dir, "-staging", "etc", "relay", "network.env"), "RELAY_NICKNAME=Test\n");
    run("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "./-db.key", "-out", "./-db.crt", "-days", "1", "-subj", "/CN=test db"]);

    run("bash", [script("build-overlay.sh"), "-staging", "-overlay.cpio"]);
    expect(run("cpio", ["-it", "-F", "./-overlay.cpio", "--quiet"]).split("\n")).toContain("etc/relay/network.env");
    run("bash", [script("build-uki.sh"), "-base", "yes", "-overlay.cpio", "console=ttyS0 panic=10", "-out", "-db.key", "-db.crt"]);
    run("sbverify", ["--cert", "./-db.crt", "./-out/relay.efi"]);
    // Debian's python3, where python3-pefile is (ukify reads PE files with it too).
    const sections = run("/usr/bin/python3", ["-c", "import pefile,sys\nfor s in pefile.PE(sys.argv[1]).sections:\n  print(s.Name.rstrip(b'\\0').decode(), s.get_data().rstrip(b'\\0').decode('latin1') if s.Name.startswith(b'.cmdline') else '')", "./-out/relay.efi"]);
    expect(sections).toMatch(/^\.cmdline rdinit=\/init console=ttyS0 panic=10$/m);
    writeFileSync(join(dir, "-relay.json"), '{"relay":"test"}\n');
    run("bash", [script("build-iso.sh"), "-out/relay.efi", "-relay.json", "-relay.iso"]);
    expect(run("xorriso", ["-indev", "./-relay.iso", "-ls", "/"])).toContain("'-relay.json'");
  });
});

describe("pulumi up with a release that is an option and a build directory that is a command", { timeout: 600_000 }, () => {
  let project: TestProject;
  const scratch = privateTmpDir("inject-up");
  const marker = join(scratch, "marker");
  const buildDir = join(scratch, `b;touch ${marker};#`);

  beforeAll(() => {
    project = new TestProject("inject");
    makeTestKeys(project.dir, RELAYS);
  });
  afterAll(() => project?.destroy());

  /** Every resource in the stack's state but the stack itself. */
  const registered = () => {
    const state = JSON.parse(project.must("stack", "export")) as { deployment: { resources?: { type: string }[] } };
    return (state.deployment.resources ?? []).filter((resource) => resource.type !== "pulumi:pulumi:Stack");
  };

  it("is refused at once, naming image.release; nothing is registered and nothing appears outside the build directory", async () => {
    const config = testStackConfig(RELAYS);
    project.configure({ ...config, image: { ...config.image, release: "--setup-hook" }, buildDir }, { proxmoxApiToken: TEST_API_TOKEN });
    const started = Date.now();
    const result = await project.runAsync("up", "--yes", "--skip-preview");
    const output = result.stdout + result.stderr;
    expect(result.status, output).not.toBe(0);
    expect(output).toMatch(/image\.release: must be a release or branch name .*mmdebstrap would read a leading - as an option/);
    expect(output).not.toMatch(/at \S+\.ts:\d+/);
    expect(existsSync(marker)).toBe(false);
    // Not even the build directory: the run stopped before any of it was made.
    expect(readdirSync(scratch)).toEqual([]);
    expect(registered()).toEqual([]);
    // Refused at plan time, not after a build was started.
    expect(Date.now() - started).toBeLessThan(120_000);
  });

  it("a preview names every value of the kind at once, with no resource planned", async () => {
    const config = testStackConfig(RELAYS);
    const relay = { ...config.relays[0]!, bridge: "-vmbr0", cpuType: "--help" };
    project.configure(
      {
        ...config,
        relays: [relay],
        image: { ...config.image, release: "--dry-run", extraPackages: ["-oAPT::Get::AllowUnauthenticated=true"], kernelCmdline: "console=ttyS0 panic=10\u00a0rdinit=/bin/sh" },
        buildDir: "./-b",
        keyStore: "-keys",
      },
      { proxmoxApiToken: TEST_API_TOKEN },
    );
    const result = await project.runAsync("preview", "--json");
    const output = result.stdout + result.stderr;
    expect(result.status, output).not.toBe(0);
    for (const field of ["image.release", "image.extraPackages[0]", "image.kernelCmdline", "relays[0].bridge", "relays[0].cpuType", "buildDir", "keyStore"]) {
      expect(output).toContain(`${field}: `);
    }
    expect(output).toContain("U+00A0 at character 23");
    const steps = (JSON.parse(result.stdout).steps ?? []) as { op: string; urn: string }[];
    expect(steps.filter((step) => !step.urn.includes("pulumi:pulumi:Stack"))).toEqual([]);
    expect(existsSync(join(project.dir, "-b"))).toBe(false);
  });
});
