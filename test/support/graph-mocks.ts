/**
 * Pulumi's mocks for the resource-graph tests (graph.test.ts,
 * broker-graph.test.ts): every resource the program registers is recorded
 * with its inputs; a step with an output contract answers with an output
 * that keeps it (encodeStepOutput checks), other steps with their name, and
 * an ISO upload gets the volume id Proxmox VE gives.
 * Call before the program's components are imported.
 */
import * as pulumi from "@pulumi/pulumi";
import { encodeStepOutput, STEP_OUTPUTS, STEP_SPEC_ENV, type StepName, type StepsWithOutput } from "../../lib/steps/steps";

export interface Registered {
  type: string;
  name: string;
  inputs: Record<string, any>;
}

/** A step's output as its contract allows, for the resource `name`. */
function mockOutput(step: StepsWithOutput, name: string): string {
  switch (step) {
    case "build-relay-image":
      return encodeStepOutput(step, {
        relay: name.replace(/[^a-z0-9-]/g, "-"),
        imageDigest: "2".repeat(64),
        isoName: "relay-Mock-0123456789ab-01234567.iso",
        iso: "x.iso",
        uki: "relay.efi",
        files: "files.json",
        isoSha256: "0".repeat(64),
        ukiSha256: "1".repeat(64),
        isoBytes: 1,
        ukiBytes: 1,
        onionKeys: [],
      });
    case "measure-launch":
      return encodeStepOutput(step, "3".repeat(96));
    case "log-measurement":
      return encodeStepOutput(step, { added: true, path: "entries/000001.json", commit: "4".repeat(40) });
    case "start-local-vm":
      return encodeStepOutput(step, `started pid 4242, console /run/${name}/console.log`);
  }
}

export function mockFleetResources(stack: string): Registered[] {
  const registered: Registered[] = [];
  pulumi.runtime.setMocks(
    {
      newResource(args) {
        registered.push({ type: args.type, name: args.name, inputs: args.inputs });
        let state = args.inputs;
        if (args.type === "command:local:Command") {
          const step = String(args.inputs.create).split(" ").at(-1) as StepName;
          const stdout = STEP_OUTPUTS[step] ? `${args.name} log\n${mockOutput(step as StepsWithOutput, args.name)}` : `${args.name} done`;
          state = { ...args.inputs, stdout };
        }
        const id = args.type === "proxmoxve:index/fileLegacy:FileLegacy" ? `local:iso/${args.inputs.sourceFile.fileName}` : `${args.name}-id`;
        return { id, state };
      },
      call: (args) => args.inputs,
    },
    "diskless-relays",
    stack,
    false,
  );
  return registered;
}

/** Under mocks an environment holding a secret arrives wrapped as one secret value. */
export const environmentOf = (command: Registered): Record<string, string> => command.inputs.environment.value ?? command.inputs.environment;
export const specOf = (command: Registered) => JSON.parse(environmentOf(command)[STEP_SPEC_ENV]!);
