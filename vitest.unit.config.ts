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
    // Hooks start real tor and ssh-keygen, slower while other files run beside them.
    hookTimeout: 60_000,
    fileParallelism: true,
    // Most files wait on the programs they start (tor, sshd, a shutdown's 10 s
    // bound), not on the CPU: four at a time on two cores brought the tier from
    // 210 s (vitest's default here, one worker) to under two minutes.
    maxWorkers: 4,
    minWorkers: 1,
    reporters: ["default"],
  },
});
