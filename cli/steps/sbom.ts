/** The SBOMs: Syft's inventory of the base, and each relay image's record of what it stands on. */
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { readBaseRecord } from "../../lib/image/base-record";
import { buildRecordOf } from "../../lib/image/build-record";
import { readBuiltImage, RECIPE_RECORD } from "../../lib/image/relay-build";
import { publishSigned } from "../../lib/image/signing";
import { runTool } from "../../lib/core/run";
import { relayRecipeSpec, type StepSpec } from "../../lib/steps/steps";
import { sha256File } from "../../lib/core/digest";


export function scanBaseSbom(spec: StepSpec<"scan-base-sbom">): void {
  mkdirSync(dirname(spec.stem), { recursive: true });
  const [syftJson, cdxJson] = [`${spec.stem}.syft.json`, `${spec.stem}.cdx.json`];
  runTool(
    "syft",
    ["scan", `dir:${spec.rootfs}`, "--quiet", "--source-name", `relay-base-${spec.flavour}`, "--source-version", spec.baseDigest.slice(0, 12), "-o", `syft-json=${syftJson}`, "-o", `cyclonedx-json=${cdxJson}`],
    { what: "syft", env: { ...process.env, SYFT_CHECK_FOR_APP_UPDATE: "false" } },
  );
  console.log(`sbom ${spec.stem}: ${sha256File(syftJson)} syft-json, ${sha256File(cdxJson)} cyclonedx-json`);
}

/**
 * A relay image's SBOM artifact: the base SBOMs it stands on (by digest), the
 * overlay's file list (paths, modes and digests; never bytes), and the build
 * record anyone can rebuild a key-free image from (lib/image/build-record.ts).
 * Signed with the operator's key when the stack names one.
 */
export function writeRelaySbom(spec: StepSpec<"write-relay-sbom">): void {
  const image = readBuiltImage(spec.image);
  const recipe = relayRecipeSpec.parse(JSON.parse(readFileSync(join(spec.image, RECIPE_RECORD), "utf8")));
  const record = {
    schema: "diskless-relays/relay-sbom/v1",
    relay: spec.relay,
    nickname: spec.nickname,
    imageDigest: spec.imageDigest,
    iso: { name: image.isoName, sha256: image.isoSha256, bytes: image.isoBytes },
    uki: { sha256: image.ukiSha256, bytes: image.ukiBytes },
    base: {
      syftJson: { file: basename(spec.baseSyftJson), sha256: sha256File(spec.baseSyftJson) },
      cyclonedxJson: { file: basename(spec.baseCycloneDxJson), sha256: sha256File(spec.baseCycloneDxJson) },
    },
    // The base SBOMs list every package of the base; an image without the SSH server layer does not hold openssh-server's files.
    baseLayers: image.baseLayers,
    ...(image.baseLayers.includes("ssh.cpio.zst") ? {} : { withoutBasePackages: ["openssh-server"] }),
    overlay: JSON.parse(readFileSync(image.files, "utf8")) as unknown,
    build: buildRecordOf(recipe, readBaseRecord(recipe.baseDir)),
  };
  publishSigned(spec.out, JSON.stringify(record, null, 2) + "\n", spec.signingKey);
  console.log(`sbom ${spec.out} (${statSync(spec.out).size} bytes${spec.signingKey ? ", signed" : ""})`);
}
