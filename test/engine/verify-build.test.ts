/**
 * Reproducible, verifiable builds. A broker-mode SEV-SNP image (no secret in
 * it) is built with the program's own builder and steps, its record and
 * measurement published and signed with an operator key. A second copy of
 * the project, at another path, runs `npm run verify-build` on the published
 * records alone: it rebuilds the base and the image from nothing in a fresh
 * directory and must find the UKI, the ISO, the base's layers and packages,
 * and the measurement identical. The negative cases stop before any rebuild:
 * a tampered record's signature, a package the mirror does not serve, an
 * image that holds keys.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderAgentConfig } from "../../lib/broker/broker-agent";
import { toolsBin } from "../../lib/core/paths";
import type { BuiltImage } from "../../lib/image/relay-build";
import { TEST_OVMF, TEST_OVMF_SHA256 } from "../support/broker";
import { makeTestKeys } from "../support/fleet";
import { BUILD_CACHE, buildRelayIso, debianBase, runStep } from "../support/images";
import { TestProject, toolEnv } from "../support/pulumi";
import { privateTmpDir } from "../support/tmp";

const BROKER = {
  url: "https://10.77.0.1:8443",
  signingPublicKey: Buffer.alloc(32, 7).toString("base64"),
  pushRecipient: "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
  attestation: "snp" as const,
  allowSimulatedAttestation: false,
  pushIntervalSeconds: 300,
};
const SIGNER = "operator@example.net";

describe("npm run verify-build", () => {
  const dir = privateTmpDir("verify-build");
  const relay = { name: "exit-1", nickname: "ExitOne", vmId: 100, mac: "52:54:00:00:00:01" };
  let built: BuiltImage;
  let first: BuiltImage;
  let verifier: TestProject;
  const published = join(dir, "published");
  const recordOf = (root: string) => join(root, "relays", relay.name, `${built.imageDigest.slice(0, 12)}.json`);

  beforeAll(() => {
    const base = debianBase();
    makeTestKeys(dir, [{ name: relay.name, nickname: relay.nickname, node: "local", vmId: relay.vmId, exit: true }]);
    const empty = join(dir, "collected-none");
    mkdirSync(empty, { recursive: true, mode: 0o700 });
    const agentBinary = execFileSync("sh", ["-c", "command -v relay-agent"], { encoding: "utf8", env: toolEnv() }).trim();
    const broker = (imageDigest: string) => ({ broker: { agentBinary, agentConfig: renderAgentConfig({ relay: relay.name, imageDigest, broker: BROKER, withCa: true }), caPem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" } });
    // Built twice from the same recipe: the second build must be the first, byte for byte.
    first = buildRelayIso(dir, base, relay, empty, join(dir, "first"), {}, broker);
    built = buildRelayIso(dir, base, relay, empty, join(dir, "second"), {}, broker);

    // The operator's signing key, and the allowed-signers line a volunteer keeps.
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", SIGNER, "-f", join(dir, "signing")]);
    writeFileSync(join(dir, "allowed_signers"), `${SIGNER} ${readFileSync(join(dir, "signing.pub"), "utf8").trim().split(" ").slice(0, 2).join(" ")}\n`);
    const syft = join(dir, "base.syft.json");
    writeFileSync(syft, "{}\n");
    const out = (suffix: string) => join(published, "relays", relay.name, `${built.imageDigest.slice(0, 12)}${suffix}`);
    const sbom = runStep("write-relay-sbom", { relay: relay.name, nickname: relay.nickname, imageDigest: built.imageDigest, baseSyftJson: syft, baseCycloneDxJson: syft, image: join(dir, "second"), out: out(".json"), signingKey: join(dir, "signing") });
    expect(sbom.status, sbom.stderr).toBe(0);
    const measure = runStep("measure-launch", { relay: relay.name, imageDigest: built.imageDigest, uki: built.uki, iso: built.iso, ovmf: TEST_OVMF, vcpus: 2, vcpuType: "EPYC-v4", policy: "0x20000", out: out(".snp.json"), signingKey: join(dir, "signing") });
    expect(measure.status, measure.stderr).toBe(0);
    verifier = new TestProject("verify-build");
  }, 900_000);
  afterAll(() => verifier?.destroy());

  /** The verifier's copy of what was published (a volunteer downloads it), changed by `edit`. */
  const publishTo = (name: string, edit: (record: any, snp: any) => void = () => undefined) => {
    const to = join(verifier.dir, name);
    cpSync(published, to, { recursive: true });
    const [recordFile, snpFile] = [recordOf(to), recordOf(to).replace(/\.json$/, ".snp.json")];
    const [record, snp] = [JSON.parse(readFileSync(recordFile, "utf8")), JSON.parse(readFileSync(snpFile, "utf8"))];
    edit(record, snp);
    writeFileSync(recordFile, JSON.stringify(record, null, 2) + "\n");
    writeFileSync(snpFile, JSON.stringify(snp, null, 1) + "\n");
    return to;
  };
  // A user's PATH: without the project's tool directory (npm run does not source scripts/env.sh).
  const userPath = { PATH: (process.env.PATH ?? "").split(":").filter((dir) => dir !== toolsBin()).join(":") };
  const verify = (artifacts: string, ...args: string[]) =>
    verifier.scriptAsyncWith(userPath, "cli/verify-build.ts", relay.name, built.imageDigest, "--artifacts", artifacts, "--ovmf", TEST_OVMF, ...args);

  it("builds the same recipe twice into the same UKI and ISO, byte for byte", () => {
    expect(built.ukiSha256).toBe(first.ukiSha256);
    expect(built.isoSha256).toBe(first.isoSha256);
    expect(built.isoName).toBe(first.isoName);
  });

  it("publishes one signed measurement document: UKI, ISO and OVMF digests, vCPUs, model, guest features and policy", () => {
    const snp = JSON.parse(readFileSync(recordOf(published).replace(/\.json$/, ".snp.json"), "utf8"));
    expect(snp).toMatchObject({ uki: { sha256: built.ukiSha256 }, iso: { sha256: built.isoSha256 }, ovmf: { sha256: TEST_OVMF_SHA256 }, vcpus: 2, vcpuType: "EPYC-v4", guestFeatures: "0x1", policy: "0x20000" });
    expect(snp.measurement).toMatch(/^[0-9a-f]{96}$/);
    const record = JSON.parse(readFileSync(recordOf(published), "utf8"));
    expect(record.build.base.sourceDateEpoch).toBe(1_767_225_600);
    expect(record.build.base.packages.find((p: any) => p.name === "tor")).toMatchObject({ version: expect.any(String), digest: expect.stringMatching(/^[0-9a-f]{64}$/) });
    // ssh-keygen itself checks the signatures, as a volunteer would.
    for (const file of [recordOf(published), recordOf(published).replace(/\.json$/, ".snp.json")]) {
      execFileSync("ssh-keygen", ["-Y", "verify", "-f", join(dir, "allowed_signers"), "-I", SIGNER, "-n", "diskless-relays-image", "-s", `${file}.sig`], { input: readFileSync(file) });
    }
  });

  it("records the base's packages as Syft's SBOM of it lists them: the same names and versions", () => {
    const record = JSON.parse(readFileSync(recordOf(published), "utf8"));
    const sbom = JSON.parse(execFileSync("syft", ["scan", `dir:${join(debianBase(), "rootfs")}`, "--quiet", "-o", "syft-json"], { encoding: "utf8", env: { ...toolEnv(), SYFT_CHECK_FOR_APP_UPDATE: "false" }, maxBuffer: 256 * 1024 * 1024 }));
    const fromSyft = new Set((sbom.artifacts as any[]).filter((a) => a.type === "deb").map((a) => `${a.name} ${a.version}`));
    const recorded = new Set((record.build.base.packages as any[]).map((p) => `${p.name} ${p.version}`));
    expect(fromSyft.size).toBeGreaterThan(50);
    expect([...recorded].filter((p) => !fromSyft.has(p))).toEqual([]);
    expect([...fromSyft].filter((p) => !recorded.has(p))).toEqual([]);
  }, 300_000);

  it("rebuilds the image in another copy of the project from the published records alone, and finds it identical", async () => {
    const result = await verify(publishTo("downloaded"), "--signers", join(dir, "allowed_signers"), "--signer", SIGNER);
    const text = result.stdout + result.stderr;
    expect(result.status, text).toBe(0);
    expect(text).toMatch(/signature +good/);
    expect(text).toMatch(/packages +identical/);
    for (const artifact of ["base.cpio.zst", "vmlinuz", "uki", "iso", "measurement"]) expect(text).toMatch(new RegExp(`^${artifact.replace(".", "\\.")} +identical`, "m"));
    expect(text).toContain(`uki          identical  ${built.ukiSha256}`);
    expect(text).toContain("verdict: the rebuild is identical to what was published");
    // The fresh directory is gone, and no build of the work tree's was read.
    expect(text).not.toContain(BUILD_CACHE);
  }, 900_000);

  it("refuses a record whose signature does not match, before rebuilding anything", async () => {
    const result = await verify(publishTo("tampered", (record) => (record.uki.sha256 = "0".repeat(64))), "--signers", join(dir, "allowed_signers"), "--signer", SIGNER);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/signature +BAD/);
    expect(result.stdout).not.toMatch(/rebuilding/);
  });

  it("says the mirror no longer serves a recorded package instead of passing", async () => {
    const result = await verify(publishTo("old-mirror", (record) => (record.build.base.packages.find((p: any) => p.name === "tor").version = "0.4.1.1-1")));
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/cannot verify: the mirror no longer serves 1 of the recorded packages \(tor 0\.4\.1\.1-1\)/);
    expect(result.stdout).not.toMatch(/identical/);
  });

  it("says an image that holds keys cannot be rebuilt by anyone but its key host", async () => {
    const result = await verify(publishTo("image-mode", (record) => delete record.build.recipe.broker));
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/cannot verify: cannot rebuild this image from its record: it is an image-mode image: it carries the relay's private keys/);
  });
});
