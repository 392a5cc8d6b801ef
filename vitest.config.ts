import { defineConfig } from "vitest/config";

/**
 * The whole suite (`npm test`): unit tests, real tor/ukify/Syft/QEMU/OpenSSH
 * runs and the real Pulumi engine. The shared Debian base is built once, in
 * the global set-up, never inside a test's time limit. Slow tests set their
 * own timeouts, sized for a cold cache.
 */
export default defineConfig({
  test: {
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    reporters: ["default"],
    // `npm test` (scripts/run-tests.sh) runs the three lanes below side by side, each one file at a time;
    // a plain `vitest run` runs every file one at a time. The lanes balance a cold run's time on 2 cores, not tiers:
    // the tiers stay folders, and every file is in exactly one lane.
    fileParallelism: false,
    projects: [
      // local-e2e is the longest file (about 23 minutes) and mostly waits on the private network's clock (voting rounds,
      // health timeouts), not the CPU: beside it run the short tiers that keep the CPU busy (unit tests, image builds).
      { extends: true, test: { name: "e2e", include: ["test/vm/local-e2e.test.ts", "test/{unit,image}/**/*.test.ts"] } },
      // The other files that boot VMs under QEMU.
      { extends: true, test: { name: "vm", include: ["test/vm/**/*.test.ts"], exclude: ["test/vm/local-e2e.test.ts"] } },
      // The real Pulumi engine, against the Proxmox VE double.
      { extends: true, test: { name: "engine", include: ["test/engine/**/*.test.ts"] } },
    ],
  },
});
