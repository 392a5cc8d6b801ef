/**
 * Is my fleet healthy, and what is it running?
 *   npm run status [-- --stack NAME] [--json] [--node-ovmf FILE]...
 * One line per relay: the image the stack wants and the one its machine
 * runs, tor and its fingerprints (over the pinned channel: SSH to the relay
 * in image mode, its attested pushes to the key broker in broker mode), the
 * signing certificate's days left, the onion key's age, vulnerable packages
 * (from the last `npm run vulns`), package updates its image lacks (what the
 * mirror served at the last preview or up on this host) and the attestation
 * verdict. Read-only:
 * nothing is started, stopped, collected or written.
 * Exit status: 0 when every relay is healthy, 1 when any needs attention,
 * 2 when the status cannot be read (no stack, no deployment, a bad config).
 * A stack with a passphrase needs it in PULUMI_CONFIG_PASSPHRASE, as for
 * pulumi up; unset, it is taken to be empty, which the local stack's is.
 * A read-only token in PROXMOX_API_TOKEN takes the place of the stack's.
 * --node-ovmf: a firmware file copied from a node (Proxmox VE's own
 * /usr/share/pve-edk2-firmware/OVMF_SEV_4M.fd), also tried when an SNP
 * relay's measurement is refused: it matches when the VM booted it instead of
 * the pinned sev.ovmf.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { brokerStatus, type BrokerRelayStatus } from "../lib/broker/broker-admin";
import { brokerAdminEndpoint, resolveBroker } from "../lib/broker/broker-endpoint";
import { judgeRelay, renderStatusTable, statusExitCode, type DesiredRelay, type RelayObservation } from "../lib/ops/fleet-status";

import { inProject } from "../lib/core/paths";
import type { ProxmoxConnection } from "../lib/proxmox/proxmox-api";
import { relayChannelOf, relayTargetOf } from "../lib/deploy/relay-reach";
import { PROXMOX_ROOT_PASSWORD_ENV, PROXMOX_TOKEN_ENV, proxmoxConnection } from "../lib/deploy/relay-machine";
import { readStackConfig, readStackOutput, selectedStack } from "../lib/config/stack-config";
import { askHealthOverSsh, brokerObservation, observeMachine, rollbackObservation } from "../lib/ops/status-probe";
import { builtUkiOf, mismatchExplainer } from "../lib/ops/measurement-mismatch";
import { readNetwork } from "../lib/testnet/testnet-host";
import { readVulnReport } from "../lib/ops/vulns";
import { shellQuote } from "../lib/core/shell-quote";
import { describeChanges } from "../lib/image/package-index";
import { pendingUpdates, readMirrorRecord } from "../lib/image/package-set";
import { relayBuildDir, stackBuildRoot } from "../lib/config/build-layout";

const PROJECT = "diskless-relays";

class CannotRead extends Error {}

interface DeployedRelay {
  nickname: string;
  rsaFingerprint: string;
  ed25519Identity: string;
  signingCertExpiresAt: string;
  imageDigest: string;
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { stack: { type: "string" }, json: { type: "boolean", default: false }, "node-ovmf": { type: "string", multiple: true, default: [] } } });
  const nodeOvmf = values["node-ovmf"].map((file) => resolve(file));
  for (const file of nodeOvmf) if (!existsSync(file)) throw new CannotRead(`--node-ovmf ${file}: no such file (copy the node's firmware, e.g. /usr/share/pve-edk2-firmware/OVMF_SEV_4M.fd, here first)`);
  const projectDir = process.cwd();
  const stack = values.stack ?? (await selectedStack());
  const [config, outputs] = await Promise.all([readStackConfig(stack, { showSecrets: true }), readStackOutput(stack, "relayOutputs")]);
  const deployed = (outputs ?? {}) as Record<string, DeployedRelay>;
  if (outputs === undefined) throw new CannotRead(`stack ${stack} has no relayOutputs: it has not been deployed (pulumi up --stack ${shellQuote(stack)})`);

  const testnet = config.testnet ? readNetwork(inProject(projectDir, config.testnet.dir)) : undefined;
  if (config.target === "qemu" && !testnet) throw new CannotRead("the local stack's private network is not running: npm start (or npm run testnet) starts it");
  const broker = resolveBroker(config, projectDir, testnet);
  const reach = { projectDir, stack, ...(testnet ? { testnet } : {}), ...(broker ? { broker } : {}) };
  let proxmox: ProxmoxConnection | undefined;
  if (config.target === "proxmox") {
    const env = { ...process.env };
    env[PROXMOX_TOKEN_ENV] ??= config.proxmoxApiToken;
    if (config.proxmoxRootPassword) env[PROXMOX_ROOT_PASSWORD_ENV] ??= config.proxmoxRootPassword;
    proxmox = proxmoxConnection(config.proxmox!, env);
  }
  // One question to the broker answers for every relay.
  let brokerRelays: Map<string, BrokerRelayStatus> | undefined;
  let brokerError: string | undefined;
  if (broker) {
    try {
      brokerRelays = new Map((await brokerStatus(brokerAdminEndpoint(broker))).relays.map((r) => [r.relay, r]));
    } catch (err) {
      brokerError = `the key broker does not answer (${(err as Error).message})`;
    }
  }
  const buildRoot = stackBuildRoot(config, PROJECT, stack, projectDir);
  // The last `npm run vulns` of this stack; judged only against the image each relay runs.
  const vulns = readVulnReport(projectDir, stack);
  // What the mirror served at this host's last preview or up of the stack: fixes waiting for each relay's running image.
  const mirror = readMirrorRecord(buildRoot);
  const now = Date.now();

  // A refused measurement is tried against the relay's UKI, as built here, with other vCPU counts and models, and with the firmware files --node-ovmf names.
  const mismatchOf = (relay: (typeof config.relays)[number], relayDir: string) => {
    const sev = relay.sev;
    if (!sev?.enabled || !sev.ovmf) return undefined;
    const launch = { ovmf: inProject(projectDir, sev.ovmf), vcpus: relay.cores, vcpuType: sev.vcpuType ?? relay.cpuType };
    return (imageDigest: string, measurement: string) => {
      const uki = builtUkiOf(relayDir, imageDigest);
      return uki ? mismatchExplainer(relay.name, uki, launch, nodeOvmf)(measurement) : undefined;
    };
  };
  const rows = await Promise.all(
    config.relays.map(async (relay) => {
      const out = deployed[relay.name];
      const target = relayTargetOf(config, relay, reach);
      const relayDir = relayBuildDir(buildRoot, relay.name);
      const desired: DesiredRelay = {
        relay: relay.name,
        nickname: relay.nickname,
        node: relay.node,
        imageDigest: out?.imageDigest ?? "",
        rsaFingerprint: out?.rsaFingerprint ?? "",
        ed25519Identity: out?.ed25519Identity ?? "",
        signingCertExpiresAt: out?.signingCertExpiresAt ?? new Date(0).toISOString(),
        orPort: relay.orPort,
        exit: relay.exit.enabled,
        healthVia: broker ? "broker" : "ssh",
        ...(broker ? { pushIntervalSeconds: broker.pushIntervalSeconds } : {}),
        snp: relay.sev?.enabled === true,
      };
      const [machine, fromRelay] = await Promise.all([
        observeMachine(target, proxmox),
        broker
          ? Promise.resolve(brokerError ? { health: { error: brokerError } } : brokerObservation(brokerRelays!.get(relay.name), mismatchOf(relay, relayDir)))
          : askHealthOverSsh(relayChannelOf(config, relay, target, projectDir), relayDir).then((health) => ({ health })),
      ]);
      const rolledBack = rollbackObservation(relayDir);
      const evaluated = vulns?.relays[relay.name];
      const vulnerabilities = evaluated
        ? { imageDigest: evaluated.imageDigest, count: new Set(evaluated.matches.map((match) => match.package)).size, ...(evaluated.worst ? { worst: evaluated.worst } : {}), evaluatedAt: vulns!.generatedAt }
        : undefined;
      const waiting = pendingUpdates(relayDir, mirror, projectDir);
      const updates = waiting ? { imageDigest: waiting.imageDigest, count: waiting.changes.length, changes: describeChanges(waiting.changes), asOf: waiting.asOf } : undefined;
      const seen: RelayObservation = { machine, ...fromRelay, ...(rolledBack ? { rolledBack } : {}), ...(vulnerabilities ? { vulnerabilities } : {}), ...(updates ? { updates } : {}) };
      const row = judgeRelay(desired, seen, { now, certificate: config.certificate });
      if (!out) row.attention.unshift(`it is in the stack's config but was never deployed: pulumi up --stack ${shellQuote(stack)}`);
      return row;
    }),
  );

  if (values.json) process.stdout.write(JSON.stringify({ stack, time: new Date(now).toISOString(), relays: rows }, null, 2) + "\n");
  else process.stdout.write(`stack ${stack}, ${new Date(now).toISOString()}\n\n${renderStatusTable(rows)}`);
  return statusExitCode(rows);
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`status: ${err.message}`);
    process.exit(2);
  },
);
