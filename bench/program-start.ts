/**
 * What one run of the Pulumi program costs the machine: `pulumi preview` of a
 * three-relay Proxmox VE stack (the engine tests' fleet; no API answers, so
 * the preview warns once and plans everything), three ways: with ts-node
 * type-checking the program, as Pulumi does by default; transpiling only,
 * with TypeScript's own transpiler; and transpiling only with swc, as the
 * test suite runs it after one `tsc --noEmit` (toolEnv in
 * test/support/pulumi.ts). CPU seconds are the CLI's and all its children's (the
 * language host, the program, the plugins), from the kernel's account of
 * this process's waited-for children. Reproduce with
 *   npm run bench:program [-- ROUNDS]
 */
import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { makeTestKeys, TEST_API_TOKEN, testStackConfig, THREE_RELAYS } from "../test/support/fleet";
import { PROGRAM_TRANSPILED_BY_SWC, PROGRAM_TYPE_CHECKED, TestProject } from "../test/support/pulumi";

/** CPU seconds of this process's children that exited and were waited for (/proc/self/stat cutime + cstime; USER_HZ is 100 on Linux). */
function childrenCpuSeconds(): number {
  const fields = readFileSync("/proc/self/stat", "utf8").replace(/^.*\) /, "").split(" ");
  // After "(comm) ", field 3 (state) is index 0, so cutime (16) and cstime (17) are 13 and 14.
  return (Number(fields[13]) + Number(fields[14])) / 100;
}

/** The three ways the program is run: Pulumi's default, TypeScript's transpiler only, swc (the tests' way). */
const MODES = {
  checked: PROGRAM_TYPE_CHECKED,
  transpiled: { ...PROGRAM_TYPE_CHECKED, PULUMI_NODEJS_TRANSPILE_ONLY: "true" },
  swc: PROGRAM_TRANSPILED_BY_SWC,
};
type Mode = keyof typeof MODES;

/** Wall and CPU seconds of one `pulumi preview` (the CLI and everything it waited for: language host, program, plugins). */
async function preview(project: TestProject, mode: Mode): Promise<{ wall: number; cpu: number }> {
  const cpuBefore = childrenCpuSeconds();
  const started = Date.now();
  const result = await project.runAsyncWith(MODES[mode], "preview", "--non-interactive");
  if (result.status !== 0) throw new Error(`pulumi preview failed (${result.status}):\n${result.stdout}\n${result.stderr}`);
  return { wall: (Date.now() - started) / 1000, cpu: childrenCpuSeconds() - cpuBefore };
}

async function main() {
  const rounds = Number(process.argv[2] ?? 3);
  const project = new TestProject("bench");
  try {
    makeTestKeys(project.dir, THREE_RELAYS);
    project.configure(testStackConfig(THREE_RELAYS), { proxmoxApiToken: TEST_API_TOKEN });
    const modes = Object.keys(MODES) as Mode[];
    const samples = Object.fromEntries(modes.map((mode) => [mode, [] as { wall: number; cpu: number }[]])) as Record<Mode, { wall: number; cpu: number }[]>;
    // One unmeasured run each: plugin and ts-node caches as in a suite that already ran the program once.
    for (const mode of modes) await preview(project, mode);
    for (let round = 0; round < rounds; round++) {
      for (const mode of modes) samples[mode].push(await preview(project, mode));
    }
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
    console.log(`diskless-relays program start (${new Date().toISOString()}, ${cpus().length} cores, ${rounds} rounds): pulumi preview of a three-relay stack`);
    for (const [mode, runs] of Object.entries(samples)) {
      console.log(`${mode.padEnd(10)}  wall median ${median(runs.map((r) => r.wall)).toFixed(1)} s   CPU median ${median(runs.map((r) => r.cpu)).toFixed(1)} s  (${runs.map((r) => r.cpu.toFixed(1)).join(", ")})`);
    }
  } finally {
    project.destroy();
  }
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
