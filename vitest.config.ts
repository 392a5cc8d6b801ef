import { defineConfig } from "vitest/config";

/**
 * The two lanes `npm test` (scripts/run-tests.sh) runs side by side, each one
 * file at a time. The tiers stay by folder (test/unit, test/engine,
 * test/image, test/vm); the lanes only share out the time. The "vm" lane
 * holds the three longest VM files, which boot the local stack on a private
 * Tor network; these three short ones, which boot one relay at a time, run in
 * the "other" lane. In a cold run on 2 cores (`.ci/run`) the "vm" lane took
 * 2094 s and the other 1948 s: the three local-stack files, which mostly wait
 * on boots, consensus and health checks, are the run's longest chain.
 */
const VM_FILES_IN_OTHER_LANE = ["test/vm/broker-boot.test.ts", "test/vm/image.test.ts", "test/vm/local-snp.test.ts"];

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
    // One file at a time in each lane; a plain `vitest run` runs every file one at a time.
    fileParallelism: false,
    projects: [
      // Each VM file keeps a core busy emulating under TCG, so two of them never run in one lane.
      { extends: true, test: { name: "vm", include: ["test/vm/**/*.test.ts"], exclude: VM_FILES_IN_OTHER_LANE } },
      { extends: true, test: { name: "other", include: ["test/{unit,engine,image}/**/*.test.ts", ...VM_FILES_IN_OTHER_LANE] } },
    ],
  },
});
