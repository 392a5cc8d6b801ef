import * as pulumi from "@pulumi/pulumi";
import * as proxmoxve from "@muhlba91/pulumi-proxmoxve";
import { ConfigError, parseStackConfig, type StackConfig } from "./lib/config";

const CONFIG_KEYS = ["proxmox", "proxmoxApiToken", "image", "stateCollection", "certificate", "rollout", "relays"] as const;

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
  try {
    return parseStackConfig(raw);
  } catch (err) {
    if (err instanceof ConfigError) throw new pulumi.RunError(err.message);
    throw err;
  }
}

const config = loadStackConfig();

const proxmox = new proxmoxve.Provider("proxmox", {
  endpoint: config.proxmox.endpoint,
  apiToken: pulumi.secret(config.proxmoxApiToken),
  insecure: !config.proxmox.verifyTls,
});

export const relays = Object.fromEntries(
  config.relays.map((relay) => [relay.name, { nickname: relay.nickname, node: relay.node, vmId: relay.vmId }]),
);
export const proxmoxProvider = proxmox.urn;
