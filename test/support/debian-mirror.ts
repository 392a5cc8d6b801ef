/**
 * A local Debian mirror for tests: a pool of real .deb files, indexed by
 * dpkg-scanpackages, with a Release file signed by a throwaway OpenPGP key
 * (real gpg, verified by real apt), served over HTTP on loopback by a node
 * child process. Packages can be built from scratch (dpkg-deb -b) or
 * re-versioned from a real .deb (dpkg-deb -R, edit the control file, -b).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { gzipSync } from "node:zlib";
import { parseStackConfig } from "../../lib/config/config";
import { aptConfigOf, planBasePackages } from "../../lib/image/package-set";
import { BUILD_CACHE, minimalConfig } from "./images";
import { repoRoot } from "./pulumi";

function run(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): string {
  const result = spawnSync(command, args, { encoding: "utf8", maxBuffer: 256 << 20, ...options });
  if (result.error || result.status !== 0) throw new Error(`${command} ${args.join(" ")} failed: ${result.error?.message ?? result.stderr}`);
  return result.stdout;
}

export interface MirrorKey {
  /** The public keyring (binary), for image.mirrors[].signedBy. */
  keyring: string;
  gnupgHome: string;
}

/** gpg starts an agent for its secret keys; it is ended after each use, so no test leaves one behind. */
const stopAgent = (gnupgHome: string) => run("gpgconf", ["--kill", "gpg-agent"], { env: { ...process.env, GNUPGHOME: gnupgHome } });

/** A throwaway signing key, in its own GNUPGHOME. */
export function makeMirrorKey(dir: string): MirrorKey {
  const gnupgHome = join(dir, "gnupg");
  mkdirSync(gnupgHome, { recursive: true, mode: 0o700 });
  const env = { ...process.env, GNUPGHOME: gnupgHome };
  run("gpg", ["--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", "Test Mirror <mirror@example.net>", "ed25519", "sign", "never"], { env });
  const keyring = join(dir, "mirror-keyring.gpg");
  run("gpg", ["--batch", "--quiet", "--output", keyring, "--export", "mirror@example.net"], { env });
  stopAgent(gnupgHome);
  return { keyring, gnupgHome };
}

/** A minimal real .deb, made by dpkg-deb from a control file (and one file so it is not empty). */
export function buildDeb(outDir: string, control: Record<string, string>): string {
  const root = join(outDir, `.build-${control.Package}-${control.Version}`);
  mkdirSync(join(root, "DEBIAN"), { recursive: true });
  mkdirSync(join(root, "usr/share/doc", control.Package!), { recursive: true });
  writeFileSync(join(root, "usr/share/doc", control.Package!, "copyright"), "test package\n");
  const fields = { Architecture: "amd64", Maintainer: "Test <test@example.net>", Description: "test package", ...control };
  writeFileSync(join(root, "DEBIAN/control"), Object.entries(fields).map(([k, v]) => `${k}: ${v}`).join("\n") + "\n");
  const deb = join(outDir, `${control.Package}_${control.Version}_${fields.Architecture}.deb`);
  run("dpkg-deb", ["--root-owner-group", "-Zgzip", "-b", root, deb]);
  rmSync(root, { recursive: true, force: true });
  return deb;
}

/** A real .deb with a new version (and nothing else changed): dpkg-deb -R, the control file's Version, dpkg-deb -b. */
export function reversionDeb(deb: string, version: string, outDir: string): string {
  const root = join(outDir, `.reversion-${basename(deb)}`);
  rmSync(root, { recursive: true, force: true });
  run("dpkg-deb", ["-R", deb, root]);
  const controlFile = join(root, "DEBIAN/control");
  const control = readFileSync(controlFile, "utf8");
  if (!/^Version: /m.test(control)) throw new Error(`${deb} has no Version field`);
  writeFileSync(controlFile, control.replace(/^Version: .*$/m, `Version: ${version}`));
  const name = /^Package: (.*)$/m.exec(control)![1]!;
  const arch = /^Architecture: (.*)$/m.exec(control)![1]!;
  const out = join(outDir, `${name}_${version.replace(/^\d+:/, "")}_${arch}.deb`);
  run("dpkg-deb", ["--root-owner-group", "-b", root, out]);
  rmSync(root, { recursive: true, force: true });
  return out;
}

/**
 * (Re)writes the mirror in `dir` for one suite and component main, amd64:
 * copies `debs` into its pool (a package's file replaces one of the same name),
 * indexes the whole pool, and signs dists/SUITE/InRelease.
 */
export function writeMirror(dir: string, suite: string, debs: string[], key: MirrorKey, date = new Date(), validUntil?: Date): void {
  const pool = join(dir, "pool/main");
  mkdirSync(pool, { recursive: true });
  for (const deb of debs) copyFileSync(deb, join(pool, basename(deb)));
  const packages = run("dpkg-scanpackages", ["--multiversion", "pool/main"], { cwd: dir });
  const binary = join(dir, "dists", suite, "main/binary-amd64");
  mkdirSync(binary, { recursive: true });
  writeFileSync(join(binary, "Packages"), packages);
  writeFileSync(join(binary, "Packages.gz"), gzipSync(packages));
  const files = ["main/binary-amd64/Packages", "main/binary-amd64/Packages.gz"].map((path) => {
    const content = readFileSync(join(dir, "dists", suite, path));
    return { path, size: content.length, md5: createHash("md5").update(content).digest("hex"), sha256: createHash("sha256").update(content).digest("hex") };
  });
  const release = [
    "Origin: Test",
    "Label: Test",
    `Suite: ${suite}`,
    `Codename: ${suite}`,
    `Date: ${date.toUTCString().replace("GMT", "UTC")}`,
    ...(validUntil ? [`Valid-Until: ${validUntil.toUTCString().replace("GMT", "UTC")}`] : []),
    "Architectures: amd64",
    "Components: main",
    "Description: a local test mirror",
    "MD5Sum:",
    ...files.map((f) => ` ${f.md5} ${String(f.size).padStart(8)} ${f.path}`),
    "SHA256:",
    ...files.map((f) => ` ${f.sha256} ${String(f.size).padStart(8)} ${f.path}`),
  ].join("\n") + "\n";
  writeFileSync(join(dir, "dists", suite, "Release"), release);
  rmSync(join(dir, "dists", suite, "InRelease"), { force: true });
  run("gpg", ["--batch", "--quiet", "--yes", "--pinentry-mode", "loopback", "--passphrase", "", "--local-user", "mirror@example.net", "--clearsign", "--output", join(dir, "dists", suite, "InRelease"), join(dir, "dists", suite, "Release")], {
    env: { ...process.env, GNUPGHOME: key.gnupgHome },
  });
  stopAgent(key.gnupgHome);
  // apt's sandbox user reads the mirror through HTTP; the files need no more than the owner's rights.
  for (const entry of readdirSync(pool)) chmodSync(join(pool, entry), statSync(join(pool, entry)).mode | 0o444);
}

/**
 * The VM test's mirror: a fixed place, key and port, so that the bases built
 * from it (named after their sources and packages) are built once per
 * machine and package set, as the tests' default base is.
 */
export const UPDATES_MIRROR = { dir: join(BUILD_CACHE, "updates-mirror"), port: 39_401 };

/** The VM test mirror's key, made on first use. */
export function updatesMirrorKey(): MirrorKey {
  const keyring = join(UPDATES_MIRROR.dir, "mirror-keyring.gpg");
  if (!existsSync(keyring)) {
    rmSync(join(UPDATES_MIRROR.dir, "gnupg"), { recursive: true, force: true });
    mkdirSync(UPDATES_MIRROR.dir, { recursive: true, mode: 0o700 });
    return makeMirrorKey(UPDATES_MIRROR.dir);
  }
  return { keyring, gnupgHome: join(UPDATES_MIRROR.dir, "gnupg") };
}

/** A static HTTP server on 127.0.0.1 (on `port`, or any free one) for `dir`, in a child process (so a test's synchronous waits do not stall it). */
export async function serveMirror(dir: string, port = 0): Promise<{ url: string; stop: () => void; child: ChildProcess }> {
  const script = `
const http = require("http"), fs = require("fs"), path = require("path");
const root = process.argv[1];
const server = http.createServer((req, res) => {
  const file = path.join(root, decodeURIComponent(new URL(req.url, "http://x").pathname));
  if (!file.startsWith(root + path.sep)) { res.statusCode = 403; return res.end(); }
  fs.stat(file, (err, st) => {
    if (err || !st.isFile()) { res.statusCode = 404; return res.end(); }
    res.setHeader("Content-Length", st.size);
    res.setHeader("Last-Modified", st.mtime.toUTCString());
    if (req.method === "HEAD") return res.end();
    fs.createReadStream(file).pipe(res);
  });
});
server.listen(Number(process.argv[2]), "127.0.0.1", () => process.stdout.write(server.address().port + "\\n"));
`;
  const child = spawn(process.execPath, ["-e", script, dir, String(port)], { stdio: ["ignore", "pipe", "inherit"] });
  const listening = await new Promise<number>((resolve, reject) => {
    child.stdout!.once("data", (data: Buffer) => resolve(Number(data.toString().trim())));
    child.once("exit", (code) => reject(new Error(`the mirror's server exited (${code})`)));
  });
  return { url: `http://127.0.0.1:${listening}`, stop: () => child.kill(), child };
}

/**
 * The real .debs of the Debian base's closure as Debian's mirrors serve it
 * now (the set preview resolves for the default mirrors), downloaded once per
 * set by apt-get download into the tests' build cache.
 */
export function realBaseDebs(): { debs: string[]; packages: string[] } {
  const config = parseStackConfig(minimalConfig());
  const plan = planBasePackages(config, { projectDir: repoRoot, stack: "test-base", release: "bookworm", now: new Date() })!;
  const dir = join(BUILD_CACHE, "mirror-debs", createHash("sha256").update(plan.packages.join("\n")).digest("hex").slice(0, 12));
  if (!existsSync(join(dir, ".complete"))) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const wanted = plan.packages.map((line) => {
      const [name, version, arch] = line.split(" ");
      return `${name}:${arch}=${version}`;
    });
    run("apt-get", ["-q", "download", "--", ...wanted], { cwd: dir, env: { ...process.env, APT_CONFIG: aptConfigOf(plan.request) } });
    writeFileSync(join(dir, ".complete"), "");
  }
  const debs = readdirSync(dir).filter((file) => file.endsWith(".deb")).map((file) => join(dir, file));
  if (debs.length !== plan.packages.length) throw new Error(`${dir} holds ${debs.length} .debs for ${plan.packages.length} packages`);
  return { debs, packages: plan.packages };
}
