/**
 * The package set the configured mirror would install into the Debian base
 * now, resolved at preview time so that a Debian update changes the base's
 * digest (lib/plan/image-inputs.ts) and with it every relay image.
 *
 * How: apt itself, in a private apt directory, asked the question mmdebstrap
 * asks (lib/image/package-index.ts essentialPattern and the base's --include list):
 * `apt-get update` verifies the mirror's signed indexes, `apt-get --simulate
 * install` names every package, version and architecture of the closure.
 * That costs seconds, so the answer is cached under the hashes of the
 * Packages indexes each suite's InRelease lists: a preview fetches only the
 * InRelease files (tens of kilobytes) and, while no index changed, reads the
 * cached answer. Each InRelease is verified first, as apt would (gpgv
 * against the source's keyrings, and its Valid-Until), so a forged or
 * replayed one cannot point the preview at an old answer; the build
 * (mmdebstrap, which verifies too) refuses a base whose packages differ
 * from the preview's (cli/steps/build-base.ts).
 *
 * I/O: fetches InRelease files over HTTP (in a child process, so the Pulumi
 * program stays synchronous), runs gpgv (and gpg --dearmor) and apt-get, reads and writes the cache
 * (DISKLESS_RELAYS_PACKAGE_CACHE, default $DISKLESS_RELAYS_CACHE/package-sets),
 * the stack's lock file, the relays' running records and base records, and
 * <buildRoot>/mirror-packages.json.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { readBaseRecord } from "./base-record";
import type { StackConfig } from "../config/config";
import {
  aptSourceLines,
  basePackageRequest,
  canonicalSet,
  describeChanges,
  essentialPattern,
  lockFileName,
  mirrorsOf,
  packageChanges,
  packagesIndexHashes,
  parseLock,
  parseRelease,
  parseSimulation,
  type PackageChange,
  type PackageLock,
} from "./package-index";
import { readRunningRecord } from "../steps/rollout-records";

/** Bad mirrors, lock files or package requests: the message names the field or file and what to do. */
export class PackageSetError extends Error {}

/** The architecture of every base (the relays are amd64 VMs). */
const BASE_ARCHITECTURE = "amd64";
/** The Debian base's package list, shared with images/debian/build-base.sh. */
const BASE_PACKAGES_FILE = "images/debian/base-packages";
const FETCH_TIMEOUT_MS = 10_000;

export interface PackageSetRequest {
  /** One-line apt sources as the base's inputs hold them (signed-by as configured). */
  sources: string[];
  /** mmdebstrap's SUITE: the suite whose essential set is installed. */
  release: string;
  architecture: string;
  include: string[];
}

export interface Resolution {
  packages: string[];
  /** When apt resolved this set (ISO 8601). */
  resolvedAt: string;
  /** The Packages indexes' hashes it was resolved from. */
  indexKey: string;
}

/** The project's cache (as lib/core/run.ts toolsBin and scripts/env.sh name it), or DISKLESS_RELAYS_PACKAGE_CACHE. */
const packageCacheDir = (env: NodeJS.ProcessEnv = process.env) =>
  env.DISKLESS_RELAYS_PACKAGE_CACHE ?? join(env.DISKLESS_RELAYS_CACHE ?? join(env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "diskless-relays"), "package-sets");

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

/** The request the base of this image config makes. */
export function packageSetRequest(config: Pick<StackConfig, "image">, projectDir: string, release: string): PackageSetRequest {
  return {
    sources: aptSourceLines(mirrorsOf(config.image, release)),
    release,
    architecture: BASE_ARCHITECTURE,
    include: basePackageRequest(readFileSync(join(projectDir, BASE_PACKAGES_FILE), "utf8"), config.image),
  };
}

/** The source lines with each signed-by keyring made absolute against the project directory: what apt and mmdebstrap get. */
export const absoluteSourceLines = (sources: string[], projectDir: string) =>
  sources.map((line) => line.replace(/\[signed-by=([^\]\s]+)\]/, (_, path: string) => `[signed-by=${isAbsolute(path) ? path : resolve(projectDir, path)}]`));

interface SourceLine {
  uri: string;
  suite: string;
  components: string[];
}

function parseSourceLine(line: string): SourceLine {
  const match = /^deb (?:\[[^\]]*\] )?(\S+) (\S+) (.+)$/.exec(line);
  if (!match) throw new Error(`not a one-line apt source: ${line}`);
  return { uri: match[1]!.replace(/\/+$/, ""), suite: match[2]!, components: match[3]!.split(" ") };
}

/** A fetch that failed: the mirror and why. */
interface Unreachable {
  uri: string;
  url: string;
  error: string;
}

/**
 * A node child fetches every URL at once with node's http and https modules
 * (which start several times faster than fetch); the program waits for it
 * (Pulumi programs here are synchronous). Up to three redirects are followed.
 */
const FETCH_CHILD = `
const [urls, timeout] = JSON.parse(process.argv[1]);
const get = (url, redirects) => new Promise((resolve) => {
  const client = url.startsWith("https:") ? require("https") : require("http");
  const request = client.get(url, { timeout }, (response) => {
    const status = response.statusCode;
    if (status >= 300 && status < 400 && response.headers.location && redirects < 3) {
      response.resume();
      return resolve(get(new URL(response.headers.location, url).href, redirects + 1));
    }
    if (status !== 200) { response.resume(); return resolve({ error: "HTTP " + status + " " + (response.statusMessage || "") }); }
    const chunks = [];
    response.on("data", (chunk) => chunks.push(chunk));
    response.on("end", () => resolve({ text: Buffer.concat(chunks).toString("utf8") }));
    response.on("error", (err) => resolve({ error: err.message }));
  });
  request.on("timeout", () => request.destroy(new Error("no answer within " + timeout / 1000 + " s")));
  request.on("error", (err) => resolve({ error: err.message || err.code }));
});
Promise.all(urls.map(async (url) => ({ url, ...(await get(url, 0)) }))).then((results) => process.stdout.write(JSON.stringify(results)));
`;

function fetchTexts(urls: string[]): ({ url: string; text: string } | { url: string; error: string })[] {
  const child = spawnSync(process.execPath, ["-e", FETCH_CHILD, JSON.stringify([urls, FETCH_TIMEOUT_MS])], { encoding: "utf8", maxBuffer: 256 << 20, timeout: FETCH_TIMEOUT_MS + 10_000 });
  if (child.status !== 0) return urls.map((url) => ({ url, error: `the fetch failed: ${child.error?.message ?? child.stderr.trim().split("\n").at(-1) ?? "no output"}` }));
  return JSON.parse(child.stdout) as ({ url: string; text: string } | { url: string; error: string })[];
}

/** The keyrings apt trusts for a source: its signed-by, else the host's (mmdebstrap's default too). */
function sourceKeyrings(signedBy: string | undefined): string[] {
  if (signedBy) return [signedBy];
  const legacy = "/etc/apt/trusted.gpg";
  const parts = "/etc/apt/trusted.gpg.d";
  return [
    ...(existsSync(legacy) && statSync(legacy).size > 0 ? [legacy] : []),
    ...(existsSync(parts) ? readdirSync(parts).filter((name) => /\.(gpg|asc)$/.test(name)).sort().map((name) => join(parts, name)) : []),
  ];
}

/**
 * The cache is keyed by what InRelease lists, so a preview trusts the
 * InRelease it fetched only as apt would: signed by one of the source's
 * keyrings (gpgv, armored keyrings dearmored first as apt does, in a private
 * directory that is also gpgv's home, so no other keyring counts) and not
 * past its Valid-Until. Without that, a forged or replayed InRelease could
 * point the preview at an old cached answer and keep a fix off the relays.
 */
function checkInReleases(files: { text: string; url: string; keyrings: string[]; trusted: string }[], now: Date): void {
  const work = mkdtempSync(join(tmpdir(), "diskless-relays-inrelease-"));
  try {
    const dearmored = new Map<string, string>();
    const binary = (keyring: string) => {
      if (!existsSync(keyring)) throw new PackageSetError(`image.mirrors: the keyring ${keyring} does not exist; set signedBy to the mirror's keyring`);
      if (!readFileSync(keyring).subarray(0, 64).toString("latin1").includes("-----BEGIN PGP")) return keyring;
      if (!dearmored.has(keyring)) {
        const out = join(work, `keyring-${dearmored.size}.gpg`);
        const result = spawnSync("gpg", ["--batch", "--quiet", "--homedir", work, "--output", out, "--dearmor", "--", keyring], { encoding: "utf8" });
        if (result.status !== 0) throw new PackageSetError(`image.mirrors: the keyring ${keyring} cannot be read: ${(result.error?.message ?? result.stderr).trim()}`);
        dearmored.set(keyring, out);
      }
      return dearmored.get(keyring)!;
    };
    files.forEach((file, i) => {
      const inRelease = join(work, `InRelease-${i}`);
      writeFileSync(inRelease, file.text);
      const keyrings = file.keyrings.map(binary);
      const verify = spawnSync("gpgv", ["--homedir", work, ...keyrings.flatMap((keyring) => ["--keyring", keyring]), "--", inRelease], { encoding: "utf8" });
      if (verify.error) throw new PackageSetError(`checking the mirror's signature needs gpgv: ${verify.error.message}`);
      if (verify.status !== 0) {
        const said = verify.stderr.trim().split("\n").filter((line) => /BAD|Can't check|no signature|No public key|not a detached|invalid/i.test(line)).join("; ") || `gpgv exited ${verify.status}`;
        throw new PackageSetError(
          `image.mirrors: ${file.url} is not signed by a key of ${file.trusted} (${said}); nothing is resolved from it. If the mirror's key is another, give its keyring as image.mirrors[].signedBy`,
        );
      }
      const validUntil = parseRelease(file.text).validUntil;
      if (validUntil !== undefined) {
        const until = Date.parse(validUntil.replace(/ UTC$/, " GMT"));
        if (!Number.isFinite(until)) throw new PackageSetError(`image.mirrors: ${file.url} has a Valid-Until apt cannot read either: ${JSON.stringify(validUntil)}`);
        if (until < now.getTime()) {
          throw new PackageSetError(`image.mirrors: ${file.url} expired at ${validUntil} (its Valid-Until): the mirror serves stale indexes, or someone replays old ones; use another mirror`);
        }
      }
    });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * The hashes of every Packages index the request depends on, from each
 * suite's InRelease; or the mirrors that could not be reached.
 */
function currentIndexKey(request: PackageSetRequest, options: { projectDir: string; now: Date }): { indexKey: string } | { unreachable: Unreachable[] } {
  const sources = request.sources.map(parseSourceLine);
  const urls = sources.map((source) => `${source.uri}/dists/${source.suite}/InRelease`);
  const results = fetchTexts(urls);
  // A 404 is an answer: the mirror has no such suite, which is usually image.release or image.mirrors mistyped.
  const why = (error: string, suite: string) => (/^HTTP 404\b/.test(error) ? `${error}: the mirror has no suite ${suite}; check image.release and image.mirrors` : error);
  const unreachable = results.flatMap((result, i) => ("error" in result ? [{ uri: sources[i]!.uri, url: result.url, error: why(result.error, sources[i]!.suite) }] : []));
  if (unreachable.length > 0) return { unreachable };
  const texts = results.map((result) => (result as { text: string }).text);
  checkInReleases(
    texts.map((text, i) => {
      const line = absoluteSourceLines([request.sources[i]!], options.projectDir)[0]!;
      const signedBy = /\[signed-by=([^\]\s]+)\]/.exec(line)?.[1];
      return { text, url: urls[i]!, keyrings: sourceKeyrings(signedBy), trusted: signedBy ?? "this host's apt keyrings (/etc/apt/trusted.gpg, /etc/apt/trusted.gpg.d)" };
    }),
    options.now,
  );
  const parts = results.map((result, i) => {
    const source = sources[i]!;
    const hashes = packagesIndexHashes(parseRelease((result as { text: string }).text), source.components, request.architecture);
    if (hashes.length === 0) throw new PackageSetError(`image.mirrors: ${urls[i]} lists no Packages index for ${source.components.join(", ")} on ${request.architecture}: check the suite and components`);
    return `${request.sources[i]}\n${hashes.join("\n")}`;
  });
  return { indexKey: sha256(parts.join("\n\n")) };
}

const requestDir = (request: PackageSetRequest, cacheDir: string) => join(cacheDir, sha256(JSON.stringify(request)).slice(0, 20));

function writeJson(file: string, value: unknown): void {
  writeFileSync(`${file}.tmp`, JSON.stringify(value, null, 1) + "\n");
  renameSync(`${file}.tmp`, file);
}

function readJson<T>(file: string): T | undefined {
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as T) : undefined;
}

/** The private apt configuration a resolution of this request left on this host (for apt-get download of its packages). */
export const aptConfigOf = (request: PackageSetRequest, cacheDir = packageCacheDir()) => join(requestDir(request, cacheDir), "apt", "apt.conf");

/** The last resolution of this request on this host, whatever the mirror serves now. */
const lastResolution = (request: PackageSetRequest, cacheDir = packageCacheDir()) => readJson<Resolution>(join(requestDir(request, cacheDir), "last.json"));

/** apt's own answer, in a private apt directory that persists between misses (apt then fetches only what changed). */
function aptResolve(request: PackageSetRequest, projectDir: string, dir: string): string[] {
  const aptDir = join(dir, "apt");
  for (const sub of ["etc/apt.conf.d", "etc/preferences.d", "etc/sources.list.d", "state/lists/partial", "cache/archives/partial"]) mkdirSync(join(aptDir, sub), { recursive: true });
  writeFileSync(join(aptDir, "status"), "");
  writeFileSync(join(aptDir, "etc/sources.list"), absoluteSourceLines(request.sources, projectDir).join("\n") + "\n");
  // apt's configuration syntax quotes values; the paths are this cache's own, the rest constants.
  const conf = [
    `Dir "${aptDir}/";`,
    `Dir::Etc "${aptDir}/etc/";`,
    `Dir::Etc::SourceList "${aptDir}/etc/sources.list";`,
    `Dir::Etc::SourceParts "${aptDir}/etc/sources.list.d";`,
    `Dir::Etc::Parts "${aptDir}/etc/apt.conf.d";`,
    `Dir::Etc::Preferences "${aptDir}/etc/preferences";`,
    `Dir::Etc::PreferencesParts "${aptDir}/etc/preferences.d";`,
    // The keyrings mmdebstrap trusts by default: the host's.
    `Dir::Etc::Trusted "/etc/apt/trusted.gpg";`,
    `Dir::Etc::TrustedParts "/etc/apt/trusted.gpg.d";`,
    `Dir::State "${aptDir}/state/";`,
    `Dir::State::status "${aptDir}/status";`,
    `Dir::Cache "${aptDir}/cache/";`,
    `APT::Architecture "${request.architecture}";`,
    `APT::Architectures "${request.architecture}";`,
    // As mmdebstrap configures apt (1.3.5, setup_apt): no Recommends, and apt not essential by itself.
    `APT::Install-Recommends "false";`,
    `pkgCacheGen::ForceEssential ",";`,
    `Acquire::Languages "none";`,
    `APT::Sandbox::User "root";`,
    `Debug::NoLocking "true";`,
  ].join("\n");
  writeFileSync(join(aptDir, "apt.conf"), conf + "\n");
  const env = { ...process.env, APT_CONFIG: join(aptDir, "apt.conf"), LC_ALL: "C.UTF-8" };
  const update = spawnSync("apt-get", ["-q", "update"], { env, encoding: "utf8", maxBuffer: 64 << 20 });
  const problems = (out: string) =>
    out
      .split("\n")
      .filter((line) => /^(E|W):/.test(line))
      .join("\n");
  if (update.error) throw new PackageSetError(`resolving the base's packages needs apt-get: ${update.error.message}`);
  const updateProblems = problems(`${update.stdout}\n${update.stderr}`);
  if (update.status !== 0 || /^E:/m.test(updateProblems) || /^W: (Failed to fetch|GPG error|The repository)/m.test(updateProblems)) {
    throw new PackageSetError(`image.mirrors: apt-get update failed:\n${updateProblems || update.stderr.trim()}`);
  }
  const simulate = spawnSync("apt-get", ["-q", "--simulate", "install", "--", essentialPattern(request.release, request.architecture), ...request.include], { env, encoding: "utf8", maxBuffer: 64 << 20 });
  if (simulate.status !== 0) {
    throw new PackageSetError(`apt cannot install the base's packages (${request.include.join(" ")}) from image.mirrors:\n${problems(`${simulate.stdout}\n${simulate.stderr}`) || simulate.stderr.trim()}`);
  }
  const packages = canonicalSet(parseSimulation(simulate.stdout));
  if (packages.length === 0) throw new PackageSetError(`apt would install nothing from image.mirrors for release ${request.release}: does the mirror carry the suite ${request.release}?`);
  return packages;
}

export type ResolveResult = (Resolution & { fromCache: boolean }) | { unreachable: Unreachable[] };

/**
 * What the mirror would install now: from the cache while no Packages index
 * changed, else from apt. An unreachable mirror is returned, not thrown: the
 * caller decides between an error and the last resolution.
 */
export function resolvePackageSet(request: PackageSetRequest, options: { projectDir: string; now: Date; cacheDir?: string }): ResolveResult {
  const dir = requestDir(request, options.cacheDir ?? packageCacheDir());
  const key = currentIndexKey(request, options);
  if ("unreachable" in key) return key;
  const cached = readJson<Resolution>(join(dir, "sets", `${key.indexKey}.json`));
  if (cached) {
    // The fallback for an unreachable mirror is the answer given last, also when it came from the cache.
    if (lastResolution(request, options.cacheDir)?.indexKey !== cached.indexKey) writeJson(join(dir, "last.json"), cached);
    return { ...cached, fromCache: true };
  }
  mkdirSync(join(dir, "sets"), { recursive: true });
  const resolution: Resolution = { packages: aptResolve(request, options.projectDir, dir), resolvedAt: options.now.toISOString(), indexKey: key.indexKey };
  writeJson(join(dir, "sets", `${key.indexKey}.json`), resolution);
  writeJson(join(dir, "last.json"), resolution);
  return { ...resolution, fromCache: false };
}

const describeUnreachable = (unreachable: Unreachable[]) => unreachable.map((u) => `${u.uri} (${u.url}: ${u.error})`).join("; ");

/** What the stack's base installs and why, with what preview should say about it. */
export interface BasePackagePlan {
  request: PackageSetRequest;
  /** The set the base's digest is made of: the lock's when held, else the mirror's. */
  packages: string[];
  /** Held by the stack's lock file. */
  held?: { file: string; resolvedAt: string };
  /** What the mirror serves now, when it could be asked. */
  mirror?: Resolution;
  /** Held: what a lift would change. */
  pending: PackageChange[];
  warnings: string[];
}

export function readLock(projectDir: string, stack: string): PackageLock | undefined {
  const file = join(projectDir, lockFileName(stack));
  if (!existsSync(file)) return undefined;
  try {
    return parseLock(readFileSync(file, "utf8"), lockFileName(stack));
  } catch (err) {
    throw new PackageSetError((err as Error).message);
  }
}

/**
 * The Debian base's package set for a plan: the lock file's when the stack
 * is held (preview then says what updates wait), else the mirror's now. A
 * mirror that cannot be reached is an error naming it, unless this host
 * resolved the same request before: then a warning says which set is used
 * and when it was resolved. Undefined for a flavour without apt (Alpine).
 */
export function planBasePackages(config: Pick<StackConfig, "image">, options: { projectDir: string; stack: string; release: string; now: Date; cacheDir?: string }): BasePackagePlan | undefined {
  if (config.image.flavour !== "debian") return undefined;
  const request = packageSetRequest(config, options.projectDir, options.release);
  const lock = readLock(options.projectDir, options.stack);
  const file = lockFileName(options.stack);
  const lift = `npm run packages -- update --stack ${options.stack}`;
  if (lock) {
    const sameRequest = JSON.stringify(lock.sources) === JSON.stringify(request.sources) && JSON.stringify(lock.request) === JSON.stringify(request.include);
    if (!sameRequest) {
      throw new PackageSetError(
        `${file} holds the base on a package set resolved for other apt sources or packages than image.mirrors and image.extraPackages now ask for: re-resolve it on purpose with ${lift}, or remove the hold with npm run packages -- unlock --stack ${options.stack}`,
      );
    }
    const held = { file, resolvedAt: lock.resolvedAt };
    // A held base does not depend on the mirror: a mirror that cannot be asked only leaves the pending updates unknown.
    let result: ResolveResult;
    try {
      result = resolvePackageSet(request, options);
    } catch (err) {
      if (!(err instanceof PackageSetError)) throw err;
      result = { unreachable: [{ uri: "image.mirrors", url: "apt", error: err.message }] };
    }
    if ("unreachable" in result) {
      return { request, packages: lock.packages, held, pending: [], warnings: [`base packages held by ${file} (resolved ${lock.resolvedAt}); cannot check for pending updates: ${describeUnreachable(result.unreachable)}`] };
    }
    const pending = packageChanges(lock.packages, result.packages);
    const count = `${pending.length} update${pending.length === 1 ? "" : "s"}`;
    const warnings = pending.length > 0 ? [`base packages held by ${file} (resolved ${lock.resolvedAt}): ${count} pending, not deployed: ${describeChanges(pending)}; lift with ${lift}`] : [];
    return { request, packages: lock.packages, held, mirror: result, pending, warnings };
  }
  const result = resolvePackageSet(request, options);
  if ("unreachable" in result) {
    const last = lastResolution(request, options.cacheDir);
    if (!last) {
      throw new PackageSetError(
        `image.mirrors: ${describeUnreachable(result.unreachable)}: the mirror cannot be reached, and this host never resolved the base's packages from it; preview needs its index to know what the base would install (check the network or image.mirrors)`,
      );
    }
    return {
      request,
      packages: last.packages,
      pending: [],
      warnings: [`image.mirrors: ${describeUnreachable(result.unreachable)}: cannot be reached; using the package set resolved at ${last.resolvedAt}`],
    };
  }
  return { request, packages: result.packages, mirror: result, pending: [], warnings: [] };
}

/**
 * The base packages a relay's running image was built with, from the build
 * host's records (the recipe names its base directory, relative to the
 * project); undefined when unknown.
 */
function runningBasePackages(relayDir: string, projectDir: string): string[] | undefined {
  // A record written before running records carried the recipe has none: its base is unknown, not an error.
  const recorded: unknown = (readRunningRecord(relayDir) as { recipe?: { baseDir?: unknown } } | undefined)?.recipe?.baseDir;
  const baseDir = typeof recorded === "string" ? resolve(projectDir, recorded) : undefined;
  if (!baseDir || !existsSync(join(baseDir, "base.json"))) return undefined;
  return canonicalSet(readBaseRecord(baseDir).packages);
}

/** Per relay whose running image this host knows: "RELAY: base: tor a → b" for a plan that changes its base's packages. */
export function relayPackageChanges(relays: { name: string; relayDir: string }[], packages: string[], projectDir: string): string[] {
  return relays.flatMap(({ name, relayDir }) => {
    const before = runningBasePackages(relayDir, projectDir);
    const changes = before ? packageChanges(before, packages) : [];
    return changes.length > 0 ? [`${name}: base: ${describeChanges(changes, 12)}`] : [];
  });
}

/** What the mirror served at the last plan on this host: status and vulns compare each relay's running base with it. */
const MIRROR_RECORD = "mirror-packages.json";

export interface MirrorRecord {
  resolvedAt: string;
  sources: string[];
  packages: string[];
}

export function writeMirrorRecord(buildRoot: string, record: MirrorRecord): void {
  if (existsSync(buildRoot)) writeJson(join(buildRoot, MIRROR_RECORD), record);
}

export const readMirrorRecord = (buildRoot: string) => readJson<MirrorRecord>(join(buildRoot, MIRROR_RECORD));

/**
 * Updates waiting for a relay: the packages the mirror served at the last
 * plan in another version than the base of the image it was last found
 * healthy on (running.json). Undefined when either is unknown on this host.
 */
export function pendingUpdates(relayDir: string, mirror: MirrorRecord | undefined, projectDir: string): { imageDigest: string; changes: PackageChange[]; asOf: string } | undefined {
  const imageDigest = readRunningRecord(relayDir)?.imageDigest;
  const running = runningBasePackages(relayDir, projectDir);
  if (!imageDigest || !running || !mirror) return undefined;
  return { imageDigest, changes: packageChanges(running, mirror.packages), asOf: mirror.resolvedAt };
}
