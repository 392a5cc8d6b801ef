/**
 * Which EPYC a node's CPU is (lib/ops/preflight.ts cpuHasSnp), from the
 * model names /proc/cpuinfo (and so Proxmox VE's node status) gives: SEV-SNP
 * is Zen 3 (EPYC 7003, Milan) and later, as AMD's EPYC product pages list
 * it. The rest of the preflight runs against the Proxmox VE double:
 * test/engine/preflight.test.ts.
 */
import { describe, expect, it } from "vitest";
import { cpuHasSnp } from "../../lib/ops/preflight";

describe("an EPYC with SEV-SNP", () => {
  it("is a Milan, Genoa, Bergamo, Siena or Turin", () => {
    for (const model of [
      "AMD EPYC 7763 64-Core Processor",
      "AMD EPYC 7443P 24-Core Processor",
      "AMD EPYC 7B13 64-Core Processor",
      "AMD EPYC 9654 96-Core Processor",
      "AMD EPYC 9754 128-Core Processor",
      "AMD EPYC 8534P 64-Core Processor",
      "AMD EPYC 9755 128-Core Processor",
      "AMD EPYC 9355P 32-Core Processor",
    ]) {
      expect(cpuHasSnp(model), model).toBe(true);
    }
  });

  it("is not a Naples or Rome, an EPYC 4004, or another vendor's CPU", () => {
    for (const model of ["AMD EPYC 7601 32-Core Processor", "AMD EPYC 7402P 24-Core Processor", "AMD EPYC 7742 64-Core Processor", "AMD EPYC 4584PX 16-Core Processor", "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", "QEMU Virtual CPU version 2.5+", ""]) {
      expect(cpuHasSnp(model), model).toBe(false);
    }
  });
});
