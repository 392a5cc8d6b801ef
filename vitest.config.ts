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
    // `npm test` (scripts/run-tests.sh) runs the two projects side by side, each one file at a time;
    // a plain `vitest run` runs every file one at a time.
    fileParallelism: false,
    projects: [
      // test/vm boots relays under QEMU: each file keeps a core busy emulating, so they never run together.
      { extends: true, test: { name: "vm", include: ["test/vm/**/*.test.ts"] } },
      // test/unit, test/engine (the Pulumi engine, the Proxmox VE double) and test/image (image builds, no VM).
      { extends: true, test: { name: "other", include: ["test/{unit,engine,image}/**/*.test.ts"] } },
    ],
  },
});
