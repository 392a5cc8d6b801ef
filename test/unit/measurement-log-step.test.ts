/**
 * The log-measurement step (cli/steps/log-measurement.ts): one image's launch
 * goes into the public measurement log as a commit that git itself verifies
 * against the signers file written beside the log, with the values of the
 * signed measurement document and the build record's SHA-256 as sha256sum
 * computes it. Oracles: git (verify-commit, show), OpenSSH's ssh-keygen (the key),
 * coreutils' sha256sum.
 */
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseStepOutput } from "../../lib/steps/steps";
import { runStep } from "../support/images";
import { privateTmpDir } from "../support/tmp";

const run = (tool: string, args: string[], input?: string) => {
  const result = spawnSync(tool, args, { encoding: "utf8", ...(input !== undefined ? { input } : {}) });
  if (result.status !== 0) throw new Error(`${tool} ${args.join(" ")}: ${result.stderr}`);
  return result.stdout;
};

describe("the log-measurement step", () => {
  const dir = privateTmpDir("log-step");
  const key = join(dir, "image-signing");
  run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "test image signing", "-f", key]);
  const digest = "c0".repeat(32);
  const document = { relay: "exit-1", imageDigest: digest, uki: { sha256: "1".repeat(64) }, ovmf: { file: "ovmf.fd", sha256: "2".repeat(64) }, vcpus: 2, vcpuType: "EPYC-Milan", vmm: "QEMU", guestFeatures: "0x1", policy: "0x30000", measurement: "ab".repeat(48) };
  const documentFile = join(dir, "c0c0c0c0c0c0.snp.json");
  writeFileSync(documentFile, JSON.stringify(document));
  const buildRecord = join(dir, "c0c0c0c0c0c0.json");
  writeFileSync(buildRecord, '{"relay":"exit-1","record":"any bytes"}\n');
  const log = join(dir, "artifacts", "measurement-log");
  const signers = join(dir, "artifacts", "measurement-log.allowed_signers");
  const spec = { relay: "exit-1", imageDigest: digest, measurementDocument: documentFile, buildRecord, log, allowedSigners: signers, signingKey: key };

  it("adds a commit git verifies with the published signers, holding the document's values", () => {
    const result = runStep("log-measurement", spec);
    expect(result.status, result.stderr).toBe(0);
    const logged = parseStepOutput("log-measurement", result.stdout);
    expect(logged).toMatchObject({ added: true, path: "entries/000001.json" });
    const git = (...args: string[]) => run("git", ["-c", `gpg.ssh.allowedSignersFile=${signers}`, "--git-dir", log, ...args]);
    expect(git("rev-parse", "HEAD").trim()).toBe(logged.commit);
    // git's own check: the commit's SSH signature is by a key the signers file allows.
    expect(spawnSync("git", ["-c", `gpg.ssh.allowedSignersFile=${signers}`, "--git-dir", log, "verify-commit", "HEAD"], { encoding: "utf8" }).status).toBe(0);
    const entry = JSON.parse(git("show", `HEAD:${logged.path}`));
    const recordSha256 = run("sha256sum", ["--", buildRecord]).split(" ")[0];
    expect(entry).toMatchObject({ relay: "exit-1", imageDigest: digest, measurement: document.measurement, policy: "0x30000", vcpus: 2, vcpuType: "EPYC-Milan", buildRecordSha256: recordSha256 });
    // The signers file names the key's own public half (ssh-keygen -y derives it from the private key).
    const publicKey = run("ssh-keygen", ["-y", "-f", key]).trim().split(" ").slice(0, 2).join(" ");
    expect(run("cat", [signers])).toContain(publicKey);
  }, 120_000);

  it("adds nothing for the same launch again", () => {
    const head = run("git", ["--git-dir", log, "rev-parse", "HEAD"]).trim();
    const again = runStep("log-measurement", spec);
    expect(again.status, again.stderr).toBe(0);
    expect(parseStepOutput("log-measurement", again.stdout)).toEqual({ added: false, path: "entries/000001.json", commit: head });
    expect(run("git", ["--git-dir", log, "rev-list", "--count", "HEAD"]).trim()).toBe("1");
  }, 120_000);

  it("refuses a document of another image, and another measurement for a logged image", () => {
    const other = runStep("log-measurement", { ...spec, imageDigest: "d0".repeat(32) });
    expect(other.status).not.toBe(0);
    expect(other.stderr).toMatch(/measurement document is for exit-1 image c0c0c0c0c0c0, not exit-1 image d0d0d0d0d0d0/);
    writeFileSync(documentFile, JSON.stringify({ ...document, measurement: "cd".repeat(48) }));
    const changed = runStep("log-measurement", spec);
    expect(changed.status).not.toBe(0);
    expect(changed.stderr).toMatch(/already in the log as entries\/000001\.json/);
    expect(run("git", ["--git-dir", log, "rev-list", "--count", "HEAD"]).trim()).toBe("1");
  }, 120_000);
});
