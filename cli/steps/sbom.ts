/** The SBOMs: Syft's inventory of the base, and each relay image's record of what it stands on. */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname } from "node:path";
import { readBuiltImage } from "../../lib/relay-build";
import { runTool } from "../../lib/run";
import type { StepSpec } from "../../lib/steps";

const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");

export function scanBaseSbom(spec: StepSpec<"scan-base-sbom">): void {
  mkdirSync(dirname(spec.stem), { recursive: true });
  const [syftJson, cdxJson] = [`${spec.stem}.syft.json`, `${spec.stem}.cdx.json`];
  runTool(
    "syft",
    ["scan", `dir:${spec.rootfs}`, "--quiet", "--source-name", `relay-base-${spec.flavour}`, "--source-version", spec.baseDigest.slice(0, 12), "-o", `syft-json=${syftJson}`, "-o", `cyclonedx-json=${cdxJson}`],
    { what: "syft", env: { ...process.env, SYFT_CHECK_FOR_APP_UPDATE: "false" } },
  );
  console.log(`sbom ${spec.stem}: ${sha256(syftJson)} syft-json, ${sha256(cdxJson)} cyclonedx-json`);
}

/**
 * A relay image's SBOM artifact: the base SBOMs it stands on (by digest) and
 * the overlay's file list (paths, modes and digests; never bytes).
 */
export function writeRelaySbom(spec: StepSpec<"write-relay-sbom">): void {
  const image = readBuiltImage(spec.image);
  const record = {
    schema: "diskless-relays/relay-sbom/v1",
    relay: spec.relay,
    nickname: spec.nickname,
    imageDigest: spec.imageDigest,
    iso: { name: image.isoName, sha256: image.isoSha256, bytes: image.isoBytes },
    uki: { sha256: image.ukiSha256, bytes: image.ukiBytes },
    base: {
      syftJson: { file: basename(spec.baseSyftJson), sha256: sha256(spec.baseSyftJson) },
      cyclonedxJson: { file: basename(spec.baseCycloneDxJson), sha256: sha256(spec.baseCycloneDxJson) },
    },
    // The base SBOMs list every package of the base; an image without the SSH server layer does not hold openssh-server's files.
    baseLayers: image.baseLayers,
    ...(image.baseLayers.includes("ssh.cpio.zst") ? {} : { withoutBasePackages: ["openssh-server"] }),
    overlay: JSON.parse(readFileSync(image.files, "utf8")) as unknown,
  };
  mkdirSync(dirname(spec.out), { recursive: true });
  writeFileSync(`${spec.out}.tmp`, JSON.stringify(record, null, 2) + "\n");
  renameSync(`${spec.out}.tmp`, spec.out);
  console.log(`sbom ${spec.out} (${statSync(spec.out).size} bytes)`);
}
