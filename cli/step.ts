/**
 * The one entry point every step resource runs:
 *   node --require tsx/cjs cli/step.ts STEP   (STEP_COMMAND)
 * with its spec as JSON in $DISKLESS_RELAYS_STEP, validated against the
 * step's schema (lib/steps/steps.ts) before anything happens. The command line is
 * constant; values never pass through a shell.
 */
import { parseStepSpec, STEP_SPEC_ENV, STEP_SPECS, type StepName, type StepSpec } from "../lib/steps/steps";
import { StepFailure } from "../lib/steps/step-failure";

type Handler<N extends StepName> = (spec: StepSpec<N>) => Promise<void> | void;

/**
 * Each step loads only its own module, when it runs: loading every step's
 * module cost each step's node about a third more CPU (remove-monitoring,
 * five runs each: 0.84-0.90 s of CPU with all of them, 0.58-0.65 s with its
 * own), and a redeploy runs dozens of steps. require, not import(): under tsx's CommonJS hook import() goes
 * to node's ESM loader, which cannot load TypeScript.
 */
const buildBaseSteps = () => require("./steps/build-base") as typeof import("./steps/build-base");
const collectStateSteps = () => require("./steps/collect-state") as typeof import("./steps/collect-state");
const buildRelayImageSteps = () => require("./steps/build-relay-image") as typeof import("./steps/build-relay-image");
const sbomSteps = () => require("./steps/sbom") as typeof import("./steps/sbom");
const measureLaunchSteps = () => require("./steps/measure-launch") as typeof import("./steps/measure-launch");
const logMeasurementSteps = () => require("./steps/log-measurement") as typeof import("./steps/log-measurement");
const monitoringSteps = () => require("./steps/monitoring") as typeof import("./steps/monitoring");
const localVmSteps = () => require("./steps/local-vm") as typeof import("./steps/local-vm");
const pruneIsosSteps = () => require("./steps/prune-isos") as typeof import("./steps/prune-isos");
const brokerSteps = () => require("./steps/broker") as typeof import("./steps/broker");
const rollOutSteps = () => require("./steps/roll-out") as typeof import("./steps/roll-out");

const HANDLERS: { [N in StepName]: () => Handler<N> } = {
  "build-base": () => buildBaseSteps().buildBase,
  "collect-state": () => collectStateSteps().collectState,
  "remove-collected-state": () => collectStateSteps().removeCollectedState,
  "build-relay-image": () => buildRelayImageSteps().buildImage,
  "remove-relay-image": () => buildRelayImageSteps().removeImage,
  "scan-base-sbom": () => sbomSteps().scanBaseSbom,
  "write-relay-sbom": () => sbomSteps().writeRelaySbom,
  "measure-launch": () => measureLaunchSteps().measureLaunch,
  "log-measurement": () => logMeasurementSteps().logMeasurement,
  "write-monitoring": () => monitoringSteps().writeMonitoring,
  "remove-monitoring": () => monitoringSteps().removeMonitoring,
  "start-local-vm": () => localVmSteps().startVm,
  "stop-local-vm": () => localVmSteps().stopVm,
  "prune-isos": () => pruneIsosSteps().pruneIsos,
  "upload-relay-keys": () => brokerSteps().uploadKeys,
  "forget-relay-keys": () => brokerSteps().forgetKeys,
  "register-image": () => brokerSteps().registerImageStep,
  "retire-image": () => brokerSteps().retireImageStep,
  "roll-out": () => rollOutSteps().rollOut,
  "remove-rollback-image": () => rollOutSteps().removeRollbackImage,
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
  const handler = HANDLERS[name]() as (spec: unknown) => Promise<void> | void;
  await handler(spec);
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
