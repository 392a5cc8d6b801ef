import * as pulumi from "@pulumi/pulumi";
import { join } from "node:path";
import type { RelayChannel, RelayTarget, StepSpec } from "../lib/steps/steps";
import { stepResource } from "./step";

export interface StateCollectionArgs {
  relay: string;
  /** The image digest about to be built; collection happens when it changes. */
  imageDigest: string;
  /** The channel to the relay; its host key is the fallback pin for a relay with no healthy image on record. */
  channel: RelayChannel;
  target: RelayTarget;
  targetSecrets: Record<string, pulumi.Input<string>>;
  allowFreshOnionKeys: boolean;
  /** Broker mode: a relay on a broker-mode image pushed its onion keys to the broker; the collection asks it instead. */
  broker?: StepSpec<"collect-state">["broker"];
  projectDir: string;
  /** The relay's private build directory. */
  relayDir: string;
}

/**
 * Collects a running relay's onion keys and tor state over SSH right before
 * its image is rebuilt (cli/steps/collect-state.ts). The target decides
 * whether there is anything to collect: no VM or QEMU process, nothing; one
 * that runs must hand its keys over, or the redeploy stops before anything
 * is built, uploaded or replaced. The collected bytes live only in the
 * relay's private build directory; the state records a summary, never a key.
 */
export class StateCollection extends pulumi.ComponentResource {
  /** Directory holding keys/secret_onion_key* and state for the next image. */
  readonly dir: pulumi.Output<string>;
  /** The collector's summary: changes with every collection. */
  readonly summary: pulumi.Output<string>;

  constructor(name: string, args: StateCollectionArgs, opts?: pulumi.ComponentResourceOptions) {
    super("diskless-relays:relay:StateCollection", name, {}, opts);
    const out = join(args.relayDir, "collected", args.imageDigest.slice(0, 12));
    const collection = stepResource(
      `${name}-collect`,
      {
        step: "collect-state",
        onDelete: "remove-collected-state",
        spec: {
          relay: args.relay,
          relayDir: args.relayDir,
          imageDigest: args.imageDigest,
          channel: args.channel,
          target: args.target,
          allowFreshOnionKeys: args.allowFreshOnionKeys,
          ...(args.broker ? { broker: args.broker } : {}),
        },
        secretEnvironment: args.targetSecrets,
        projectDir: args.projectDir,
      },
      { parent: this },
    );
    this.summary = collection.stdout;
    this.dir = collection.stdout.apply(() => out);
    this.registerOutputs({ dir: this.dir });
  }
}
