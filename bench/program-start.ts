/**
 * What one run of the Pulumi program costs the machine: `pulumi preview` of a
 * three-relay Proxmox VE stack (the engine tests' fleet; no API answers, so
 * the preview warns once and plans everything), with ts-node type-checking
 * the program as Pulumi does by default, and transpiling only
 * (PULUMI_NODEJS_TRANSPILE_ONLY=true, as the test suite runs it after one
 * `tsc --noEmit`). CPU seconds are the CLI's and all its children's (the
 * language host, the program, the plugins). Reproduce with
 *   npm run bench:program [-- ROUNDS]
 */
import { spawnSync } from "node:child_process";
import { cpus } from "node:os";
import { makeTestKeys, TEST_API_TOKEN, testStackConfig, THREE_RELAYS } from "../test/support/fleet";
import { TestProject, toolEnv } from "../test/support/pulumi";

/** Wall and CPU seconds of one `pulumi preview`, measured by GNU time around it. */
function preview(project: TestProject, transpileOnly: boolean): { wall: number; cpu: number } {
  const env = { ...toolEnv({ PULUMI_BACKEND_URL: `file://${project.dir}/.pulumi`, PULUMI_CONFIG_PASSPHRASE: "diskless-relays-test" }), PULUMI_NODEJS_TRANSPILE_ONLY: String(transpileOnly) };
  const result = spawnSync("/usr/bin/time", ["-f", "%e %U %S", "pulumi", "preview", "--stack", project.stack, "--cwd", project.dir, "--non-interactive"], { env, encoding: "utf8" });
  if (result.status !== 0) throw new Error(`pulumi preview failed (${result.status}):\n${result.stdout}\n${result.stderr}`);
  const [wall, user, system] = result.stderr.trim().split("\n").at(-1)!.split(" ").map(Number);
  return { wall: wall!, cpu: user! + system! };
}

function main() {
  const rounds = Number(process.argv[2] ?? 3);
  const project = new TestProject("bench");
  try {
    makeTestKeys(project.dir, THREE_RELAYS);
    project.configure(testStackConfig(THREE_RELAYS), { proxmoxApiToken: TEST_API_TOKEN });
    const samples: Record<"checked" | "transpiled", { wall: number; cpu: number }[]> = { checked: [], transpiled: [] };
    // One unmeasured run each: plugin and ts-node caches as in a suite that already ran the program once.
    preview(project, false);
    preview(project, true);
    for (let round = 0; round < rounds; round++) {
      samples.checked.push(preview(project, false));
      samples.transpiled.push(preview(project, true));
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

main();
