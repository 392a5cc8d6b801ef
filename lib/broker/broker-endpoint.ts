/**
 * The key broker a broker-mode stack uses, resolved: the one its config
 * names, or on the local stack the testnet's own (network.json) for every
 * field the config leaves out. And its admin endpoint, with the token read
 * from its file. I/O: brokerAdminEndpoint reads the token and CA files.
 */
import { readFileSync } from "node:fs";
import type { BrokerAdminEndpoint } from "./broker-admin";
import type { StackConfig } from "../config/config";
import { inProject } from "../core/paths";
import type { BrokerAdminSpec } from "../steps/steps";
import type { TestnetNetwork } from "../config/testnet";

type BrokerConfig = NonNullable<StackConfig["identity"]["broker"]>;

/** Everything about the broker a broker-mode deploy needs; paths are absolute or relative to the project. */
export interface ResolvedBroker {
  url: string;
  signingPublicKey: string;
  pushRecipient: string;
  caFile?: string;
  attestation: "snp" | "none";
  allowSimulatedAttestation: boolean;
  pushIntervalSeconds: number;
  admin: { socket: string; tokenFile: string } | { url: string; tokenFile: string };
  /** The local stack: the simulated secure processor's test chain the testnet's broker trusts. */
  simulatorDir?: string;
}

/** Undefined in image mode. Throws naming the missing field (the config check already did, for a complete config). */
export function resolveBroker(config: Pick<StackConfig, "identity">, projectDir: string, testnet?: TestnetNetwork): ResolvedBroker | undefined {
  if (config.identity.mode !== "broker") return undefined;
  const broker: BrokerConfig = config.identity.broker!;
  const local = testnet?.broker;
  const need = <T>(value: T | undefined, field: string): T => {
    if (value === undefined) throw new Error(`identity.broker.${field} is not set, and no testnet broker provides it`);
    return value;
  };
  const admin = broker.admin
    ? broker.admin.socket
      ? { socket: inProject(projectDir, broker.admin.socket), tokenFile: inProject(projectDir, broker.admin.tokenFile) }
      : { url: broker.admin.url!, tokenFile: inProject(projectDir, broker.admin.tokenFile) }
    : { socket: need(local?.adminSocket, "admin"), tokenFile: local!.tokenFile };
  const caFile = broker.caFile ? inProject(projectDir, broker.caFile) : broker.url ? undefined : local?.caFile;
  return {
    url: broker.url ?? need(local?.url, "url"),
    signingPublicKey: broker.signingPublicKey ?? need(local?.signingPublicKey, "signingPublicKey"),
    pushRecipient: broker.pushRecipient ?? need(local?.pushRecipient, "pushRecipient"),
    ...(caFile ? { caFile } : {}),
    attestation: broker.attestation,
    allowSimulatedAttestation: broker.allowSimulatedAttestation,
    pushIntervalSeconds: broker.pushIntervalSeconds,
    admin,
    ...(local && broker.allowSimulatedAttestation ? { simulatorDir: local.simulatorDir } : {}),
  };
}

export function brokerAdminEndpoint(broker: Pick<ResolvedBroker, "admin" | "caFile">): BrokerAdminEndpoint {
  const token = readFileSync(broker.admin.tokenFile, "utf8").trim();
  if ("socket" in broker.admin) return { socket: broker.admin.socket, token };
  const ca = broker.caFile ? readFileSync(broker.caFile, "utf8") : undefined;
  return { url: broker.admin.url, token, ...(ca ? { ca } : {}) };
}

/** The admin endpoint as a step's spec carries it: paths only, the token stays in its file. */
export function brokerAdminSpec(broker: Pick<ResolvedBroker, "admin" | "caFile">): BrokerAdminSpec {
  if ("socket" in broker.admin) return { socket: broker.admin.socket, tokenFile: broker.admin.tokenFile };
  return { url: broker.admin.url, tokenFile: broker.admin.tokenFile, ...(broker.caFile ? { caFile: broker.caFile } : {}) };
}
