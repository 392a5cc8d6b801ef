/** The local stack's relay machine: QEMU booting the relay's ISO, with its simulated SEV-SNP secure processor if the target has one (lib/local/local-vm.ts). */
import { forgetGeneration, recordGeneration, startLocalVm, stopLocalVm } from "../../lib/local/local-vm";
import { CLEAN_SHUTDOWN_SECONDS } from "../../lib/local/qemu";
import { encodeStepOutput, type StepSpec } from "../../lib/steps/steps";
import { StepFailure } from "../../lib/steps/step-failure";

export async function startVm(spec: StepSpec<"start-local-vm">): Promise<void> {
  if (spec.target.kind !== "qemu") throw new StepFailure("start-local-vm needs a qemu target");
  const pid = await startLocalVm(spec.target, spec.iso, (line) => console.log(line));
  if (spec.generation !== undefined) recordGeneration(spec.target.runDir, spec.generation);
  console.log(encodeStepOutput("start-local-vm", `started pid ${pid}, console ${spec.target.runDir}/console.log`));
}

export async function stopVm(spec: StepSpec<"stop-local-vm">): Promise<void> {
  if (spec.target.kind !== "qemu") throw new StepFailure("stop-local-vm needs a qemu target");
  const how = await stopLocalVm(spec.target.runDir);
  forgetGeneration(spec.target.runDir);
  const said = { clean: "powered off on the ACPI power button", hard: `stopped hard: it had not powered off within ${CLEAN_SHUTDOWN_SECONDS} s`, "not running": "was not running" }[how];
  console.log(`${spec.target.runDir}: ${said}`);
}
