import * as pulumi from "@pulumi/pulumi";
import type { PlannedRelay } from "../lib/plan/fleet";
import type { RelayChannel, RelayTarget, StepSpec } from "../lib/steps/steps";
import type { RelayVm } from "./relay-vm";
import { stepResource } from "./step";

export interface RelayRolloutArgs {
  relay: PlannedRelay;
  relayDir: string;
  /** The image's build directory and its build record: a new build, a new gate. */
  imageDir: pulumi.Input<string>;
  built: pulumi.Input<unknown>;
  vm: RelayVm;
  channel: Omit<RelayChannel, "hostPublicKey">;
  target: RelayTarget;
  targetSecrets: Record<string, pulumi.Input<string>>;
  timeoutSeconds: number;
  rollback: boolean;
  /** Broker mode: the relay's health comes from its attested pushes (no SSH server in the image). */
  broker?: StepSpec<"roll-out">["broker"];
  projectDir: string;
}

/**
 * The gate after a relay's VM was replaced (cli/steps/roll-out.ts): it
 * returns once the relay is healthy on its new image, or fails after putting
 * it back on its last healthy image. Later relays in the rolling order wait
 * for it, so one relay that does not come back stops the rollout.
 */
export class RelayRollout extends pulumi.ComponentResource {
  readonly gate: pulumi.Resource;

  constructor(name: string, args: RelayRolloutArgs, opts?: pulumi.ComponentResourceOptions) {
    super("diskless-relays:relay:RelayRollout", name, {}, opts);
    const { relay } = args;
    this.gate = stepResource(
      `${name}-gate`,
      {
        step: "roll-out",
        onDelete: "remove-rollback-image",
        spec: {
          relay: relay.config.name,
          nickname: relay.config.nickname,
          relayDir: args.relayDir,
          image: args.imageDir,
          expected: {
            rsaFingerprint: relay.identity.rsaFingerprint,
            ed25519Identity: relay.identity.ed25519Identity,
            orPort: relay.config.orPort,
            exit: relay.config.exit.enabled,
          },
          channel: args.channel,
          target: args.target,
          timeoutSeconds: args.timeoutSeconds,
          rollback: args.rollback,
          ...(args.broker ? { broker: args.broker } : {}),
        },
        secretEnvironment: args.targetSecrets,
        triggers: [args.built, args.vm.instance],
        projectDir: args.projectDir,
      },
      { parent: this, dependsOn: [args.vm.vmResource] },
    );
    this.registerOutputs({});
  }
}
