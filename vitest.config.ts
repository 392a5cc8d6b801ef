import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    // Integration tests drive real tor, QEMU and the Pulumi engine; they share
    // the machine's two cores, so run files one at a time.
    fileParallelism: false,
    reporters: ["default"],
  },
});
