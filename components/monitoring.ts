import * as pulumi from "@pulumi/pulumi";
import type { PlannedRelay } from "../lib/plan/fleet";
import { monitoringTargets, type MonitoringSpec } from "../lib/render/monitoring";
import { stepResource } from "./step";
import { monitoringDir } from "../lib/config/build-layout";

export interface MonitoringArgs {
  stack: string;
  relays: PlannedRelay[];
  artifactsDir: string;
  projectDir: string;
}

/**
 * The fleet's Prometheus files (artifacts/monitoring/<stack>/: the scrape
 * job, its targets with each relay's labels, the alert rules), written on
 * `pulumi up` by the write-monitoring step and again whenever a relay's
 * MetricsPort, address or labels change; removed with the resource (the
 * old files go before the new are written). A preview writes nothing.
 */
export class Monitoring extends pulumi.ComponentResource {
  readonly dir: string;

  constructor(name: string, args: MonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
    super("diskless-relays:monitoring:Monitoring", name, {}, opts);
    this.dir = monitoringDir(args.artifactsDir, args.stack);
    const monitoring: MonitoringSpec = { stack: args.stack, targets: monitoringTargets(args.relays) };
    stepResource(
      `${name}-write`,
      {
        step: "write-monitoring",
        onDelete: "remove-monitoring",
        spec: { ...monitoring, outDir: this.dir },
        // The files are a function of the spec alone: any change rewrites them.
        triggers: [JSON.stringify(monitoring)],
        projectDir: args.projectDir,
      },
      // Replaced in place of the old: removing after writing would take the new files with it.
      { parent: this, deleteBeforeReplace: true },
    );
    this.registerOutputs({ dir: this.dir });
  }
}
