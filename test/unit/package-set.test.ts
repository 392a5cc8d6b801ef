/**
 * The Debian base's package set, resolved by real apt from a real (local,
 * signed) mirror: what it installs, when the cache answers, what an
 * unreachable mirror and a held set do. The mirror's packages are real .debs
 * made by dpkg-deb; the expected sets are what this test put on the mirror.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseStackConfig } from "../../lib/config/config";
import { aptSourceLines, describeChanges, lockFileName, packageChanges, renderLock } from "../../lib/image/package-index";
import { planBasePackages, resolvePackageSet, type PackageSetRequest } from "../../lib/image/package-set";
import { buildDeb, makeMirrorKey, serveMirror, writeMirror, type MirrorKey } from "../support/debian-mirror";
import { minimalConfig } from "../support/images";

describe("the base's package set", () => {
  let dir: string;
  let key: MirrorKey;
  let mirrorDir: string;
  let server: Awaited<ReturnType<typeof serveMirror>>;
  let debs: Record<string, string>;
  /** A project with a base package list of its own: tor alone. */
  let projectDir: string;

  const request = (uri: string, cache = "c"): [PackageSetRequest, { projectDir: string; now: Date; cacheDir: string }] => [
    { sources: aptSourceLines([{ uri, suites: ["bookworm"], components: ["main"], signedBy: key.keyring }]), release: "bookworm", architecture: "amd64", include: ["tor"] },
    { projectDir, now: new Date(), cacheDir: join(dir, cache) },
  ];
  const config = (uri: string, signedBy: string | undefined = key.keyring) =>
    parseStackConfig(minimalConfig(undefined, { mirrors: [{ uri, suites: ["bookworm"], ...(signedBy ? { signedBy } : {}) }] }));
  const plan = (uri: string, stack: string, cache: string) => planBasePackages(config(uri), { projectDir, stack, release: "bookworm", now: new Date(), cacheDir: join(dir, cache) })!;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "package-set-"));
    key = makeMirrorKey(dir);
    const made = join(dir, "debs");
    mkdirSync(made);
    debs = {
      essential: buildDeb(made, { Package: "base-a", Version: "1.0", Essential: "yes", Priority: "required" }),
      libx: buildDeb(made, { Package: "libx", Version: "1.0" }),
      tor: buildDeb(made, { Package: "tor", Version: "0.4.9.11-1", Depends: "libx (>= 1.0)" }),
      other: buildDeb(made, { Package: "other", Version: "1.0" }),
      torNew: buildDeb(made, { Package: "tor", Version: "0.4.9.12-1", Depends: "libx (>= 1.0)" }),
    };
    mirrorDir = join(dir, "mirror");
    writeMirror(mirrorDir, "bookworm", [debs.essential!, debs.libx!, debs.tor!, debs.other!], key);
    server = await serveMirror(mirrorDir);
    projectDir = join(dir, "project");
    mkdirSync(join(projectDir, "images/debian"), { recursive: true });
    writeFileSync(join(projectDir, "images/debian/base-packages"), "# the test's base\ntor\n");
  });
  afterAll(() => {
    server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("is what apt would install: the suite's essential packages and the closure of the request, nothing else", () => {
    const result = resolvePackageSet(...request(server.url));
    if ("unreachable" in result) throw new Error(JSON.stringify(result));
    expect(result.packages).toEqual(["base-a 1.0 amd64", "libx 1.0 amd64", "tor 0.4.9.11-1 amd64"]);
    expect(result.fromCache).toBe(false);
  });

  it("is answered from the cache while the mirror's Packages index is the same, even in a re-signed Release", () => {
    expect(resolvePackageSet(...request(server.url))).toMatchObject({ fromCache: true, packages: ["base-a 1.0 amd64", "libx 1.0 amd64", "tor 0.4.9.11-1 amd64"] });
    writeMirror(mirrorDir, "bookworm", [], key, new Date(Date.now() - 3_600_000));
    expect(resolvePackageSet(...request(server.url))).toMatchObject({ fromCache: true });
  });

  it("trusts an InRelease only as apt does: signed by the source's keyring, unaltered, and not past its Valid-Until", () => {
    const [req, options] = request(server.url, "trust");
    expect(resolvePackageSet(req, options)).toMatchObject({ fromCache: false });
    const inRelease = join(mirrorDir, "dists/bookworm/InRelease");
    const good = readFileSync(inRelease, "utf8");
    try {
      // Signed by another key: refused, naming the index and the keyring, though the cache holds an answer for these very hashes.
      writeMirror(mirrorDir, "bookworm", [], makeMirrorKey(join(dir, "other-key")));
      expect(() => resolvePackageSet(req, options)).toThrow(new RegExp(`image\\.mirrors: ${server.url}/dists/bookworm/InRelease is not signed by a key of ${key.keyring}`));
      // Altered after signing (an index hash changed): refused.
      writeFileSync(inRelease, good.replace(/^( [0-9a-f]{64}) /m, (_, hash: string) => ` ${hash.slice(0, -1)}${hash.endsWith("0") ? "1" : "0"} `));
      expect(() => resolvePackageSet(req, options)).toThrow(/is not signed by a key of .*BAD signature/);
      // Validly signed, but expired: an old index replayed.
      writeMirror(mirrorDir, "bookworm", [], key, new Date(Date.now() - 10 * 86_400_000), new Date(Date.now() - 3 * 86_400_000));
      expect(() => resolvePackageSet(req, options)).toThrow(/InRelease expired at .* \(its Valid-Until\): the mirror serves stale indexes, or someone replays old ones/);
      // Negative control: the same index with a Valid-Until ahead is answered, from the cache.
      writeMirror(mirrorDir, "bookworm", [], key, new Date(), new Date(Date.now() + 7 * 86_400_000));
      expect(resolvePackageSet(req, options)).toMatchObject({ fromCache: true });
    } finally {
      writeMirror(mirrorDir, "bookworm", [], key);
    }
  });

  it("changes when the mirror gains a newer tor, and the change names it", () => {
    const [req, options] = request(server.url, "update");
    const before = resolvePackageSet(req, options);
    writeMirror(mirrorDir, "bookworm", [debs.torNew!], key);
    const after = resolvePackageSet(req, options);
    if ("unreachable" in before || "unreachable" in after) throw new Error("unreachable");
    expect(after.fromCache).toBe(false);
    expect(after.packages).toContain("tor 0.4.9.12-1 amd64");
    expect(describeChanges(packageChanges(before.packages, after.packages))).toBe("tor 0.4.9.11-1 → 0.4.9.12-1");
  });

  it("refuses a mirror signed by a key apt does not trust", () => {
    const unsigned = parseStackConfig(minimalConfig(undefined, { mirrors: [{ uri: server.url, suites: ["bookworm"] }] }));
    expect(() => planBasePackages(unsigned, { projectDir, stack: "s", release: "bookworm", now: new Date(), cacheDir: join(dir, "untrusted") })).toThrow(
      /image\.mirrors: http:\S+\/dists\/bookworm\/InRelease is not signed by a key of this host's apt keyrings \(\/etc\/apt\/trusted\.gpg, \/etc\/apt\/trusted\.gpg\.d\) \(.*No public key.*\); nothing is resolved from it/,
    );
  });

  it("names an unreachable mirror; after one resolution it warns which set it uses and when it was resolved", async () => {
    const other = await serveMirror(mirrorDir);
    let first: ReturnType<typeof plan>;
    try {
      first = plan(other.url, "s", "offline");
    } finally {
      other.stop();
      await new Promise((resolve) => other.child.once("exit", resolve));
    }
    const offline = plan(other.url, "s", "offline");
    expect(offline.packages).toEqual(first.packages);
    expect(offline.warnings).toEqual([expect.stringContaining(`image.mirrors: ${other.url} (`)]);
    expect(offline.warnings[0]).toContain(`cannot be reached; using the package set resolved at ${first.mirror!.resolvedAt}`);
    expect(() => plan(other.url, "s", "never")).toThrow(new RegExp(`image\\.mirrors: ${other.url.replace(/\./g, "\\.")} \\(.*the mirror cannot be reached, and this host never resolved`));
  });

  it("says a suite the mirror does not carry is missing, not that the mirror is down", () => {
    const [req, options] = request(server.url, "nosuch");
    const result = resolvePackageSet({ ...req, sources: req.sources.map((line) => line.replace(" bookworm ", " bookwrom ")) }, options);
    expect(result).toEqual({ unreachable: [expect.objectContaining({ error: "HTTP 404 Not Found: the mirror has no suite bookwrom; check image.release and image.mirrors" })] });
  });

  it("holds a stack on its lock file: the held set is the base's, and preview says what updates wait", () => {
    // The mirror now serves tor 0.4.9.12-1 (the test before added it); the lock holds 0.4.9.11-1.
    const followed = plan(server.url, "held", "lock");
    const held = followed.packages.map((line) => line.replace("tor 0.4.9.12-1", "tor 0.4.9.11-1"));
    const lock = { resolvedAt: "2026-12-01T00:00:00.000Z", sources: followed.request.sources, request: followed.request.include, packages: held };
    writeFileSync(join(projectDir, lockFileName("held")), renderLock("held", lock));
    const result = plan(server.url, "held", "lock");
    expect(result.packages).toEqual(held);
    expect(result.held).toEqual({ file: "Pulumi.held.packages.lock", resolvedAt: lock.resolvedAt });
    expect(result.warnings).toEqual([
      "base packages held by Pulumi.held.packages.lock (resolved 2026-12-01T00:00:00.000Z): 1 update pending, not deployed: tor 0.4.9.11-1 → 0.4.9.12-1; lift with npm run packages -- update --stack held",
    ]);
    // A lock made for other sources is not silently applied to these.
    writeFileSync(join(projectDir, lockFileName("other")), renderLock("other", { ...lock, sources: ["deb http://deb.debian.org/debian bookworm main"] }));
    expect(() => plan(server.url, "other", "lock")).toThrow(/^Pulumi\.other\.packages\.lock holds the base on a package set resolved for other apt sources .* npm run packages -- update --stack other/);
  });
});
