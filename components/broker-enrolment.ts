import * as pulumi from "@pulumi/pulumi";
import type { PlannedRelay } from "../lib/plan/fleet";
import type { BrokerAdminSpec, StepSpec } from "../lib/steps/steps";
import { stepResource } from "./step";

export interface BrokerEnrolmentArgs {
  relay: PlannedRelay;
  broker: BrokerAdminSpec;
  attestation: "snp" | "none";
  /** What an SEV-SNP launch of the image is measured with (attestation "snp"). */
  launch?: StepSpec<"register-image">["launch"];
  /** What was collected from the running relay (a relay moving from image mode hands its onion keys over). */
  collectedDir: pulumi.Input<string>;
  collection: pulumi.Input<string>;
  imageDigest: string;
  /** The image's build directory: a new build registers again (a token-mode build carries a new token). */
  imageDir: pulumi.Input<string>;
  /** What must be done before the image is registered: its launch in the public measurement log. */
  registerAfter?: pulumi.Resource[];
  projectDir: string;
}

/**
 * Broker mode: the relay's place at the key broker (cli/steps/broker.ts).
 * Its shipped keys are uploaded (again when its identity changes, e.g. a
 * renewed signing certificate; the onion keys it pushed are kept), and its
 * new image is registered, before its VM is replaced. When a newer image's
 * registration supersedes this one, Pulumi deletes this one at the end of
 * the update, once every gate has passed: the old image is then retired and
 * gets nothing any more.
 */
export class BrokerEnrolment extends pulumi.ComponentResource {
  readonly keys: pulumi.Resource;
  readonly registration: pulumi.Resource;

  constructor(name: string, args: BrokerEnrolmentArgs, opts?: pulumi.ComponentResourceOptions) {
    super("diskless-relays:relay:BrokerEnrolment", name, {}, opts);
    const { relay } = args;
    const identity = relay.identity;
    this.keys = stepResource(
      `${name}-keys`,
      {
        step: "upload-relay-keys",
        onDelete: "forget-relay-keys",
        spec: {
          relay: relay.config.name,
          keysDir: relay.keysDir,
          ...(relay.familyKeyFile ? { familyKeyFile: relay.familyKeyFile } : {}),
          collectedDir: args.collectedDir,
          collection: args.collection,
          // Public facts only: a renewed certificate or another family key changes the spec, and the keys are uploaded again
          // (in place: the resource is never replaced, so its delete step runs only when the relay leaves the stack).
          identity: { rsaFingerprint: identity.rsaFingerprint, ed25519Identity: identity.ed25519Identity, signingCertExpiresAt: identity.signingCertExpiresAt.toISOString() },
          broker: args.broker,
        },
        projectDir: args.projectDir,
      },
      { parent: this },
    );
    this.registration = stepResource(
      `${name}-image`,
      {
        step: "register-image",
        onDelete: "retire-image",
        spec: {
          relay: relay.config.name,
          imageDigest: args.imageDigest,
          image: args.imageDir,
          attestation: args.attestation,
          ...(args.launch ? { launch: args.launch } : {}),
          broker: args.broker,
        },
        // A new digest is a new registration; the old one's delete step retires it at the end of the update, once every
        // gate has passed. A rebuild of the same digest (newer collected state, a new boot token) registers again in place:
        // replacing it would retire the very image the relay runs.
        triggers: [args.imageDigest],
        projectDir: args.projectDir,
      },
      { parent: this, dependsOn: [this.keys, ...(args.registerAfter ?? [])] },
    );
    this.registerOutputs({});
  }
}
