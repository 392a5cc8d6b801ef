/**
 * The files a key broker bundle may hold, the relay-name rule and the vCPU model rule, as the broker, its relay agent
 * and the measurement log
 * (tools/broker, Go) read them: rendered from the one list of each kind here
 * into tools/broker/internal/protocol/files.json, which the Go code embeds.
 * test/unit/broker-agent.test.ts fails when the two differ; `npx tsx
 * cli/broker-files.ts` writes the file anew. Pure: no I/O.
 */
import { DIRECTORY_CACHE_FILES, MAX_DIRECTORY_DOCUMENT_BYTES } from "../steps/steps";
import { IDENTITY_FILES, ONION_KEY_FILES } from "../tor/tor-keys";
import { CPU_MODEL, RELAY_NAME } from "../core/plain-values";
import { DEFAULT_PUBLIC_ATTESTATION_PORT } from "../config/config";

/** Where the Go code embeds the file set, relative to the project. */
export const BROKER_FILE_SET_PATH = "tools/broker/internal/protocol/files.json";

export interface BrokerFileSet {
  source: string;
  /** Shipped by the operator (admin upload), never pushed; all required in a boot release. */
  identity: string[];
  /** Pushed by the running relay, each push replacing the last: onion keys, state and directory documents. */
  mutable: string[];
  /** The mutable files that are public directory documents, with the first line each must start with. */
  directoryDocuments: { name: string; firstLine: string }[];
  /** Their size bound; keys and state have the broker's own, much smaller one. */
  maxDirectoryDocumentBytes: number;
  /** The relay-name rule (lib/core/plain-values.ts RELAY_NAME), as a Go regexp takes it. */
  relayName: string;
  /** The vCPU model rule (lib/core/plain-values.ts CPU_MODEL), for the measurement log's entries. */
  cpuModel: string;
  /** Where an SNP relay answers volunteers by default (lib/config/config.ts), for verify-relay's --port. */
  publicAttestationPort: number;
}

export function brokerFileSet(): BrokerFileSet {
  const directoryDocuments = Object.entries(DIRECTORY_CACHE_FILES).map(([name, firstLine]) => ({ name, firstLine }));
  return {
    source: "generated from lib/image/broker-files.ts by `npx tsx cli/broker-files.ts`; do not edit",
    identity: IDENTITY_FILES.map((file) => `keys/${file}`),
    mutable: [...ONION_KEY_FILES.map((file) => `keys/${file}`), "state", ...directoryDocuments.map((document) => document.name)],
    directoryDocuments,
    maxDirectoryDocumentBytes: MAX_DIRECTORY_DOCUMENT_BYTES,
    relayName: RELAY_NAME.source,
    cpuModel: CPU_MODEL.source,
    publicAttestationPort: DEFAULT_PUBLIC_ATTESTATION_PORT,
  };
}

/** The text of files.json. */
export function renderBrokerFileSet(): string {
  return JSON.stringify(brokerFileSet(), null, 1) + "\n";
}
