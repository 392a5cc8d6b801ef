/**
 * Pulumi's mocks for the resource-graph tests (graph.test.ts,
 * broker-graph.test.ts): every resource the program registers is recorded
 * with its inputs; a build step answers with a build record, other steps
 * with their name, and an ISO upload gets the volume id Proxmox VE gives.
 * Call before the program's components are imported.
 */
import * as pulumi from "@pulumi/pulumi";
import { STEP_SPEC_ENV } from "../../lib/steps/steps";

export interface Registered {
  type: string;
  name: string;
  inputs: Record<string, any>;
}

export function mockFleetResources(stack: string): Registered[] {
  const registered: Registered[] = [];
  pulumi.runtime.setMocks(
    {
      newResource(args) {
        registered.push({ type: args.type, name: args.name, inputs: args.inputs });
        let state = args.inputs;
        if (args.type === "command:local:Command") {
          const step = String(args.inputs.create).split(" ").at(-1);
          const stdout =
            step === "build-relay-image"
              ? JSON.stringify({ isoName: `relay-${args.name}-0123456789ab-01234567.iso`, iso: "x.iso", uki: "relay.efi", files: "files.json", isoSha256: "0".repeat(64), ukiSha256: "1".repeat(64) })
              : `${args.name} done`;
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
