/**
 * A base build's record (base.json in its directory, and in every relay
 * image's published record): the inputs it was built from, the packages the
 * mirror served (names, versions, digests) and the digests of the layers it
 * made. What anyone needs to rebuild it and compare (cli/verify-build.ts).
 * I/O: readBaseRecord and writeBaseRecord read and write the base directory.
 */
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { StepSpec } from "../steps/steps";
import { sha256File } from "../core/digest";

export const BASE_RECORD = "base.json";
/** The files of a base build that go into images, by name. */
const BASE_LAYERS = ["vmlinuz", "base.cpio.zst", "ssh.cpio.zst"] as const;

export interface BasePackage {
  name: string;
  version: string;
  architecture: string;
  /** SHA-256 of the .deb (Debian), or apk-Q1… (Alpine's checksum of the package). */
  digest: string;
}

export interface BaseRecord {
  schema: "diskless-relays/base/v1";
  flavour: StepSpec<"build-base">["flavour"];
  release: string;
  geoip: boolean;
  extraPackages: string[];
  torUser: string;
  sourceDateEpoch: number;
  /** zstd's level for the RAM root; records before it was kept were made at 19 (DEFAULT_COMPRESS_LEVEL). */
  compressLevel?: number;
  /** Debian: the apt sources it was built from (one-line entries); records before these were kept came from the release alone. */
  sources?: string[];
  kernel: string;
  layers: Record<string, string>;
  packages: BasePackage[];
}

/** packages.tsv as the base scripts write it: name, version, architecture, digest; tab-separated, sorted. */
export function parsePackageList(tsv: string): BasePackage[] {
  return tsv
    .split("\n")
    .filter(Boolean)
    .map((line, i) => {
      const [name, version, architecture, digest, ...rest] = line.split("\t");
      if (!name || !version || !architecture || !digest || rest.length > 0) throw new Error(`packages.tsv line ${i + 1} is not name, version, architecture and digest: ${JSON.stringify(line)}`);
      return { name, version, architecture, digest };
    });
}

/** What differs between two package sets, one line per package ("tor: 0.4.9.11-1~d12.1 recorded, 0.4.9.12-1 now"). */
export function packageDifferences(recorded: BasePackage[], now: BasePackage[]): string[] {
  const index = (list: BasePackage[]) => new Map(list.map((p) => [`${p.name}:${p.architecture}`, p]));
  const [a, b] = [index(recorded), index(now)];
  const lines: string[] = [];
  for (const [key, p] of a) {
    const q = b.get(key);
    if (!q) lines.push(`${p.name}: ${p.version} recorded, not installed now`);
    else if (q.version !== p.version) lines.push(`${p.name}: ${p.version} recorded, ${q.version} now`);
    else if (q.digest !== p.digest) lines.push(`${p.name} ${p.version}: the package's digest differs (${p.digest.slice(0, 16)}… recorded, ${q.digest.slice(0, 16)}… now)`);
  }
  for (const [key, q] of b) if (!a.has(key)) lines.push(`${q.name}: not recorded, ${q.version} installed now`);
  return lines.sort();
}


/** Writes base.json into a finished base build directory. */
export function writeBaseRecord(spec: StepSpec<"build-base">): BaseRecord {
  const { flavour, release, geoip, extraPackages, torUser, sourceDateEpoch, compressLevel, sources, dir } = spec;
  const record: BaseRecord = {
    schema: "diskless-relays/base/v1",
    flavour,
    release,
    geoip,
    extraPackages,
    torUser,
    sourceDateEpoch,
    compressLevel,
    ...(sources ? { sources } : {}),
    kernel: readFileSync(join(dir, "uname"), "utf8").trim(),
    layers: Object.fromEntries(BASE_LAYERS.map((layer) => [layer, sha256File(join(dir, layer))])),
    packages: parsePackageList(readFileSync(join(dir, "packages.tsv"), "utf8")),
  };
  writeFileSync(join(dir, `${BASE_RECORD}.tmp`), JSON.stringify(record, null, 1) + "\n");
  renameSync(join(dir, `${BASE_RECORD}.tmp`), join(dir, BASE_RECORD));
  return record;
}

export function readBaseRecord(dir: string): BaseRecord {
  return JSON.parse(readFileSync(join(dir, BASE_RECORD), "utf8")) as BaseRecord;
}
