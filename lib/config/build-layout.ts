/**
 * Where a stack's files live on the build host, named once: the private
 * build root (key material: onion keys collected, rollback images, rollout
 * records) and the project's artifacts/ (public: SBOMs, their records, launch
 * measurements, monitoring files, vulnerability reports). Pure.
 */
import { join } from "node:path";
import type { StackConfig } from "./config";
import { inProject } from "../core/paths";

/** The stack's private build root; holds key material, outside the state. */
export function stackBuildRoot(config: Pick<StackConfig, "buildDir">, project: string, stack: string, projectDir: string): string {
  return join(inProject(projectDir, config.buildDir), `${project}-${stack}`);
}

/** The build root's relay directories. */
export const relaysBuildDir = (buildRoot: string) => join(buildRoot, "relays");

/** A relay's private directory in the build root: its rollout records (lib/steps/rollout-records.ts), collected state and rollback image. */
export const relayBuildDir = (buildRoot: string, relay: string) => join(relaysBuildDir(buildRoot), relay);

/** The project's artifacts/: the audit history, kept by digest. */
export const artifactsDirOf = (projectDir: string) => join(projectDir, "artifacts");

/** A relay's published records: DIGEST12.json (its SBOM record), DIGEST12.snp.json (its launch measurement). */
export const relayArtifactsDir = (artifactsDir: string, relay: string) => join(artifactsDir, "relays", relay);
export const relaySbomRecordPath = (artifactsDir: string, relay: string, imageDigest: string) => join(relayArtifactsDir(artifactsDir, relay), `${imageDigest.slice(0, 12)}.json`);
/** Where a relay's build record is in the operator's published artifacts/, as its public attestation answer points to it. */
export const publishedBuildRecord = (relay: string, imageDigest: string) => relaySbomRecordPath("artifacts", relay, imageDigest);
export const launchMeasurementPath = (artifactsDir: string, relay: string, imageDigest: string) => join(relayArtifactsDir(artifactsDir, relay), `${imageDigest.slice(0, 12)}.snp.json`);

/**
 * The public measurement log (a git repository of signed commits, tools/broker measurement-log) and the
 * allowed-signers file volunteers check it with: one log for every stack of the project, whose entries name
 * their relays.
 */
export const measurementLogDir = (artifactsDir: string) => join(artifactsDir, "measurement-log");
export const measurementLogSigners = (artifactsDir: string) => join(artifactsDir, "measurement-log.allowed_signers");

/** The bases' SBOMs: base-FLAVOUR-DIGEST12.syft.json and .cdx.json, and the SBOM a record names. */
export const sbomDir = (artifactsDir: string) => join(artifactsDir, "sbom");
export const baseSbomStem = (artifactsDir: string, flavour: string, baseDigest: string) => join(sbomDir(artifactsDir), `base-${flavour}-${baseDigest.slice(0, 12)}`);

/** The fleet's Prometheus files. */
export const monitoringDir = (artifactsDir: string, stack: string) => join(artifactsDir, "monitoring", stack);

/** The vulnerability reports' directory (lib/ops/vulns.ts names the file). */
export const vulnsDir = (artifactsDir: string) => join(artifactsDir, "vulns");
