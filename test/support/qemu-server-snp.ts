/**
 * The QEMU command line Proxmox VE's qemu-server makes of an SNP VM's config,
 * and what such a command line launches, for the tests that hold the
 * program's SNP settings (lib/proxmox/proxmox-snp.ts) against qemu-server's
 * rules: read in proxmox/qemu-server at e6352be (9.2.6, 2026-08-17), as
 * lib/proxmox/proxmox-snp.ts's header tells; test/unit/proxmox-snp.test.ts
 * compares this model with qemu-server's own test fixtures.
 */
import { qemuServerSnpPolicy } from "../../lib/proxmox/proxmox-snp";

/** The SNP firmware qemu-server launches unless `args` names another. */
const PROXMOX_SNP_FIRMWARE = "/usr/share/pve-edk2-firmware//OVMF_SEV_4M.fd";

/** Proxmox VE property strings: `a=1,b=2`, the first bare value being the default key. */
function parsePropertyString(value: string, defaultKey: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of value.split(",")) {
    if (part === "") continue;
    const at = part.indexOf("=");
    if (at < 0) out[defaultKey] = part;
    else out[part.slice(0, at)] = part.slice(at + 1);
  }
  return out;
}

/**
 * Text::ParseWords::shellwords as PVE::Tools::split_args uses it: words split
 * on whitespace, single and double quotes group, a backslash escapes the
 * next character. No expansion of any kind.
 */
export function splitArgs(text: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === "\\" && quote === '"' && i + 1 < text.length) word += text[++i];
      else word += c;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === "\\" && i + 1 < text.length) {
      word += text[++i];
      inWord = true;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) throw new Error(`unbalanced ${quote} in args: ${text}`);
  if (inWord) words.push(word);
  return words;
}

/** What qemu-server reads from the host for the SEV object (/run/qemu-server/host-hw-capabilities.json, from CPUID 0x8000001F). */
export interface SevHostCapabilities {
  cbitpos: number;
  reducedPhysBits: number;
}

/** The config keys qemu-server reads for the arguments below, as GET …/config returns them. */
export type PveVmConfig = Record<string, string | number>;

/**
 * The measurement-relevant part of the QEMU command line qemu-server's
 * config_to_command makes of an SNP VM's config, in its order: firmware,
 * vCPUs, CPU model, memory, the SEV object, the machine, then `args`.
 * Devices (disks, NICs, serial) are left out: SNP measures none of them.
 * The one exception is rng0 (RNG.pm print_rng_*_commandline), modelled to
 * show that the RNG every relay has adds an -object that changes no part of
 * the launch.
 */
export function qemuServerSnpCommand(config: PveVmConfig, host: SevHostCapabilities): string[] {
  const amdSevText = config["amd-sev"];
  if (typeof amdSevText !== "string") throw new Error("the VM has no amd-sev setting: it is not an SEV guest");
  const sev = parsePropertyString(amdSevText, "type");
  if (sev.type !== "snp") throw new Error(`amd-sev type is ${sev.type ?? "(none)"}, not snp`);
  if (config.bios !== "ovmf") throw new Error("To use AMD SEV, you need to change the BIOS to OVMF.");
  const flag = (key: string, fallback: boolean) => (sev[key] === undefined ? fallback : sev[key] === "1");
  const sockets = Number(config.sockets ?? 1);
  const cores = Number(config.cores ?? 1);
  const vcpus = config.vcpus !== undefined ? Number(config.vcpus) : sockets * cores;
  const cpu = parsePropertyString(String(config.cpu ?? "kvm64"), "cputype");
  const model = cpu.cputype!;
  // get_cpu_options: enforce for a named model under KVM, the PV flags sorted, the vendor of the model.
  const cpuArg = [model, "enforce", "+kvm_pv_eoi", "+kvm_pv_unhalt", ...(/^EPYC/.test(model) ? ["vendor=AuthenticAMD"] : [])].join(",");
  const memory = parsePropertyString(String(config.memory ?? 512), "current");
  const policy = qemuServerSnpPolicy({ allowSmt: flag("allow-smt", true), noDebug: flag("no-debug", false) });
  const sevObject = `sev-snp-guest,id=sev0,cbitpos=${host.cbitpos},reduced-phys-bits=${host.reducedPhysBits},policy=${policy}${flag("kernel-hashes", false) ? ",kernel-hashes=on" : ""}`;
  const machineType = String(config.machine ?? "pc");
  return [
    "-bios", PROXMOX_SNP_FIRMWARE,
    "-smp", `${vcpus},sockets=${sockets},cores=${cores},maxcpus=${vcpus}`,
    "-cpu", cpuArg,
    "-m", String(Number(memory.current)),
    "-object", sevObject,
    "-machine", `type=${machineType},confidential-guest-support=sev0`,
    ...(typeof config.rng0 === "string" ? qemuServerRng(config.rng0) : []),
    ...(typeof config.args === "string" && config.args.trim() ? splitArgs(config.args) : []),
  ];
}

/** qemu-server's RNG object and device for an rng0 value (without the PCI address, which the model leaves out). */
function qemuServerRng(value: string): string[] {
  const rng = parsePropertyString(value, "source");
  const maxBytes = rng.max_bytes ?? "1024";
  const limiter = maxBytes !== "0" ? `,max-bytes=${maxBytes},period=${rng.period ?? "1000"}` : "";
  return ["-object", `rng-random,filename=${rng.source},id=rng0`, "-device", `virtio-rng-pci,rng=rng0${limiter}`];
}

/** What an SNP launch measures, read from a QEMU command line as QEMU reads it (the last -bios, -kernel, -append win). */
export interface EffectiveSnpLaunch {
  firmware?: string;
  kernel?: string;
  append?: string;
  initrd?: string;
  vcpus: number;
  cpuModel: string;
  policy?: string;
  kernelHashes: boolean;
  confidentialGuest: boolean;
}

export function effectiveSnpLaunch(argv: string[]): EffectiveSnpLaunch {
  const last = (option: string) => {
    let value: string | undefined;
    for (let i = 0; i < argv.length - 1; i++) if (argv[i] === option) value = argv[i + 1];
    return value;
  };
  const smp = last("-smp") ?? "1";
  const cpu = last("-cpu") ?? "qemu64";
  const objects = argv.flatMap((arg, i) => (arg === "-object" && argv[i + 1] ? [argv[i + 1]!] : []));
  const sev = objects.map((object) => parsePropertyString(object, "qom-type")).find((object) => object["qom-type"] === "sev-snp-guest");
  const machine = argv.flatMap((arg, i) => (arg === "-machine" && argv[i + 1] ? [parsePropertyString(argv[i + 1]!, "type")] : []));
  const firmware = last("-bios");
  const kernel = last("-kernel");
  const append = last("-append");
  const initrd = last("-initrd");
  return {
    ...(firmware !== undefined ? { firmware } : {}),
    ...(kernel !== undefined ? { kernel } : {}),
    ...(append !== undefined ? { append } : {}),
    ...(initrd !== undefined ? { initrd } : {}),
    vcpus: Number(parsePropertyString(smp, "cpus").cpus),
    cpuModel: cpu.split(",")[0]!,
    ...(sev?.policy ? { policy: sev.policy } : {}),
    kernelHashes: sev?.["kernel-hashes"] === "on",
    confidentialGuest: sev?.id !== undefined && machine.some((m) => m["confidential-guest-support"] === sev.id),
  };
}
