/**
 * The package set preview resolves (lib/image/package-set.ts: real apt, asked what
 * mmdebstrap asks) is the one the real build installs: the base every test
 * shares is built by the program's own step from Debian's mirrors, and its
 * packages.tsv is read from the .debs it installed (dpkg-deb), not from apt.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parsePackageList } from "../../lib/image/base-record";
import { canonicalSet } from "../../lib/image/package-index";
import { debianBase, debianBaseInputs } from "../support/images";

describe("the Debian base's package set", () => {
  it("is, package for package, what the real build installed", () => {
    const inputs = debianBaseInputs();
    const built = canonicalSet(parsePackageList(readFileSync(join(debianBase(inputs), "packages.tsv"), "utf8")));
    expect(built.length).toBeGreaterThan(100);
    expect(built).toEqual(inputs.packages);
    // Debian's default sources: the release, its stable updates and its security updates.
    expect(inputs.sources).toEqual([
      "deb http://deb.debian.org/debian bookworm main",
      "deb http://deb.debian.org/debian bookworm-updates main",
      "deb http://deb.debian.org/debian-security bookworm-security main",
    ]);
  });
});
