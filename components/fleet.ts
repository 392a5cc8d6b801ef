import * as pulumi from "@pulumi/pulumi";
import { mkdirSync } from "node:fs";
import type { StackConfig } from "../lib/config/config";
import { type PlannedRelay } from "../lib/plan/fleet";
import { inProject } from "../lib/core/paths";
import { baseImageInputs, brokerImageParts, RELAY_SCRIPT_PATHS, treeDigest } from "../lib/plan/image-inputs";
import { relayAgentBinary } from "../lib/broker/broker-agent";
import { rollingOrder } from "../lib/deploy/rollout";
import type { TestnetNetwork } from "../lib/config/testnet";
import { resolveBroker } from "../lib/broker/broker-endpoint";
import { BaseImage } from "./base-image";
import { qemuVmDriver } from "./local-relay-vm";
import { Monitoring } from "./monitoring";
import { Relay } from "./relay";
import { proxmoxVmDriver, type ObserveVms } from "./proxmox-relay-vm";
import { BaseSbom } from "./sbom";
import { artifactsDirOf, stackBuildRoot } from "../lib/config/build-layout";

export interface DeployFleetOptions {
  /** Where Pulumi runs the program and its steps; resource inputs hold paths relative to it. */
  projectDir: string;
  project: string;
  stack: string;
  /** A preview builds nothing and makes no directory. */
  dryRun: boolean;
  /** How the plan reads the relays' Proxmox VE VMs (lib/proxmox/observe-vms.ts); tests under Pulumi's mocks give their own. */
  observeVms?: ObserveVms;
}

/** Public facts about one relay, the stack output; no key material. */
export interface RelayOutputs {
  nickname: string;
  rsaFingerprint: string;
  ed25519Identity: string;
  signingCertExpiresAt: string;
  node: string;
  vmId: pulumi.Output<number | string>;
  imageDigest: string;
  iso: pulumi.Output<string>;
  sbom: string;
  snpLaunchMeasurement?: pulumi.Output<string>;
}

/**
 * The whole fleet, as the program registers it: one shared base and its
 * SBOM, then every relay in rolling order. Each relay's VM waits for the
 * rollout gates of the relays maxParallel places before it on its node.
 */
export function deployFleet(
  config: StackConfig,
  fleet: { relays: PlannedRelay[]; collectorPublicKey: string; testnet?: TestnetNetwork; brokerCaPem?: string; basePackages?: { sources: string[]; packages: string[] } },
  options: DeployFleetOptions,
): Record<string, RelayOutputs> {
  const { projectDir } = options;
  // Build directories hold key material: private, and outside the state.
  const buildDir = inProject(projectDir, config.buildDir);
  const buildRoot = stackBuildRoot(config, options.project, options.stack, projectDir);
  const artifactsDir = artifactsDirOf(projectDir);
  if (!options.dryRun) mkdirSync(buildRoot, { recursive: true, mode: 0o700 });

  const broker = resolveBroker(config, projectDir, fleet.testnet);
  const brokerParts = broker ? brokerImageParts(broker, relayAgentBinary(), fleet.brokerCaPem) : undefined;
  const reach = { projectDir, stack: options.stack, testnet: fleet.testnet, broker };
  const driver = config.target === "qemu" ? qemuVmDriver(config, reach) : proxmoxVmDriver(config, reach, { dryRun: options.dryRun, observeVms: options.observeVms });
  const flavour = config.image.flavour;
  const base = new BaseImage(flavour, { inputs: baseImageInputs(config.image, projectDir, fleet.basePackages), projectDir, buildRoot: buildDir });
  const baseSbom = new BaseSbom(flavour, { baseDir: base.dir, baseDigest: base.digest, flavour, artifactsDir, projectDir });
  const relayScripts = treeDigest(projectDir, RELAY_SCRIPT_PATHS);

  const relays = new Map<string, Relay>();
  for (const { planned, after } of rollingOrder(fleet.relays, config.rollout.maxParallel)) {
    relays.set(
      planned.config.name,
      new Relay(planned.config.name, {
        plan: planned,
        config,
        base,
        baseSbom,
        collectorPublicKey: fleet.collectorPublicKey,
        relayScripts,
        projectDir,
        buildRoot,
        artifactsDir,
        driver,
        ...(broker ? { broker, brokerParts } : {}),
        after: after.map((name) => relays.get(name)!.rollout.gate),
      }),
    );
  }

  // Only a fleet that exposes a MetricsPort gets Prometheus files.
  if (fleet.relays.some((planned) => planned.config.metrics)) {
    new Monitoring("monitoring", { stack: options.stack, relays: fleet.relays, artifactsDir, projectDir });
  }

  return Object.fromEntries(
    fleet.relays.map((planned) => {
      const relay = relays.get(planned.config.name)!;
      const outputs: RelayOutputs = {
        nickname: planned.config.nickname,
        rsaFingerprint: planned.identity.rsaFingerprint,
        ed25519Identity: planned.identity.ed25519Identity,
        signingCertExpiresAt: planned.identity.signingCertExpiresAt.toISOString(),
        node: planned.config.node,
        vmId: relay.vm.vmId,
        imageDigest: relay.imageDigest,
        iso: relay.image.isoName,
        sbom: relay.sbom.path,
        ...(relay.launchMeasurement ? { snpLaunchMeasurement: relay.launchMeasurement.measurement } : {}),
      };
      return [planned.config.name, outputs];
    }),
  );
}
