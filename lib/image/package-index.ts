/**
 * The Debian base's package set as data: the apt sources it comes from, the
 * package request mmdebstrap makes, what apt's index files say, what apt
 * would install, how two package sets differ, and the per-stack lock file
 * that holds a fleet on a recorded set. Pure: the I/O (fetching indexes,
 * running apt, the cache) is in lib/image/package-set.ts.
 */
import type { ImageConfig } from "../config/config";

export interface AptSource {
  uri: string;
  suites: string[];
  components: string[];
  signedBy?: string;
}

/** Debian's own: the release, its stable updates and its security updates. Without -security a base never gets a security fix. */
export function defaultMirrors(release: string): AptSource[] {
  return [
    { uri: "http://deb.debian.org/debian", suites: [release, `${release}-updates`], components: ["main"] },
    { uri: "http://deb.debian.org/debian-security", suites: [`${release}-security`], components: ["main"] },
  ];
}

export const mirrorsOf = (image: Pick<ImageConfig, "mirrors">, release: string): AptSource[] => image.mirrors ?? defaultMirrors(release);

/**
 * One-line apt source entries, one per suite: what mmdebstrap gets as its
 * MIRROR arguments and what the preview's private apt reads, so both see the
 * same archive. Every part is validated (lib/config/config.ts aptSourceSchema). A
 * signed-by keyring stays as configured (relative to the project), so the
 * base's digest does not depend on where the project is checked out;
 * lib/image/package-set.ts absoluteSourceLines resolves it for the tools.
 */
export function aptSourceLines(mirrors: AptSource[]): string[] {
  return mirrors.flatMap((mirror) => mirror.suites.map((suite) => `deb ${mirror.signedBy ? `[signed-by=${mirror.signedBy}] ` : ""}${mirror.uri} ${suite} ${mirror.components.join(" ")}`));
}

/** The base's packages besides Debian's essential set, in the order mmdebstrap gets them (--include). */
export function basePackageRequest(baseList: string, image: Pick<ImageConfig, "geoip" | "extraPackages">): string[] {
  const listed = baseList
    .split("\n")
    .map((line) => line.replace(/#.*/, "").trim())
    .filter(Boolean);
  return [...listed, ...(image.geoip ? ["tor-geoipdb"] : []), ...image.extraPackages];
}

/**
 * mmdebstrap's essential variant installs the Essential: yes packages of the
 * SUITE it is given (and only of that suite: an essential package's update
 * in -security arrives only when an included package needs it), with apt's
 * pattern for it (mmdebstrap 1.3.5, run_download, variant essential).
 */
export const essentialPattern = (suite: string, architecture: string) => `?narrow(?or(?archive(^${suite}$),?codename(^${suite}$)),?architecture(${architecture}),?essential)`;

export interface ResolvedPackage {
  name: string;
  version: string;
  architecture: string;
}

/** "tor 0.4.9.11-1 amd64": how a package is named in the base's inputs, diffs and the lock file. */
const packageLine = (p: ResolvedPackage) => `${p.name} ${p.version} ${p.architecture}`;

function parsePackageLine(line: string): ResolvedPackage {
  const [name, version, architecture, ...rest] = line.split(" ");
  if (!name || !version || !architecture || rest.length > 0) throw new Error(`not "name version architecture": ${JSON.stringify(line)}`);
  return { name, version, architecture };
}

/** A package set in its canonical form: one line per package, sorted, no duplicates. */
export const canonicalSet = (packages: ResolvedPackage[]) => [...new Set(packages.map(packageLine))].sort();

/**
 * What `apt-get --simulate install` would install: its "Inst NAME (VERSION
 * ARCHIVES [ARCH])" lines. A package listed twice (apt prints a package the
 * resolver revisits again) counts once, at its last version.
 */
export function parseSimulation(output: string): ResolvedPackage[] {
  const found = new Map<string, ResolvedPackage>();
  for (const line of output.split("\n")) {
    if (!line.startsWith("Inst ")) continue;
    const match = /^Inst (\S+) (?:\[\S+\] )?\((\S+) .*\[([a-z0-9-]+)\]\)/.exec(line);
    if (!match) throw new Error(`apt's simulation printed a line this program does not read: ${JSON.stringify(line)}`);
    const [, name, version, architecture] = match as unknown as [string, string, string, string];
    found.set(`${name}:${architecture}`, { name, version, architecture });
  }
  return [...found.values()];
}

export interface ReleaseIndex {
  /** The Date field (RFC 2822), when given. */
  date?: string;
  validUntil?: string;
  /** SHA256 section: path → hash, e.g. main/binary-amd64/Packages.xz. */
  sha256: Map<string, string>;
}

/** A Release or InRelease file (its OpenPGP armour is ignored here; apt checks it). */
export function parseRelease(text: string): ReleaseIndex {
  const sha256 = new Map<string, string>();
  let section = "";
  let date: string | undefined;
  let validUntil: string | undefined;
  for (const line of text.split("\n")) {
    if (line.startsWith("-----BEGIN PGP SIGNATURE")) break;
    if (/^\s/.test(line)) {
      if (section === "SHA256") {
        const [hash, , path] = line.trim().split(/\s+/);
        if (hash && path) sha256.set(path, hash);
      }
      continue;
    }
    const field = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
    if (!field) continue;
    section = field[1]!;
    if (section === "Date") date = field[2];
    if (section === "Valid-Until") validUntil = field[2];
  }
  return { ...(date ? { date } : {}), ...(validUntil ? { validUntil } : {}), sha256 };
}

/**
 * The hashes of the Packages indexes a source line's components list for an
 * architecture: what the package set depends on. A Release re-signed with a
 * new Date but the same Packages gives the same list.
 */
export function packagesIndexHashes(release: ReleaseIndex, components: string[], architecture: string): string[] {
  const wanted = components.flatMap((component) => ["", ".gz", ".xz", ".bz2", ".lzma", ".zst"].map((ext) => `${component}/binary-${architecture}/Packages${ext}`));
  const hashes = wanted.filter((path) => release.sha256.has(path)).map((path) => `${path} ${release.sha256.get(path)}`);
  return hashes;
}

export interface PackageChange {
  name: string;
  architecture: string;
  from?: string;
  to?: string;
}

/** How a package set changed, by package: new versions, new packages (no `from`), removed ones (no `to`). Sorted by name. */
export function packageChanges(before: string[], after: string[]): PackageChange[] {
  const index = (lines: string[]) => new Map(lines.map(parsePackageLine).map((p) => [`${p.name}:${p.architecture}`, p]));
  const [a, b] = [index(before), index(after)];
  const changes: PackageChange[] = [];
  for (const [key, p] of a) {
    const q = b.get(key);
    if (!q) changes.push({ name: p.name, architecture: p.architecture, from: p.version });
    else if (q.version !== p.version) changes.push({ name: p.name, architecture: p.architecture, from: p.version, to: q.version });
  }
  for (const [key, q] of b) if (!a.has(key)) changes.push({ name: q.name, architecture: q.architecture, to: q.version });
  return changes.sort((x, y) => x.name.localeCompare(y.name) || x.architecture.localeCompare(y.architecture));
}

/** "tor 0.4.9.11-1 → 0.4.9.12-1", "+libfoo 1.2", "-libbar 1.0". */
export function describeChange(change: PackageChange): string {
  if (change.from === undefined) return `+${change.name} ${change.to}`;
  if (change.to === undefined) return `-${change.name} ${change.from}`;
  return `${change.name} ${change.from} → ${change.to}`;
}

/** A short list for one line: the first few changes, then how many more. */
export function describeChanges(changes: PackageChange[], max = 6): string {
  const shown = changes.slice(0, max).map(describeChange);
  return changes.length > max ? `${shown.join(", ")} and ${changes.length - max} more` : shown.join(", ");
}

/**
 * The lock file of a stack (Pulumi.<stack>.packages.lock): the package set
 * its base is held on, with the sources and request it was resolved for.
 * Text, one package a line, so that a pull request shows a lift as a diff.
 */
export interface PackageLock {
  resolvedAt: string;
  sources: string[];
  request: string[];
  packages: string[];
}

export const lockFileName = (stack: string) => `Pulumi.${stack}.packages.lock`;

export function renderLock(stack: string, lock: PackageLock): string {
  return [
    `# The package set stack ${stack}'s base is held on: its base installs exactly these, whatever the mirror serves now.`,
    `# Lift the hold on purpose: npm run packages -- update --stack ${stack} (re-resolve now), or unlock (follow the mirror).`,
    `# resolved ${lock.resolvedAt}`,
    ...lock.sources.map((line) => `# source ${line}`),
    `# request ${lock.request.join(" ")}`,
    ...lock.packages,
    "",
  ].join("\n");
}

export function parseLock(text: string, file: string): PackageLock {
  const lock: PackageLock = { resolvedAt: "", sources: [], request: [], packages: [] };
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    const meta = /^# (resolved|source|request) (.*)$/.exec(line);
    if (meta) {
      if (meta[1] === "resolved") lock.resolvedAt = meta[2]!;
      else if (meta[1] === "source") lock.sources.push(meta[2]!);
      else lock.request = meta[2]!.split(" ").filter(Boolean);
      return;
    }
    if (line.startsWith("#")) return;
    try {
      parsePackageLine(line);
    } catch (err) {
      throw new Error(`${file} line ${i + 1}: ${(err as Error).message}`);
    }
    lock.packages.push(line);
  });
  if (lock.sources.length === 0 || lock.request.length === 0 || lock.packages.length === 0) {
    throw new Error(`${file}: names no source, request or package: write it with npm run packages -- lock`);
  }
  lock.packages = [...new Set(lock.packages)].sort();
  return lock;
}
