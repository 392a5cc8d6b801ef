/**
 * The Debian base's package set as data (lib/image/package-index.ts): apt's
 * simulation output, Release files, lock files, diffs, the default sources,
 * and the config's refusal of mirror values that would break an apt sources
 * line. Pure; test/unit/package-set.test.ts runs real apt against a real mirror.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, parseStackConfig } from "../../lib/config/config";
import { aptSourceLines, defaultMirrors, describeChanges, packageChanges, packagesIndexHashes, parseLock, parseRelease, parseSimulation, renderLock } from "../../lib/image/package-index";
import { minimalConfig } from "../support/images";
import { repoRoot } from "../support/pulumi";

describe("package index data", () => {
  it("reads apt's simulation lines, with and without a version being replaced", () => {
    const out = ["NOTE: This is only a simulation!", "Inst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64]) []", "Inst tor [0.4.9.10-1] (0.4.9.11-0+deb12u1 Debian-Security:12/oldstable-security [amd64])", "Conf tor (0.4.9.11-0+deb12u1 Debian [amd64])"].join("\n");
    expect(parseSimulation(out)).toEqual([
      { name: "libc6", version: "2.36-9+deb12u14", architecture: "amd64" },
      { name: "tor", version: "0.4.9.11-0+deb12u1", architecture: "amd64" },
    ]);
  });

  it("keys the cache by the Packages hashes a Release lists for the wanted components", () => {
    const release = parseRelease(["Date: Sat, 05 Dec 2026 18:00:00 UTC", "SHA256:", " aa 10 main/binary-amd64/Packages.xz", " bb 10 contrib/binary-amd64/Packages.xz", " cc 10 main/binary-arm64/Packages.xz"].join("\n"));
    expect(release.date).toBe("Sat, 05 Dec 2026 18:00:00 UTC");
    expect(packagesIndexHashes(release, ["main"], "amd64")).toEqual(["main/binary-amd64/Packages.xz aa"]);
  });

  it("writes and reads a lock file", () => {
    const lock = { resolvedAt: "2026-12-05T18:00:00.000Z", sources: ["deb http://deb.debian.org/debian bookworm main"], request: ["tor", "busybox"], packages: ["busybox 1:1.35.0-4+b3 amd64", "tor 0.4.9.11-1 amd64"] };
    expect(parseLock(renderLock("s", lock), "Pulumi.s.packages.lock")).toEqual(lock);
    expect(() => parseLock("# resolved x\ntor 1.0\n", "f.lock")).toThrow('f.lock line 2: not "name version architecture": "tor 1.0"');
  });

  it("says what changed: new versions, new and removed packages", () => {
    const changes = packageChanges(["a 1 amd64", "b 1 amd64", "c 1 all"], ["a 2 amd64", "c 1 all", "d 1 amd64"]);
    expect(changes.map((c) => describeChanges([c]))).toEqual(["a 1 → 2", "-b 1", "+d 1"]);
  });

  it("defaults to the release, its -updates and its -security suites", () => {
    expect(aptSourceLines(defaultMirrors("bookworm"))).toEqual([
      "deb http://deb.debian.org/debian bookworm main",
      "deb http://deb.debian.org/debian bookworm-updates main",
      "deb http://deb.debian.org/debian-security bookworm-security main",
    ]);
  });

  it("refuses mirror values that would break out of an apt sources line, naming the field", () => {
    const refused = (mirrors: unknown, image: Record<string, unknown> = {}) => {
      try {
        parseStackConfig(minimalConfig(undefined, { mirrors, ...image }));
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as Error).message;
      }
      throw new Error("accepted");
    };
    expect(refused([{ uri: "http://x/debian main [trusted=yes]", suites: ["bookworm"] }])).toContain("image.mirrors[0].uri: must be an http:// or https:// mirror URI");
    expect(refused([{ uri: "ftp://x/debian", suites: ["bookworm"] }])).toContain("image.mirrors[0].uri");
    expect(refused([{ uri: "http://x/debian", suites: ["-o"] }])).toContain("image.mirrors[0].suites[0]: must be a suite");
    expect(refused([{ uri: "http://x/debian", suites: ["bookworm"], components: ["main contrib"] }])).toContain("image.mirrors[0].components[0]");
    expect(refused([{ uri: "http://x/debian", suites: ["bookworm"], signedBy: "-x.gpg" }])).toContain("image.mirrors[0].signedBy");
    expect(refused([{ uri: "http://x/debian", suites: ["bookworm"] }], { flavour: "alpine" })).toContain("image.mirrors: only the debian flavour");
    expect(readFileSync(join(repoRoot, "images/debian/base-packages"), "utf8")).toContain("\ntor\n");
  });
});
