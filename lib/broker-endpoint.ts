/**
 * The key broker's admin endpoint as the stack config names it, with its
 * token read from the token file. I/O: reads the token and CA files.
 */
import { readFileSync } from "node:fs";
import type { BrokerAdminEndpoint } from "./broker-admin";
import type { StackConfig } from "./config";
import { inProject } from "./fleet";

export function brokerAdminEndpoint(config: StackConfig, projectDir: string): BrokerAdminEndpoint {
  const broker = config.identity.mode === "broker" ? config.identity.broker : undefined;
  if (!broker?.admin) throw new Error("identity.broker.admin is not set: name the broker's admin socket or URL and its token file (key-broker init wrote admin.token)");
  const token = readFileSync(inProject(projectDir, broker.admin.tokenFile), "utf8").trim();
  const ca = broker.caFile ? readFileSync(inProject(projectDir, broker.caFile), "utf8") : undefined;
  if (broker.admin.socket) return { socket: inProject(projectDir, broker.admin.socket), token };
  return { url: broker.admin.url!, token, ...(ca ? { ca } : {}) };
}
