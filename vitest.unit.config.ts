import { defineConfig } from "vitest/config";

/**
 * The developer's loop (`npm run test:unit`): everything that needs no image
 * build, no VM and no Pulumi engine (tor, OpenSSH and the Proxmox VE double
 * run for real; they start in milliseconds).
 */
export const UNIT_TESTS = [
  "test/addresses.test.ts",
  "test/config.test.ts",
  "test/torrc.test.ts",
  "test/torrc-check.test.ts",
  "test/fleet.test.ts",
  "test/plan-files.test.ts",
  "test/config-settings.test.ts",
  "test/identity.test.ts",
  "test/keys-cli.test.ts",
  "test/preview-summary.test.ts",
  "test/preview-record.test.ts",
  "test/rollout.test.ts",
  "test/relay-health.test.ts",
  "test/fleet-status.test.ts",
  "test/pid-file.test.ts",
  "test/relay-shutdown.test.ts",
  "test/stack-config.test.ts",
  "test/unbound.test.ts",
  "test/hardening.test.ts",
  "test/exit-notice.test.ts",
  "test/graph.test.ts",
  "test/broker-graph.test.ts",
  "test/collect-state.test.ts",
  "test/broker-agent.test.ts",
  "test/broker-admin.test.ts",
  "test/proxmox-snp.test.ts",
  "test/proxmox-double.test.ts",
  "test/vulns.test.ts",
  "test/package-index.test.ts",
  "test/monitoring.test.ts",
  "test/metrics-scrape.test.ts",
  "test/option-injection.test.ts",
  "test/snp/**/*.test.ts",
  "test/exit-policy.test.ts",
  "test/address-rules.test.ts",
  "test/descriptor-size.test.ts",
];

export default defineConfig({
  test: {
    include: UNIT_TESTS,
    testTimeout: 60_000,
    fileParallelism: true,
    reporters: ["default"],
  },
});
