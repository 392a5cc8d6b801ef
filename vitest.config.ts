import { defineConfig } from "vitest/config";

/**
 * The whole suite (`npm test`): unit tests, real tor/ukify/Syft/QEMU/OpenSSH
 * runs and the real Pulumi engine. The shared Debian base is built once, in
 * the global set-up, never inside a test's time limit. Slow tests set their
 * own timeouts, sized for a cold cache.
 */
/** The files that boot relays under QEMU: each keeps a core busy emulating, so they never run together. */
export const VM_TESTS = ["test/local-e2e.test.ts", "test/package-updates.test.ts", "test/broker-deploy.test.ts", "test/broker-boot.test.ts", "test/local-snp.test.ts", "test/image.test.ts"];

export default defineConfig({
  test: {
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    reporters: ["default"],
    // `npm test` (scripts/run-tests.sh) runs the two projects side by side, each one file at a time;
    // a plain `vitest run` runs every file one at a time.
    fileParallelism: false,
    projects: [
      { extends: true, test: { name: "vm", include: VM_TESTS } },
      { extends: true, test: { name: "other", include: ["test/**/*.test.ts"], exclude: VM_TESTS } },
    ],
  },
});
