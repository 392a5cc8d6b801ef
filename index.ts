import * as proxmoxve from "@muhlba91/pulumi-proxmoxve";
import * as pulumi from "@pulumi/pulumi";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { BaseImage } from "./components/base-image";
import { LocalRelayVm } from "./components/local-relay-vm";
import { Relay, type RelayArgs } from "./components/relay";
import { ProxmoxRelayVm } from "./components/relay-vm";
import { BaseSbom } from "./components/sbom";
import { ConfigError, parseStackConfig, projectConfigObject, type StackConfig } from "./lib/config";
import { FleetError, inProject, planFleet } from "./lib/fleet";
import { baseImageInputs, RELAY_SCRIPT_PATHS, treeDigest } from "./lib/image-inputs";
import { rollingOrder } from "./lib/rollout";

// Pulumi runs the program and its plugins in the project directory; every
// path handed to a resource is relative to it (see inProject).
const projectDir = ".";

/**
 * Reads every key of this project's stack config and validates it as a whole,
 * so that a bad config (a typo included) stops the run before any resource is
 * registered. The token is read raw to validate it synchronously; it is
 * wrapped as a secret again before it reaches any resource.
 */
function loadStackConfig(): StackConfig {
  return parseStackConfig(projectConfigObject(pulumi.runtime.allConfig(), pulumi.getProject()));
}

function plan() {
  try {
    const config = loadStackConfig();
    const fleet = planFleet(config, { projectDir, now: new Date(), needCollectionKey: !pulumi.runtime.isDryRun() });
    return { config, fleet };
  } catch (err) {
    // A RunError prints its message alone, without a stack trace.
    if (err instanceof ConfigError || err instanceof FleetError) throw new pulumi.RunError(err.message);
    throw err;
  }
}

const { config, fleet } = plan();
for (const warning of fleet.warnings) pulumi.log.warn(warning);

// Build directories hold key material: private, and outside the state.
const buildDir = inProject(projectDir, config.buildDir);
const buildRoot = join(buildDir, `${pulumi.getProject()}-${pulumi.getStack()}`);
const artifactsDir = join(projectDir, "artifacts");
if (!pulumi.runtime.isDryRun()) mkdirSync(buildRoot, { recursive: true, mode: 0o700 });

/** The VM each relay runs in: Proxmox VE, or QEMU on this machine for the local stack. */
function vmTarget(): RelayArgs["createVm"] {
  if (config.target === "qemu") {
    const runtimeDir = join(projectDir, ".runtime", pulumi.getStack());
    return (name, args, opts) =>
      new LocalRelayVm(name, { ...args, runtimeDir, projectDir, sshPort: args.relay.sshPort!, orPort: args.relay.localOrPort! }, opts);
  }
  const target = config.proxmox!;
  const apiToken = pulumi.secret(config.proxmoxApiToken!);
  const provider = new proxmoxve.Provider("proxmox", { endpoint: target.endpoint, apiToken, insecure: !target.verifyTls });
  return (name, args, opts) =>
    new ProxmoxRelayVm(
      name,
      {
        ...args,
        datastore: target.datastore,
        bridge: target.bridge,
        keepIsos: target.keepIsos,
        connection: { endpoint: target.endpoint, apiToken, verifyTls: target.verifyTls },
        projectDir,
      },
      { ...opts, provider },
    );
}
const createVm = vmTarget();

const base = new BaseImage(config.image.flavour, { inputs: baseImageInputs(config.image, projectDir), projectDir, buildRoot: buildDir });
const baseSbom = new BaseSbom(config.image.flavour, { baseDir: base.dir, baseDigest: base.digest, flavour: config.image.flavour, artifactsDir, projectDir });
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
      createVm,
      after: after.map((name) => relays.get(name)!.vm.machine),
    }),
  );
}

/** Public facts about each relay; no key material. */
export const relayOutputs = Object.fromEntries(
  fleet.relays.map((planned) => {
    const relay = relays.get(planned.config.name)!;
    return [
      planned.config.name,
      {
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
      },
    ];
  }),
);
