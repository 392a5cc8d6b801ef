import { defineConfig } from "vitest/config";

/**
 * The developer's loop (`npm run test:unit`): test/unit, everything that
 * needs no Pulumi engine, no image build and no VM. tor, OpenSSH, apt and
 * the Proxmox VE double run for real there: they start in milliseconds.
 */
export default defineConfig({
  test: {
    include: ["test/unit/**/*.test.ts"],
    testTimeout: 60_000,
    fileParallelism: true,
    reporters: ["default"],
  },
});
