/**
 * The few Proxmox VE HTTP API calls the program makes itself (the provider
 * makes the rest): listing and deleting a relay's old ISO images.
 */
import { request } from "node:https";

export interface ProxmoxConnection {
  endpoint: string;
  apiToken: string;
  verifyTls: boolean;
}

export interface IsoVolume {
  volid: string;
  ctime: number;
}

function call(connection: ProxmoxConnection, method: string, path: string): Promise<unknown> {
  const url = new URL(`/api2/json${path}`, connection.endpoint);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method, headers: { Authorization: `PVEAPIToken=${connection.apiToken}` }, rejectUnauthorized: connection.verifyTls },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          const body = Buffer.concat(chunks).toString("utf8");
          if ((res.statusCode ?? 500) >= 300) return reject(new Error(`${method} ${url.pathname}: HTTP ${res.statusCode} ${body.slice(0, 200)}`));
          try {
            resolve((JSON.parse(body) as { data: unknown }).data);
          } catch {
            reject(new Error(`${method} ${url.pathname}: not JSON`));
          }
        });
      },
    );
    req.on("error", reject);
    req.end();
  });
}

/** The ISO volumes on a datastore whose file names start with `prefix`. */
export async function listIsos(connection: ProxmoxConnection, node: string, datastore: string, prefix: string): Promise<IsoVolume[]> {
  const data = (await call(connection, "GET", `/nodes/${encodeURIComponent(node)}/storage/${encodeURIComponent(datastore)}/content?content=iso`)) as IsoVolume[];
  return data.filter((volume) => volume.volid.startsWith(`${datastore}:iso/${prefix}`));
}

export async function deleteVolume(connection: ProxmoxConnection, node: string, datastore: string, volid: string): Promise<void> {
  await call(connection, "DELETE", `/nodes/${encodeURIComponent(node)}/storage/${encodeURIComponent(datastore)}/content/${encodeURIComponent(volid)}`);
}

/** The volumes to remove: all but the current one and the newest `keep - 1` others. */
export function isosToPrune(volumes: IsoVolume[], currentVolid: string, keep: number): IsoVolume[] {
  const others = volumes.filter((volume) => volume.volid !== currentVolid).sort((a, b) => b.ctime - a.ctime);
  return others.slice(Math.max(keep - 1, 0));
}
