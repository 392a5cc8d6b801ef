/**
 * Why a relay's report carries another launch measurement than its image's:
 * the likely causes tried offline, with the same UKI and OVMF, so that a
 * broker refusal `measurement-mismatch` says what to change instead of only
 * that something differs. Tried: every count of 1 to MAX_VCPUS vCPUs of
 * every vCPU model the measurement knows (Proxmox VE starts the VM with the
 * config's cores and cpuType; a VM edited by hand or a model the node
 * reports differently changes the VMSAs). Not in the measurement, so not
 * tried: the guest policy (the report carries it beside the measurement;
 * the broker refuses a wrong one with its own code). Pure.
 */
import { launchMeasurementsByVcpus } from "./launch-digest";
import { vcpuTypeNames } from "./vcpu-types";

/** The largest vCPU count tried: more than a relay VM is given. */
const MAX_VCPUS = 64;

export interface MeasuredLaunch {
  ovmf: Uint8Array;
  kernel: Uint8Array;
  vcpus: number;
  vcpuType: string;
}

export type MismatchCause =
  | { kind: "vcpus"; vcpus: number; vcpuType: string }
  | { kind: "expected" }
  | { kind: "unknown"; tried: number };

/** Which launch of the same UKI and OVMF gives `actual`, if any. */
export function mismatchCause(actual: string, launch: MeasuredLaunch): MismatchCause {
  const models = [launch.vcpuType, ...vcpuTypeNames().filter((name) => name.toLowerCase() !== launch.vcpuType.toLowerCase())];
  const measurements = launchMeasurementsByVcpus({ ovmf: launch.ovmf, kernel: launch.kernel, vcpuTypes: models, maxVcpus: MAX_VCPUS });
  const wanted = actual.toLowerCase();
  if (measurements.get(`${launch.vcpus}/${launch.vcpuType}`) === wanted) return { kind: "expected" };
  for (const [key, value] of measurements) {
    if (value !== wanted) continue;
    const [vcpus, vcpuType] = key.split("/") as [string, string];
    return { kind: "vcpus", vcpus: Number(vcpus), vcpuType };
  }
  return { kind: "unknown", tried: measurements.size };
}

/** The cause in a sentence naming what to set for `relay`. */
export function explainMismatch(actual: string, launch: MeasuredLaunch, relay: string): string {
  const cause = mismatchCause(actual, launch);
  const measuredFor = `${launch.vcpus} vCPU${launch.vcpus === 1 ? "" : "s"} of ${launch.vcpuType}`;
  switch (cause.kind) {
    case "vcpus": {
      const fields = [cause.vcpus !== launch.vcpus ? "cores" : undefined, cause.vcpuType !== launch.vcpuType ? "cpuType (and sev.vcpuType)" : undefined].filter(Boolean).join(" and ");
      return `the report matches ${cause.vcpus} vCPU${cause.vcpus === 1 ? "" : "s"} of ${cause.vcpuType}, not the ${measuredFor} the image was measured for: the VM runs with other ${fields} than relay ${relay}'s config says; set ${fields} of relay ${relay} to what the VM runs with, or start the VM as the config says`;
    }
    case "expected":
      return `the report's measurement is the one expected for ${measuredFor}: the broker holds another registration (run pulumi up to register the image again)`;
    case "unknown":
      return `no launch of this UKI and OVMF with 1–${MAX_VCPUS} vCPUs of any known model (${cause.tried} tried) gives it: the VM booted other bytes (another UKI, or firmware other than sev.ovmf: compare sev.ovmfSha256 with the file the node boots) or other guest features`;
  }
}
