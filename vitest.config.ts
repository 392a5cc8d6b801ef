import { defineConfig } from "vitest/config";

/**
 * The whole suite (`npm test`): unit tests, real tor/ukify/Syft/QEMU/OpenSSH
 * runs and the real Pulumi engine. The shared Debian base is built once, in
 * the global set-up, never inside a test's time limit. Slow tests set their
 * own timeouts, sized for a cold cache.
 */
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    // Integration tests drive real tor, QEMU and the Pulumi engine; they share
    // the machine's two cores, so run files one at a time.
    fileParallelism: false,
    reporters: ["default"],
  },
});
