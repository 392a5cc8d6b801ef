import * as pulumi from "@pulumi/pulumi";
import * as proxmoxve from "@muhlba91/pulumi-proxmoxve";
import { ConfigError, parseStackConfig, type StackConfig } from "./lib/config";
import { FleetError, planFleet } from "./lib/fleet";

const CONFIG_KEYS = ["proxmox", "proxmoxApiToken", "keyStore", "image", "stateCollection", "certificate", "rollout", "relays"] as const;

/**
 * Reads every key of this project's stack config and validates it as a whole,
 * so that a bad config stops the run before any resource is registered.
 */
function loadStackConfig(): StackConfig {
  const project = pulumi.getProject();
  const raw: Record<string, unknown> = {};
  for (const key of CONFIG_KEYS) {
    // Read raw so the secret token can be validated synchronously; it is
    // wrapped as a secret again before it reaches any resource.
    const value = pulumi.runtime.getConfig(`${project}:${key}`);
    if (value === undefined) continue;
    try {
      raw[key] = key === "proxmoxApiToken" ? value : JSON.parse(value);
    } catch {
      raw[key] = value;
    }
  }
  return parseStackConfig(raw);
}

function plan() {
  try {
    const config = loadStackConfig();
    const fleet = planFleet(config, { projectDir: process.cwd(), now: new Date() });
    return { config, fleet };
  } catch (err) {
    // A RunError prints its message alone, without a stack trace.
    if (err instanceof ConfigError || err instanceof FleetError) throw new pulumi.RunError(err.message);
    throw err;
  }
}

const { config, fleet } = plan();
for (const warning of fleet.warnings) pulumi.log.warn(warning);

const proxmox = new proxmoxve.Provider("proxmox", {
  endpoint: config.proxmox.endpoint,
  apiToken: pulumi.secret(config.proxmoxApiToken),
  insecure: !config.proxmox.verifyTls,
});

/** Public facts about each relay; no key material. */
export const relays = Object.fromEntries(
  fleet.relays.map((relay) => [
    relay.config.name,
    {
      nickname: relay.config.nickname,
      rsaFingerprint: relay.identity.rsaFingerprint,
      ed25519Identity: relay.identity.ed25519Identity,
      signingCertExpiresAt: relay.identity.signingCertExpiresAt.toISOString(),
      node: relay.config.node,
      vmId: relay.config.vmId,
    },
  ]),
);
export const proxmoxProvider = proxmox.urn;
