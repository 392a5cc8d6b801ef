/**
 * Removes a relay's old ISO images from Proxmox VE once its new VM is up and
 * healthy, keeping the newest ones. The endpoint comes in the spec, the
 * token in $PROXMOX_API_TOKEN, never on a command line.
 */
import { deleteVolume, isosToPrune, listIsos } from "../../lib/proxmox-api";
import { isoPrefix } from "../../lib/image-layout";
import { PROXMOX_TOKEN_ENV } from "../../lib/relay-targets";
import type { StepSpec } from "../../lib/steps";
import { StepFailure } from "./failure";

export async function pruneIsos(spec: StepSpec<"prune-isos">): Promise<void> {
  const apiToken = process.env[PROXMOX_TOKEN_ENV];
  if (!apiToken) throw new StepFailure(`prune-isos: ${PROXMOX_TOKEN_ENV} is not set`);
  const connection = { endpoint: spec.endpoint, apiToken, verifyTls: spec.verifyTls };
  const prefix = isoPrefix(spec.nickname);
  const volumes = await listIsos(connection, spec.node, spec.datastore, prefix);
  const prune = isosToPrune(volumes, spec.currentVolid, spec.keep);
  for (const volume of prune) await deleteVolume(connection, spec.node, spec.datastore, volume.volid);
  console.log(`${prefix}*: kept ${volumes.length - prune.length}, removed ${prune.length}${prune.length ? `: ${prune.map((v) => v.volid).join(", ")}` : ""}`);
}
