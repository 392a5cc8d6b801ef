/**
 * Removes a relay's old ISO images (and an SNP relay's old UKIs) from Proxmox
 * VE once its new VM is up and healthy, keeping the newest ones. The endpoint
 * comes in the spec, the credentials in the environment, never on a command
 * line.
 */
import { deleteVolume, isosToPrune, listIsos } from "../../lib/proxmox/proxmox-api";
import { isoPrefix } from "../../lib/image/image-layout";
import { proxmoxConnection } from "../../lib/deploy/relay-machine";
import type { StepSpec } from "../../lib/steps/steps";
import { StepFailure } from "../../lib/steps/step-failure";

export async function pruneIsos(spec: StepSpec<"prune-isos">): Promise<void> {
  let connection;
  try {
    connection = proxmoxConnection(spec);
  } catch (err) {
    throw new StepFailure(`prune-isos: ${(err as Error).message}`);
  }
  const prefix = isoPrefix(spec.nickname);
  const all = await listIsos(connection, spec.node, spec.datastore, prefix);
  // ISOs and UKIs are kept by kind: keeping two images means two of each.
  const kinds = [{ suffix: ".iso", current: spec.currentVolid }, ...(spec.currentUkiVolid ? [{ suffix: ".efi.img", current: spec.currentUkiVolid }] : [])];
  for (const kind of kinds) {
    const volumes = all.filter((volume) => volume.volid.endsWith(kind.suffix));
    const prune = isosToPrune(volumes, kind.current, spec.keep);
    for (const volume of prune) await deleteVolume(connection, spec.node, spec.datastore, volume.volid);
    console.log(`${prefix}*${kind.suffix}: kept ${volumes.length - prune.length}, removed ${prune.length}${prune.length ? `: ${prune.map((v) => v.volid).join(", ")}` : ""}`);
  }
}
