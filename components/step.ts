/**
 * A step resource: a `command.local.Command` that runs one constant command
 * line (`STEP_COMMAND STEP`) in the project directory, with its spec as JSON
 * in the environment, validated here against the schema the step validates
 * it with again (lib/steps/steps.ts). Secrets travel in their own environment
 * variables, never in the spec.
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { encodeStepSpec, STEP_SPEC_ENV, stepCommandLine, type StepName, type StepSpec } from "../lib/steps/steps";

export interface StepArgs<N extends StepName> {
  step: N;
  spec: pulumi.Input<StepSpec<N>> | { [K in keyof StepSpec<N>]: pulumi.Input<StepSpec<N>[K]> };
  /** The step that undoes this one when the resource is deleted; it gets the same spec. */
  onDelete?: StepName;
  /** A change to any of these runs the step again as a replacement; other changes run it in place. */
  triggers?: pulumi.Input<unknown>[];
  /** Secret values, each in its own environment variable. */
  secretEnvironment?: Record<string, pulumi.Input<string>>;
  projectDir: string;
  logging?: "stdout" | "stderr" | "stdoutAndStderr" | "none";
}

export function stepResource<N extends StepName>(name: string, args: StepArgs<N>, opts?: pulumi.CustomResourceOptions): command.local.Command {
  const spec = pulumi.output(args.spec as pulumi.Input<StepSpec<N>>).apply((value) => encodeStepSpec(args.step, value as StepSpec<N>));
  const secrets = Object.fromEntries(Object.entries(args.secretEnvironment ?? {}).map(([key, value]) => [key, pulumi.secret(value)]));
  return new command.local.Command(
    name,
    {
      dir: args.projectDir,
      create: stepCommandLine(args.step),
      ...(args.onDelete ? { delete: stepCommandLine(args.onDelete) } : {}),
      environment: { [STEP_SPEC_ENV]: spec, ...secrets },
      ...(args.triggers ? { triggers: args.triggers } : {}),
      ...(args.logging ? { logging: args.logging } : {}),
    },
    // The command lines are constant for a step (its data is the spec), but the runner that starts it
    // has changed (lib/steps/steps.ts, STEP_COMMAND): a stack keeps the line it was made with, rather
    // than seeing every step as changed and running it again.
    { ...opts, ignoreChanges: [...(opts?.ignoreChanges ?? []), "create", "delete"] },
  );
}
