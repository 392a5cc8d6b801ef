/**
 * Why a relay's report carries another launch measurement than its image's:
 * the likely causes tried offline, with the same UKI and OVMF, so that a
 * broker refusal `measurement-mismatch` says what to change instead of only
 * that something differs. Tried: every count of 1 to MAX_VCPUS vCPUs of
 * every vCPU model the measurement knows (Proxmox VE starts the VM with the
 * config's cores and cpuType; a VM edited by hand or a model the node
 * reports differently changes the VMSAs), and the same again with each other
 * firmware the operator hands in: the node's own SEV firmware, which the VM
 * boots when the -bios of its args does not take effect. Not in the
 * measurement, so not
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

/** Another firmware image to try: its name for the operator (a file name) and its bytes. */
export interface OtherFirmware {
  name: string;
  ovmf: Uint8Array;
}

export type MismatchCause =
  | { kind: "vcpus"; vcpus: number; vcpuType: string }
  | { kind: "firmware"; firmware: string; vcpus: number; vcpuType: string }
  | { kind: "expected" }
  | { kind: "unknown"; tried: number; unmeasurable: string[] };

/** Which launch of the same UKI, with its OVMF or one of `otherFirmware`, gives `actual`, if any. */
export function mismatchCause(actual: string, launch: MeasuredLaunch, otherFirmware: OtherFirmware[] = []): MismatchCause {
  const models = [launch.vcpuType, ...vcpuTypeNames().filter((name) => name.toLowerCase() !== launch.vcpuType.toLowerCase())];
  const wanted = actual.toLowerCase();
  const matching = (ovmf: Uint8Array) => {
    const measurements = launchMeasurementsByVcpus({ ovmf, kernel: launch.kernel, vcpuTypes: models, maxVcpus: MAX_VCPUS });
    const key = [...measurements].find(([, value]) => value === wanted)?.[0];
    const [vcpus, vcpuType] = (key ?? "").split("/") as [string, string];
    return { tried: measurements.size, expected: measurements.get(`${launch.vcpus}/${launch.vcpuType}`) === wanted, ...(key ? { vcpus: Number(vcpus), vcpuType } : {}) };
  };
  const own = matching(launch.ovmf);
  if (own.expected) return { kind: "expected" };
  if (own.vcpuType) return { kind: "vcpus", vcpus: own.vcpus!, vcpuType: own.vcpuType };
  let tried = own.tried;
  const unmeasurable: string[] = [];
  for (const firmware of otherFirmware) {
    let other: ReturnType<typeof matching>;
    try {
      other = matching(firmware.ovmf);
    } catch (err) {
      // Not an SEV firmware with a kernel hashes table: QEMU would refuse to launch it measured at all.
      unmeasurable.push(`${firmware.name} (${(err as Error).message})`);
      continue;
    }
    tried += other.tried;
    if (other.vcpuType) return { kind: "firmware", firmware: firmware.name, vcpus: other.vcpus!, vcpuType: other.vcpuType };
  }
  return { kind: "unknown", tried, unmeasurable };
}

/** The cause in a sentence naming what to set for `relay`. */
export function explainMismatch(actual: string, launch: MeasuredLaunch, relay: string, otherFirmware: OtherFirmware[] = []): string {
  const cause = mismatchCause(actual, launch, otherFirmware);
  const measuredFor = `${launch.vcpus} vCPU${launch.vcpus === 1 ? "" : "s"} of ${launch.vcpuType}`;
  switch (cause.kind) {
    case "vcpus": {
      const fields = [cause.vcpus !== launch.vcpus ? "cores" : undefined, cause.vcpuType !== launch.vcpuType ? "cpuType (and sev.vcpuType)" : undefined].filter(Boolean).join(" and ");
      return `the report matches ${cause.vcpus} vCPU${cause.vcpus === 1 ? "" : "s"} of ${cause.vcpuType}, not the ${measuredFor} the image was measured for: the VM runs with other ${fields} than relay ${relay}'s config says; set ${fields} of relay ${relay} to what the VM runs with, or start the VM as the config says`;
    }
    case "firmware":
      return `the report matches the firmware ${cause.firmware} (${cause.vcpus} vCPU${cause.vcpus === 1 ? "" : "s"} of ${cause.vcpuType}), not relay ${relay}'s sev.ovmf: the VM booted that firmware instead of the pinned one, so the -bios of its args did not take effect; compare \`qm showcmd VMID\` on the node with the args \`qm config VMID\` shows`;
    case "expected":
      return `the report's measurement is the one expected for ${measuredFor}: the broker holds another registration (run pulumi up to register the image again)`;
    case "unknown": {
      const others = otherFirmware.length > 0 ? ` (nor with ${otherFirmware.map((firmware) => firmware.name).join(", ")})` : "";
      const unmeasurable = cause.unmeasurable.length > 0 ? `; could not be measured: ${cause.unmeasurable.join(", ")}` : "";
      const hint = otherFirmware.length === 0 ? "; npm run status -- --node-ovmf FILE also tries a firmware copied from the node" : "";
      return `no launch of this UKI and OVMF${others} with 1–${MAX_VCPUS} vCPUs of any known model (${cause.tried} tried) gives it: the VM booted other bytes (another UKI, or firmware other than sev.ovmf: compare sev.ovmfSha256 with the file the node boots) or other guest features${unmeasurable}${hint}`;
    }
  }
}
