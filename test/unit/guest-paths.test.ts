/**
 * The paths a booted relay's scripts use are defined once
 * (lib/image/guest-paths.ts): the base build writes them into the image as a
 * NAME=/path file, and every script sources that file. Here: busybox's own
 * shell reads the file back to exactly the table; every script that uses a
 * path sources the file from the one place the table names; and no file of
 * the image writes a path of the table itself.
 * (That the booted image finds its files is the VM tests' part.)
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { GUEST_PATHS, GUEST_PATHS_FILE, renderGuestPathsEnv } from "../../lib/image/guest-paths";
import { repoRoot } from "../support/pulumi";
import { privateTmpDir } from "../support/tmp";

const FILES = join(repoRoot, "images/rootfs/files");
const filesUnder = (dir: string): string[] => readdirSync(dir).flatMap((name) => (statSync(join(dir, name)).isDirectory() ? filesUnder(join(dir, name)) : [join(dir, name)]));
const imageFiles = () => filesUnder(FILES).map((file) => ({ name: relative(FILES, file), text: readFileSync(file, "utf8") }));
const scripts = () => imageFiles().filter((file) => file.text.startsWith("#!"));
const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

describe("the guest's paths", () => {
  it("read back, by busybox sh, to exactly the table", () => {
    const file = join(privateTmpDir("guest-paths"), "paths.env");
    writeFileSync(file, renderGuestPathsEnv());
    const names = Object.keys(GUEST_PATHS);
    const printed = spawnSync("busybox", ["sh", "-c", `. "$0"; for name in ${names.join(" ")}; do eval "printf '%s=%s\\n' \\"\\$name\\" \\"\\$$name\\""; done`, file], { encoding: "utf8" });
    expect(printed.status, printed.stderr).toBe(0);
    expect(Object.fromEntries(printed.stdout.trim().split("\n").map((line) => line.split("=", 2) as [string, string]))).toEqual(GUEST_PATHS);
  });

  it("refuse a path the shell would read as more than a path", () => {
    for (const path of ["/etc/relay/a b", "/etc/$(id)", "relative/path", "/etc/relay/'x'"]) {
      expect(() => renderGuestPathsEnv({ RELAY_X: path }), path).toThrow(/guest path RELAY_X: .* must be absolute and plain/);
    }
  });

  it("come from the paths file in every script that names one", () => {
    // Besides the paths: the tests' stand-ins for / and for the console.
    const testHooks = ["RELAY_ROOT", "RELAY_CONSOLE"];
    const variables = (text: string) => [...text.matchAll(/(?<=\$\{?)RELAY_[A-Z_]+/g)].map(([name]) => name);
    const uses = scripts().filter((file) => variables(file.text).some((name) => name in GUEST_PATHS));
    expect(uses.map((file) => file.name)).toEqual(expect.arrayContaining(["usr/local/sbin/relay-boot", "usr/local/sbin/relay-tor", "usr/local/sbin/relay-health"]));
    for (const file of uses) expect(file.text, file.name).toMatch(new RegExp(`^\\. "?(\\$root)?${escape(GUEST_PATHS_FILE)}"?$`, "m"));
    for (const file of scripts()) {
      for (const name of variables(file.text)) expect([...Object.keys(GUEST_PATHS), ...testHooks], `${file.name} uses $${name}`).toContain(name);
    }
  });

  it("are written out by no file of the image", () => {
    const second: string[] = [];
    for (const file of imageFiles()) {
      for (const [name, path] of Object.entries(GUEST_PATHS)) {
        // A path followed by a character that would continue it (/run/relay-agent is the agent's own) is another path.
        if (new RegExp(`${escape(path)}(?![A-Za-z0-9_.-])`).test(file.text)) second.push(`${file.name}: ${path} (${name})`);
      }
    }
    expect(second).toEqual([]);
  });
});
