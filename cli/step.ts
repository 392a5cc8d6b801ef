/**
 * The one entry point every step resource runs:
 *   node --require tsx/cjs cli/step.ts STEP   (STEP_COMMAND)
 * with its spec as JSON in $DISKLESS_RELAYS_STEP, validated against the
 * step's schema (lib/steps/steps.ts) before anything happens. The command line is
 * constant; values never pass through a shell.
 */
import { parseStepSpec, STEP_SPEC_ENV, STEP_SPECS, type StepName, type StepSpec } from "../lib/steps/steps";
import { buildBase } from "./steps/build-base";
import { forgetKeys, registerImageStep, retireImageStep, uploadKeys } from "./steps/broker";
import { buildImage, removeImage } from "./steps/build-relay-image";
import { collectState, removeCollectedState } from "./steps/collect-state";
import { startVm, stopVm } from "./steps/local-vm";
import { logMeasurement } from "./steps/log-measurement";
import { measureLaunch } from "./steps/measure-launch";
import { removeMonitoring, writeMonitoring } from "./steps/monitoring";
import { pruneIsos } from "./steps/prune-isos";
import { removeRollbackImage, rollOut } from "./steps/roll-out";
import { scanBaseSbom, writeRelaySbom } from "./steps/sbom";
import { StepFailure } from "../lib/steps/step-failure";

const HANDLERS: { [N in StepName]: (spec: StepSpec<N>) => Promise<void> | void } = {
  "build-base": buildBase,
  "collect-state": collectState,
  "remove-collected-state": removeCollectedState,
  "build-relay-image": buildImage,
  "remove-relay-image": removeImage,
  "scan-base-sbom": scanBaseSbom,
  "write-relay-sbom": writeRelaySbom,
  "measure-launch": measureLaunch,
  "log-measurement": logMeasurement,
  "write-monitoring": writeMonitoring,
  "remove-monitoring": removeMonitoring,
  "start-local-vm": startVm,
  "stop-local-vm": stopVm,
  "prune-isos": pruneIsos,
  "upload-relay-keys": uploadKeys,
  "forget-relay-keys": forgetKeys,
  "register-image": registerImageStep,
  "retire-image": retireImageStep,
  "roll-out": rollOut,
  "remove-rollback-image": removeRollbackImage,
};

async function main(): Promise<number> {
  const step = process.argv[2];
  if (!step || !(step in STEP_SPECS)) {
    console.error(`usage: cli/step.ts STEP, with the spec as JSON in $${STEP_SPEC_ENV}; steps: ${Object.keys(STEP_SPECS).join(", ")}`);
    return 2;
  }
  const raw = process.env[STEP_SPEC_ENV];
  if (!raw) {
    console.error(`step ${step}: $${STEP_SPEC_ENV} is not set`);
    return 2;
  }
  const name = step as StepName;
  const spec = parseStepSpec(name, JSON.parse(raw));
  await (HANDLERS[name] as (spec: unknown) => Promise<void> | void)(spec);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    // A StepFailure is an expected outcome, said in the operator's words; anything else shows its stack.
    console.error(err instanceof StepFailure ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(1);
  },
);
