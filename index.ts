/**
 * The Pulumi program: read and check the stack config and every relay's keys
 * and torrc (nothing is registered if any of it is wrong), then deploy the
 * fleet (components/fleet.ts).
 */
import * as pulumi from "@pulumi/pulumi";
import * as runtimeConfig from "@pulumi/pulumi/runtime/config";
import { deployFleet } from "./components/fleet";
import { ConfigError, parseStackConfig, projectConfigObject } from "./lib/config";
import { FleetError, planFleet } from "./lib/fleet";

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
    const fleet = planFleet(config, { projectDir, now: new Date(), needCollectionKey: !pulumi.runtime.isDryRun(), allowPreviewRecords: pulumi.runtime.isDryRun() });
    return { config, fleet };
  } catch (err) {
    // A RunError prints its message alone, without a stack trace.
    if (err instanceof ConfigError || err instanceof FleetError) throw new pulumi.RunError(err.message);
    throw err;
  }
}

const { config, fleet } = plan();
for (const warning of fleet.warnings) pulumi.log.warn(warning);
// What tor makes of each exit's policy, one line each.
for (const note of fleet.notes) pulumi.log.info(note);

/** Public facts about each relay; no key material. */
export const relayOutputs = deployFleet(config, fleet, { projectDir, project: pulumi.getProject(), stack: pulumi.getStack(), dryRun: pulumi.runtime.isDryRun() });
