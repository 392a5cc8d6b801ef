/**
 * The Pulumi program: read and check the stack config and every relay's keys
 * and torrc (nothing is registered if any of it is wrong), resolve the
 * Debian base's package set from its mirrors (or the stack's lock file),
 * then deploy the fleet (components/fleet.ts).
 */
import * as pulumi from "@pulumi/pulumi";
import * as runtimeConfig from "@pulumi/pulumi/runtime/config";
import { deployFleet } from "./components/fleet";
import { ConfigError, parseStackConfig, projectConfigObject } from "./lib/config/config";
import { FleetError, planFleet } from "./lib/plan/fleet";
import { relayBuildDir, stackBuildRoot } from "./lib/config/build-layout";
import { DEFAULT_RELEASE } from "./lib/plan/image-inputs";
import { PackageSetError, planBasePackages, relayPackageChanges, writeMirrorRecord } from "./lib/image/package-set";

// Pulumi runs the program and its plugins in the project directory; every
// path handed to a resource is relative to it (see inProject).
const projectDir = ".";

/**
 * The project's settings Pulumi holds as secrets (short names). The SDK's
 * isConfigSecret is internal: without it the credentials' check cannot run,
 * so the program stops rather than pass a plaintext token unseen.
 */
function secretSettings(all: Record<string, string>, project: string): Set<string> {
  const isConfigSecret = (runtimeConfig as unknown as { isConfigSecret?: (key: string) => boolean }).isConfigSecret;
  if (typeof isConfigSecret !== "function") throw new pulumi.RunError("this @pulumi/pulumi cannot tell which settings are secrets (runtime/config isConfigSecret); install the version package-lock.json pins");
  return new Set(Object.keys(all).filter((key) => key.startsWith(`${project}:`) && isConfigSecret(key)).map((key) => key.slice(project.length + 1)));
}

function plan() {
  try {
    // Every key of the project's namespace, so a typo is reported. The token
    // is read raw to be validated; it is wrapped as a secret before use.
    const all = pulumi.runtime.allConfig();
    const config = parseStackConfig(projectConfigObject(all, pulumi.getProject()), { secretKeys: secretSettings(all, pulumi.getProject()) });
    const now = new Date();
    const fleet = planFleet(config, { projectDir, now, needCollectionKey: !pulumi.runtime.isDryRun(), allowPreviewRecords: pulumi.runtime.isDryRun() });
    const release = config.image.release ?? DEFAULT_RELEASE[config.image.flavour];
    const basePackages = planBasePackages(config, { projectDir, stack: pulumi.getStack(), release, now });
    return { config, fleet, basePackages };
  } catch (err) {
    // A RunError prints its message alone, without a stack trace.
    if (err instanceof ConfigError || err instanceof FleetError || err instanceof PackageSetError) throw new pulumi.RunError(err.message);
    throw err;
  }
}

const { config, fleet, basePackages } = plan();
for (const warning of [...fleet.warnings, ...(basePackages?.warnings ?? [])]) pulumi.log.warn(warning);
// What tor makes of each exit's policy, one line each.
for (const note of fleet.notes) pulumi.log.info(note);
if (basePackages) {
  // Per relay whose running image this host built: the packages its next image changes.
  const buildRoot = stackBuildRoot(config, pulumi.getProject(), pulumi.getStack(), projectDir);
  const relays = fleet.relays.map((planned) => ({ name: planned.config.name, relayDir: relayBuildDir(buildRoot, planned.config.name) }));
  for (const line of relayPackageChanges(relays, basePackages.packages, projectDir)) pulumi.log.info(line);
  if (basePackages.mirror) writeMirrorRecord(buildRoot, { resolvedAt: basePackages.mirror.resolvedAt, sources: basePackages.request.sources, packages: basePackages.mirror.packages });
}

/** Public facts about each relay; no key material. */
export const relayOutputs = deployFleet(
  config,
  { ...fleet, ...(basePackages ? { basePackages: { sources: basePackages.request.sources, packages: basePackages.packages } } : {}) },
  { projectDir, project: pulumi.getProject(), stack: pulumi.getStack(), dryRun: pulumi.runtime.isDryRun() },
);
