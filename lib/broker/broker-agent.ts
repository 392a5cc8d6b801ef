/**
 * Broker mode: the configuration a relay image's agent (tools/broker,
 * relay-agent) reads at boot, rendered from the stack config as data. Public
 * facts only: who the relay is, which image it runs, where the broker is and
 * the keys that pin it. The agent validates it again with its own rules
 * (unknown fields refused). Pure: no I/O (relayAgentBinary only names a path).
 */
import { join } from "node:path";
import type { ResolvedBroker } from "./broker-endpoint";
import { OVERLAY_FILES } from "../image/image-layout";
import { TOR_DATA_DIRECTORY } from "../image/guest-paths";
import { SNP_SERIAL_PORT } from "../local/qemu";
import { toolsBin } from "../core/paths";

/** The agent every broker-mode image carries, as scripts/setup.sh builds it (go build -trimpath: the same source and Go release give the same bytes). */
export const relayAgentBinary = () => join(toolsBin(), "relay-agent");

type BrokerConfig = Pick<ResolvedBroker, "url" | "signingPublicKey" | "pushRecipient" | "attestation" | "allowSimulatedAttestation" | "pushIntervalSeconds">;

/** The image's health report (images/rootfs/files/usr/local/sbin/relay-health), the same one SSH's forced command answers. */
const HEALTH_COMMAND_IN_IMAGE = "/usr/local/sbin/relay-health";

/** Where the image carries the broker's CA. */
const BROKER_CA_IN_IMAGE = `/${OVERLAY_FILES.brokerCa.path}`;


/** Where a token-mode image keeps its boot token (root only, 0600). */
const BOOT_TOKEN_IN_IMAGE = `/${OVERLAY_FILES.bootToken.path}`;

export interface AgentConfigInput {
  relay: string;
  imageDigest: string;
  broker: BrokerConfig;
  /** Whether the image carries the broker's CA (an https broker with a private CA). */
  withCa: boolean;
  /** An SEV-SNP relay's public attestation endpoint (config servesPublicAttestation): its port and where its build record is published. */
  publicAttestation?: { port: number; buildRecord: string };
}

/** The report source in the guest: the simulator's port locally, the SEV guest device on hardware. */
function reportSource(broker: BrokerConfig): string {
  return broker.allowSimulatedAttestation ? `serial:/dev/virtio-ports/${SNP_SERIAL_PORT}` : "sev-guest";
}

export function renderAgentConfig(input: AgentConfigInput): string {
  const { broker } = input;
  const config = {
    relay: input.relay,
    imageDigest: input.imageDigest,
    brokerUrl: broker.url,
    brokerSigningPublicKey: broker.signingPublicKey,
    pushRecipient: broker.pushRecipient,
    attestation: broker.attestation,
    ...(broker.attestation === "snp" ? { reportSource: reportSource(broker) } : { tokenFile: BOOT_TOKEN_IN_IMAGE }),
    torDataDir: TOR_DATA_DIRECTORY,
    // The agent writes as root; relay-tor gives the directory to tor's user (named per flavour) before tor starts.
    torUser: 0,
    torGroup: 0,
    pushIntervalSeconds: broker.pushIntervalSeconds,
    ...(input.withCa ? { brokerCaFile: BROKER_CA_IN_IMAGE } : {}),
    // Each push carries the relay's health report: the rollout gate reads it from the broker, no SSH needed.
    healthCommand: HEALTH_COMMAND_IN_IMAGE,
    ...(input.publicAttestation ? { publicAttestation: { port: input.publicAttestation.port, buildRecord: input.publicAttestation.buildRecord } } : {}),
  };
  return JSON.stringify(config, null, 1) + "\n";
}

/**
 * How long after a relay's last push to the key broker what it pushed counts
 * as current: one missed push and a minute of slack, at least two minutes.
 * The one rule for both readers of a push's age: the status board (is the
 * pushed health report fresh?) and state collection (does the broker hold
 * the relay's current onion keys?).
 */
export const pushFreshnessSeconds = (pushIntervalSeconds: number) => Math.max(2 * pushIntervalSeconds + 60, 120);
