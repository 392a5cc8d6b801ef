/**
 * The key broker's admin API (tools/broker/README.md), as the Pulumi program
 * and `npm run broker` use it: upload a relay's shipped keys, register and
 * retire the images it may boot, revoke it after a seizure, read its status
 * and attestation log. Over a unix socket (the local stack's broker) or
 * https, with the admin bearer token. Key bytes travel in request bodies
 * only, never in a URL or a log line. I/O: HTTP.
 */
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { RELAY_NAME } from "../core/plain-values";

export type BrokerAdminEndpoint = { socket: string; token: string; ca?: string } | { url: string; token: string; ca?: string };

/** What the broker says about one relay (GET /v1/admin/status; tools/broker/internal/broker/admin.go RelayStatus). */
export interface BrokerRelayStatus {
  relay: string;
  revoked: boolean;
  hasKeys: boolean;
  stale: boolean;
  images: { imageDigest: string; attestation: "snp" | "none"; measurements?: string[]; tokenConsumed?: boolean; retired: boolean }[];
  /** root: the trusted root that verified an SNP report, "amd/<line>" or "simulated/<line>" (the local stack's test chain). */
  lastAttestation: { time: string; imageDigest: string; purpose: string; evidenceKind: string; verdict: string; reason?: string; measurement?: string; reportedTcb?: string; root?: string } | null;
  /** The broker keeps the refused report's measurement and policy (genuine evidence only), for explaining a mismatch. */
  lastRefusal?: { time: string; imageDigest?: string; purpose: string; evidenceKind: string; verdict: string; reason?: string; measurement?: string; policy?: string; root?: string } | null;
  lastPush: string | null;
  /** The health report (relay-health's lines) of the latest accepted push, with the broker's time of receipt. */
  lastHealth: { time: string; imageDigest: string; report: string } | null;
}

export class BrokerAdminError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "BrokerAdminError";
  }
}

const DIGEST = /^[0-9a-f]{64}$/;

function relayPath(relay: string): string {
  if (!RELAY_NAME.test(relay)) throw new Error(`"${relay}" is not a relay name the broker accepts`);
  return `/v1/admin/relays/${relay}`;
}

/** One admin call; resolves with the parsed JSON answer, rejects with the broker's error code and message. */
function brokerAdmin(endpoint: BrokerAdminEndpoint, method: "GET" | "PUT" | "POST" | "DELETE", path: string, body?: unknown): Promise<unknown> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const headers: Record<string, string | number> = { authorization: `Bearer ${endpoint.token}`, accept: "application/json" };
  if (payload) Object.assign(headers, { "content-type": "application/json", "content-length": payload.length });
  return new Promise((resolve, reject) => {
    const onResponse = (res: import("node:http").IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) {
          const type = res.headers["content-type"] ?? "";
          return resolve(type.includes("json") && !type.includes("ndjson") && text ? JSON.parse(text) : text);
        }
        let code = "http-" + status;
        let message = text.trim();
        try {
          const parsed = JSON.parse(text) as { error?: { code?: string; message?: string } };
          code = parsed.error?.code ?? code;
          message = parsed.error?.message ?? message;
        } catch {
          // not JSON: keep the text
        }
        reject(new BrokerAdminError(status, code, `key broker refused ${method} ${path}: ${code}: ${message}`));
      });
    };
    const req =
      "socket" in endpoint
        ? httpRequest({ socketPath: endpoint.socket, method, path, headers, timeout: 30_000 }, onResponse)
        : httpsRequest(new URL(path, endpoint.url), { method, headers, timeout: 30_000, ...(endpoint.ca ? { ca: endpoint.ca } : {}) }, onResponse);
    req.on("timeout", () => req.destroy(new Error(`key broker did not answer ${method} ${path} within 30s`)));
    req.on("error", (err) => reject(new Error(`cannot reach the key broker's admin API (${"socket" in endpoint ? endpoint.socket : endpoint.url}): ${err.message}`)));
    req.end(payload);
  });
}

/** Uploads the relay's shipped files (identity, family key, first onion keys), named as in tor's DataDirectory ("keys/secret_id_key"). */
export async function uploadRelayKeys(endpoint: BrokerAdminEndpoint, relay: string, files: Record<string, Buffer>): Promise<void> {
  const encoded = Object.fromEntries(Object.entries(files).map(([name, bytes]) => [name, bytes.toString("base64")]));
  await brokerAdmin(endpoint, "PUT", `${relayPath(relay)}/keys`, { files: encoded });
}

/** The broker's refusal code for a report whose measurement is not registered (tools/broker snpcheck CodeMeasurement). */
export const MEASUREMENT_MISMATCH = "measurement-mismatch";

export type ImageRegistration = { imageDigest: string; attestation: "snp"; measurements: string[] } | { imageDigest: string; attestation: "none"; tokenSha256: string };

/** Lets the relay's new image receive its keys: before its VM is replaced. */
export async function registerImage(endpoint: BrokerAdminEndpoint, relay: string, registration: ImageRegistration): Promise<void> {
  if (!DIGEST.test(registration.imageDigest)) throw new Error(`"${registration.imageDigest}" is not an image digest`);
  await brokerAdmin(endpoint, "POST", `${relayPath(relay)}/images`, registration);
}

/** The old image gets nothing any more: once the new one is healthy. */
export async function retireImage(endpoint: BrokerAdminEndpoint, relay: string, imageDigest: string): Promise<void> {
  if (!DIGEST.test(imageDigest)) throw new Error(`"${imageDigest}" is not an image digest`);
  await brokerAdmin(endpoint, "DELETE", `${relayPath(relay)}/images/${imageDigest}`);
}

export async function revokeRelay(endpoint: BrokerAdminEndpoint, relay: string): Promise<void> {
  await brokerAdmin(endpoint, "POST", `${relayPath(relay)}/revoke`);
}

export async function reenrollRelay(endpoint: BrokerAdminEndpoint, relay: string, keepKeys: boolean): Promise<void> {
  await brokerAdmin(endpoint, "POST", `${relayPath(relay)}/reenroll`, { keepKeys });
}

export async function brokerStatus(endpoint: BrokerAdminEndpoint): Promise<{ time: string; relays: BrokerRelayStatus[] }> {
  return (await brokerAdmin(endpoint, "GET", "/v1/admin/status")) as { time: string; relays: BrokerRelayStatus[] };
}

/** The attestation log of one relay: one JSON object per verdict or admin action. */
export async function attestationLog(endpoint: BrokerAdminEndpoint, relay: string): Promise<Record<string, unknown>[]> {
  relayPath(relay);
  const text = String(await brokerAdmin(endpoint, "GET", `/v1/admin/log?relay=${relay}`));
  return text
    .split("\n")
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}
