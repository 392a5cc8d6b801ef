import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { join } from "node:path";

export interface StateCollectionArgs {
  relay: string;
  /** Where the collector reaches the relay's SSH server. */
  host: string;
  port: number;
  user: string;
  privateKeyFile: string;
  /** The relay's own SSH host public key, pinned: no trust on first use. */
  hostPublicKeyFile: string;
  connectTimeoutSeconds: number;
  allowFreshOnionKeys: boolean;
  /** The image digest about to be built; collection happens when it changes. */
  imageDigest: string;
  projectDir: string;
  buildRoot: string;
}

/**
 * Collects a running relay's onion keys and tor state over SSH right before
 * its image is rebuilt. On a relay's first deploy there is no VM yet and
 * nothing to collect; afterwards every new image digest triggers a
 * collection (an in-place update), and a relay that cannot be reached stops
 * its own redeploy before anything is built, uploaded or replaced.
 * The collected bytes live only in the private build directory; Pulumi's
 * state records the collector's summary, never a key byte.
 */
export class StateCollection extends pulumi.ComponentResource {
  /** Directory holding keys/secret_onion_key* and state for the next image. */
  readonly dir: pulumi.Output<string>;

  constructor(name: string, args: StateCollectionArgs, opts?: pulumi.ComponentResourceOptions) {
    super("diskless-relays:relay:StateCollection", name, {}, opts);
    const relayBuild = join(args.buildRoot, "relays", args.relay);
    const out = join(relayBuild, "collected", args.imageDigest.slice(0, 12));
    const collect = [
      "node_modules/.bin/tsx cli/collect-state.ts",
      `--relay ${args.relay} --host ${args.host} --port ${args.port} --user ${args.user}`,
      `--key ${args.privateKeyFile} --host-key ${args.hostPublicKeyFile} --out ${out}`,
      `--connect-timeout ${args.connectTimeoutSeconds}`,
      args.allowFreshOnionKeys ? "--allow-fresh-onion-keys" : "",
    ].join(" ").trim();
    const collection = new command.local.Command(
      `${name}-collect`,
      {
        dir: args.projectDir,
        // First deploy: the relay has never run, so it has nothing to hand over.
        create: `mkdir -p -m 0700 ${out} && echo "relay ${args.relay}: first deploy, nothing to collect"`,
        // Every later image digest: collect from the running relay first.
        // Older collections hold superseded onion keys: keep only this one.
        update: `${collect} && find ${join(relayBuild, "collected")} -mindepth 1 -maxdepth 1 ! -name ${args.imageDigest.slice(0, 12)} -exec rm -rf {} +`,
        delete: `rm -rf ${join(relayBuild, "collected")}`,
        environment: { IMAGE_DIGEST: args.imageDigest },
        // Default stdout+stderr logging carries the collector's warnings.
      },
      { parent: this },
    );
    this.dir = collection.stdout.apply(() => out);
    this.registerOutputs({ dir: this.dir });
  }
}
