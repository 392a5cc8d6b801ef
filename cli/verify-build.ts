/**
 * npm run verify-build -- RELAY [IMAGE_DIGEST] [--artifacts DIR] [--signers FILE --signer ID] [--ovmf FILE] [--keep]
 *
 * Rebuilds a relay image from its published record (artifacts/relays/RELAY/
 * DIGEST12.json, lib/image/build-record.ts) in a fresh directory, with this
 * machine's tools and mirror, then compares what it built with what was
 * published: the base's packages and layers, the UKI, the ISO and, for an
 * SEV-SNP relay, the launch measurement (DIGEST12.snp.json). With --signers,
 * it first checks both documents' signatures (ssh-keygen -Y verify).
 *
 * One verdict line per artifact. Exit codes: 0 every artifact identical,
 * 1 something differs (or a signature is bad), 2 it cannot be verified here
 * (the mirror serves other packages, the image holds secrets, a file is
 * missing) or a usage error. It never says "identical" for what it did not
 * rebuild.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { basename, isAbsolute, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { packageDifferences, readBaseRecord } from "../lib/image/base-record";
import { relayAgentBinary } from "../lib/broker/broker-agent";
import { rebuildRecipe, unrebuildableReason, type BuildRecord } from "../lib/image/build-record";
import { buildRelayImage } from "../lib/image/relay-build";
import { parseStepSpec } from "../lib/steps/steps";
import { withToolsOnPath } from "../lib/core/paths";
import { verifySignature } from "../lib/image/signing";
import { expectedLaunchMeasurement } from "../lib/snp/launch-digest";
import { aptSourceLines, canonicalSet } from "../lib/image/package-index";
import { buildBase } from "./steps/build-base";
import { sha256File } from "../lib/core/digest";
import { relayArtifactsDir } from "../lib/config/build-layout";
import { DEFAULT_COMPRESS_LEVEL } from "../lib/config/config";

const USAGE = "usage: npm run verify-build -- RELAY [IMAGE_DIGEST] [--artifacts DIR] [--signers FILE --signer ID] [--ovmf FILE] [--keep]";

class Unverifiable extends Error {}

interface PublishedImage {
  iso: { name: string; sha256: string };
  uki: { sha256: string };
  build?: BuildRecord;
}

interface SnpDocument {
  uki: { sha256: string };
  iso?: { sha256: string };
  ovmf: { file: string; sha256: string };
  vcpus: number;
  vcpuType: string;
  policy?: string;
  measurement: string;
}


/** The record of IMAGE_DIGEST (a prefix of at least 12 hex digits), or the relay's newest one. */
function findRecord(dir: string, relay: string, digest: string | undefined): string {
  const relayDir = relayArtifactsDir(dir, relay);
  if (!existsSync(relayDir)) throw new Unverifiable(`${relayDir} does not exist: no image of relay ${relay} was published there (--artifacts names another directory)`);
  const records = readdirSync(relayDir).filter((file) => /^[0-9a-f]{12}\.json$/.test(file));
  if (digest) {
    if (!/^[0-9a-f]{12,64}$/.test(digest)) throw new Error(`IMAGE_DIGEST must be 12 to 64 lowercase hex digits, got "${digest}"`);
    const file = `${digest.slice(0, 12)}.json`;
    if (!records.includes(file)) throw new Unverifiable(`relay ${relay} has no published image ${digest.slice(0, 12)} in ${relayDir} (it has ${records.map((r) => r.slice(0, 12)).join(", ") || "none"})`);
    return join(relayDir, file);
  }
  const newest = records.map((file) => join(relayDir, file)).sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
  if (!newest) throw new Unverifiable(`relay ${relay} has no published image in ${relayDir}`);
  return newest;
}

/**
 * Which recorded packages this host's apt cannot find with their recorded
 * version and .deb digest: the mirror no longer serves them. A quick hint
 * before the rebuild; the rebuild's own package list decides.
 */
function missingFromMirror(record: BuildRecord): string[] | undefined {
  if (record.base.flavour !== "debian") return undefined;
  // "--": a published record is not trusted; none of its package names may become an apt option.
  const result = spawnSync("apt-cache", ["show", "--no-all-versions", "--", ...record.base.packages.map((p) => `${p.name}=${p.version}`)], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  if (result.error || result.status !== 0) return undefined;
  // apt-cache prints a stanza per version it knows, and nothing for one it does not.
  const served = new Map<string, string>();
  for (const stanza of result.stdout.split(/\n\n+/)) {
    const field = (name: string) => new RegExp(`^${name}: (.*)$`, "m").exec(stanza)?.[1];
    const [name, version, sha256] = [field("Package"), field("Version"), field("SHA256")];
    if (name && version) served.set(`${name}=${version}`, sha256 ?? "");
  }
  return record.base.packages.flatMap((p) => {
    const sha256 = served.get(`${p.name}=${p.version}`);
    if (sha256 === undefined) return [`${p.name} ${p.version}`];
    return sha256 && sha256 !== p.digest ? [`${p.name} ${p.version} (served with another digest)`] : [];
  });
}

function verdict(name: string, recorded: string, rebuilt: string): boolean {
  const same = recorded === rebuilt;
  console.log(same ? `${name.padEnd(12)} identical  ${rebuilt}` : `${name.padEnd(12)} DIFFERS    published ${recorded}, rebuilt ${rebuilt}`);
  return same;
}

export async function verifyBuild(argv: string[], projectDir = process.cwd()): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { artifacts: { type: "string", default: "artifacts" }, signers: { type: "string" }, signer: { type: "string" }, ovmf: { type: "string" }, keep: { type: "boolean", default: false } },
  });
  const [relay, digest, ...extra] = positionals;
  if (!relay || extra.length > 0 || Boolean(values.signers) !== Boolean(values.signer)) {
    console.error(USAGE);
    return 2;
  }
  const inProject = (path: string) => (isAbsolute(path) ? path : resolve(projectDir, path));
  const recordFile = findRecord(inProject(values.artifacts!), relay, digest);
  const published = JSON.parse(readFileSync(recordFile, "utf8")) as PublishedImage;
  const snpFile = recordFile.replace(/\.json$/, ".snp.json");
  const snp = existsSync(snpFile) ? (JSON.parse(readFileSync(snpFile, "utf8")) as SnpDocument) : undefined;
  console.log(`verifying ${basename(recordFile, ".json")} of relay ${relay} (${recordFile})`);

  let ok = true;
  if (values.signers) {
    for (const file of [recordFile, ...(snp ? [snpFile] : [])]) {
      const checked = verifySignature(file, inProject(values.signers), values.signer!);
      console.log(`${"signature".padEnd(12)} ${checked.ok ? "good      " : "BAD       "} ${basename(file)}: ${checked.message}`);
      ok &&= checked.ok;
    }
    if (!ok) return 1;
  } else console.log(`${"signature".padEnd(12)} not checked (pass --signers FILE --signer ID with the operator's published key)`);

  const record = published.build;
  if (!record) throw new Unverifiable(`${recordFile} has no build record: it was published before images recorded their inputs`);
  const reason = unrebuildableReason(record);
  if (reason) throw new Unverifiable(`cannot rebuild this image from its record: ${reason}`);
  const agent = relayAgentBinary();
  if (!existsSync(agent)) throw new Unverifiable(`${agent} is missing: run scripts/setup.sh, which builds the relay agent`);
  const agentSha256 = sha256File(agent);
  if (agentSha256 !== record.recipe.broker!.agentSha256) {
    throw new Unverifiable(`the relay agent built here (${agent}, ${agentSha256}) is not the one the image carries (${record.recipe.broker!.agentSha256}): build tools/broker at the same commit with the same Go release`);
  }
  const missing = missingFromMirror(record);
  if (missing === undefined) console.log(`${"mirror".padEnd(12)} not checked ahead (no apt-cache here, or not a Debian base): the rebuild's packages decide`);
  else if (missing.length > 0) throw new Unverifiable(`the mirror no longer serves ${missing.length} of the recorded packages (${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", …" : ""}); a snapshot mirror of the build's day would`);
  else console.log(`${"mirror".padEnd(12)} serves all ${record.base.packages.length} recorded packages`);

  const workRoot = inProject(join("build", "verify"));
  mkdirSync(workRoot, { recursive: true, mode: 0o700 });
  const work = mkdtempSync(join(workRoot, `${relay}-`));
  try {
    const baseDir = join(work, "base");
    const { flavour, release, geoip, extraPackages, torUser, sourceDateEpoch } = record.base;
    const compressLevel = record.base.compressLevel ?? DEFAULT_COMPRESS_LEVEL;
    console.log(`rebuilding the ${flavour} ${release} base (SOURCE_DATE_EPOCH ${sourceDateEpoch}, zstd -${compressLevel}) in ${baseDir}`);
    // The same sources, and the same package set: a mirror that has moved on stops the rebuild with the packages that differ.
    const sources = flavour === "debian" ? (record.base.sources ?? aptSourceLines([{ uri: "http://deb.debian.org/debian", suites: [release], components: ["main"] }])) : undefined;
    const packages = flavour === "debian" ? canonicalSet(record.base.packages) : undefined;
    // The record comes from elsewhere: its values pass the same schemas as the program's own steps before any tool sees them.
    await buildBase(parseStepSpec("build-base", { flavour, release, geoip, extraPackages, torUser, sourceDateEpoch, compressLevel, dir: baseDir, ...(sources ? { sources } : {}), ...(packages ? { packages } : {}) }));
    const rebuiltBase = readBaseRecord(baseDir);
    const differences = packageDifferences(record.base.packages, rebuiltBase.packages);
    if (differences.length > 0) throw new Unverifiable(`the mirror served other packages than the build's, so nothing can be compared:\n  ${differences.join("\n  ")}`);
    console.log(`${"packages".padEnd(12)} identical  ${rebuiltBase.packages.length} packages, names, versions and digests`);
    for (const [layer, sha] of Object.entries(record.base.layers)) ok = verdict(layer, sha, rebuiltBase.layers[layer] ?? "(not made)") && ok;

    const outDir = join(work, "image");
    const built = buildRelayImage(parseStepSpec("build-relay-image", rebuildRecipe(record, { baseDir, outDir, agentBinary: agent })), projectDir);
    ok = verdict("uki", published.uki.sha256, built.ukiSha256) && ok;
    ok = verdict("iso", published.iso.sha256, built.isoSha256) && ok;
    if (snp) {
      const ovmf = inProject(values.ovmf ?? snp.ovmf.file);
      if (!existsSync(ovmf)) throw new Unverifiable(`the OVMF the measurement is for is not at ${ovmf}: pass --ovmf FILE (its SHA-256 must be ${snp.ovmf.sha256})`);
      if (sha256File(ovmf) !== snp.ovmf.sha256) throw new Unverifiable(`${ovmf} is not the firmware the measurement is for (SHA-256 ${sha256File(ovmf)}, published ${snp.ovmf.sha256})`);
      ok = verdict("snp uki", snp.uki.sha256, built.ukiSha256) && ok;
      const measurement = expectedLaunchMeasurement({ ovmf: readFileSync(ovmf), kernel: readFileSync(built.uki), vcpus: snp.vcpus, vcpuType: snp.vcpuType });
      ok = verdict("measurement", snp.measurement, measurement) && ok;
    } else console.log(`${"measurement".padEnd(12)} none published (not an SEV-SNP relay)`);
  } finally {
    if (values.keep) console.log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
  console.log(ok ? "verdict: the rebuild is identical to what was published" : "verdict: the rebuild DIFFERS from what was published");
  return ok ? 0 : 1;
}

if (require.main === module) {
  // The builders (ukify, its stub, syft) are where scripts/setup.sh put them, whether or not scripts/env.sh was sourced.
  process.env.PATH = withToolsOnPath().PATH;
  verifyBuild(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: Error) => {
      console.error(err instanceof Unverifiable ? `cannot verify: ${err.message}` : `verify-build: ${err.message}`);
      process.exit(2);
    },
  );
}
