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
 * module cost each step's node a fifth more CPU (remove-monitoring: 0.55 s
 * of CPU with all of them, 0.43 s with its own), and a redeploy runs dozens
 * of steps. require, not import(): under tsx's CommonJS hook import() goes
 * to node's ESM loader, which cannot load TypeScript.
 */
const HANDLERS: { [N in StepName]: () => Handler<N> } = {
  "build-base": () => (require("./steps/build-base") as typeof import("./steps/build-base")).buildBase,
  "collect-state": () => (require("./steps/collect-state") as typeof import("./steps/collect-state")).collectState,
  "remove-collected-state": () => (require("./steps/collect-state") as typeof import("./steps/collect-state")).removeCollectedState,
  "build-relay-image": () => (require("./steps/build-relay-image") as typeof import("./steps/build-relay-image")).buildImage,
  "remove-relay-image": () => (require("./steps/build-relay-image") as typeof import("./steps/build-relay-image")).removeImage,
  "scan-base-sbom": () => (require("./steps/sbom") as typeof import("./steps/sbom")).scanBaseSbom,
  "write-relay-sbom": () => (require("./steps/sbom") as typeof import("./steps/sbom")).writeRelaySbom,
  "measure-launch": () => (require("./steps/measure-launch") as typeof import("./steps/measure-launch")).measureLaunch,
  "log-measurement": () => (require("./steps/log-measurement") as typeof import("./steps/log-measurement")).logMeasurement,
  "write-monitoring": () => (require("./steps/monitoring") as typeof import("./steps/monitoring")).writeMonitoring,
  "remove-monitoring": () => (require("./steps/monitoring") as typeof import("./steps/monitoring")).removeMonitoring,
  "start-local-vm": () => (require("./steps/local-vm") as typeof import("./steps/local-vm")).startVm,
  "stop-local-vm": () => (require("./steps/local-vm") as typeof import("./steps/local-vm")).stopVm,
  "prune-isos": () => (require("./steps/prune-isos") as typeof import("./steps/prune-isos")).pruneIsos,
  "upload-relay-keys": () => (require("./steps/broker") as typeof import("./steps/broker")).uploadKeys,
  "forget-relay-keys": () => (require("./steps/broker") as typeof import("./steps/broker")).forgetKeys,
  "register-image": () => (require("./steps/broker") as typeof import("./steps/broker")).registerImageStep,
  "retire-image": () => (require("./steps/broker") as typeof import("./steps/broker")).retireImageStep,
  "roll-out": () => (require("./steps/roll-out") as typeof import("./steps/roll-out")).rollOut,
  "remove-rollback-image": () => (require("./steps/roll-out") as typeof import("./steps/roll-out")).removeRollbackImage,
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
