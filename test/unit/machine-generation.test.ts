/**
 * The local machine's generation, judged at plan time (lib/local/local-vm.ts
 * plannedGeneration): the start step records it beside the run directory;
 * a QEMU that is gone moves it on, so the machine resource is replaced and
 * its VM started again. The running case, with a real QEMU holding its pid
 * file: test/vm/local-e2e.test.ts ("brings the killed exit back").
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { forgetGeneration, plannedGeneration, recordGeneration } from "../../lib/local/local-vm";
import { observeMachine } from "../../lib/ops/status-probe";
import type { RelayTarget } from "../../lib/steps/steps";
import { privateTmpDir } from "../support/tmp";

describe("a local relay machine's generation", () => {
  it("is 0 before the first start, and moves on once the started QEMU is gone", () => {
    const runDir = join(privateTmpDir("generation"), "relay");
    expect(plannedGeneration(runDir)).toEqual({ generation: 0 });
    recordGeneration(runDir, 0);
    // Started, and now no QEMU holds the pid file: gone.
    expect(plannedGeneration(runDir)).toEqual({ generation: 1, gone: `the QEMU process of ${runDir} is gone since the last up` });
    recordGeneration(runDir, 1);
    mkdirSync(runDir);
    // A pid file naming a process that is not QEMU's (this test's own) is not the machine.
    writeFileSync(join(runDir, "qemu.pid"), `${process.pid}\n`);
    expect(plannedGeneration(runDir)).toMatchObject({ generation: 2 });
    forgetGeneration(runDir);
    expect(plannedGeneration(runDir)).toEqual({ generation: 0 });
  });

  it("takes an unreadable record as no record", () => {
    const runDir = join(privateTmpDir("generation-bad"), "relay");
    writeFileSync(`${runDir}.generation`, "two\n");
    expect(plannedGeneration(runDir)).toEqual({ generation: 0 });
  });

  it("is what status calls a machine: stopped once an up started it and its QEMU is gone (the next up starts it), absent before", async () => {
    const runDir = join(privateTmpDir("generation-status"), "relay");
    const target = { kind: "qemu", runDir } as Extract<RelayTarget, { kind: "qemu" }>;
    expect(await observeMachine(target)).toEqual({ where: `the QEMU process of ${runDir}`, state: "absent" });
    recordGeneration(runDir, 0);
    expect(await observeMachine(target)).toEqual({ where: `the QEMU process of ${runDir}`, state: "stopped" });
  });
});
