/**
 * The program's own Proxmox VE API calls (lib/proxmox/proxmox-api.ts) never
 * write a request to a connection the server may be closing. Node keeps idle
 * sockets open for the next request by default (since 19); a server closes
 * an idle connection when its own keep-alive timeout runs out, and a request
 * that crosses that close fails with "socket hang up", not telling whether a
 * POST was acted on. The server here makes that race certain: it answers a
 * connection's first request, keeps the connection open, and closes it
 * without an answer when a second request arrives on it.
 */
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiGet } from "../../lib/proxmox/proxmox-api";
import { loopbackCertificate } from "../support/proxmox";
import { privateTmpDir } from "../support/tmp";

describe("the program's Proxmox VE API calls", () => {
  const dir = privateTmpDir("api-connections");
  let server: Server;
  let endpoint: string;
  let connections = 0;
  let dropped = 0;

  beforeAll(async () => {
    const { cert, key } = loopbackCertificate(dir, "server");
    server = createServer({ key: readFileSync(key), cert: readFileSync(cert), keepAliveTimeout: 60_000 });
    server.on("connection", () => connections++);
    const served = new WeakSet<object>();
    server.on("request", (req, res) => {
      if (served.has(req.socket)) {
        // The server's close crossing the client's next request on this connection.
        dropped++;
        req.socket.destroy();
        return;
      }
      served.add(req.socket);
      res.setHeader("Content-Type", "application/json");
      res.end(JSON.stringify({ data: { version: "9.2.11" } }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    endpoint = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(() => server?.close());

  it("open a connection per call, so a connection the server closes is never written to", async () => {
    const connection = { endpoint, verifyTls: false, apiToken: "root@pam!test=00000000-0000-0000-0000-000000000000" };
    for (let call = 0; call < 3; call++) {
      expect(await apiGet(connection, "/version")).toEqual({ version: "9.2.11" });
    }
    expect(connections).toBe(3);
    expect(dropped).toBe(0);
  });
});
