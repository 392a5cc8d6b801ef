/**
 * snp measure: prints the expected SEV-SNP launch measurement of a QEMU guest.
 * snp verify:  checks an attestation report against AMD's certificates and expectations.
 *
 * Exit codes: 0 success, 1 failure (a check failed, or the inputs cannot be measured), 2 usage error.
 */
import { readFileSync } from "node:fs";
import { snpLaunchDigest } from "../lib/snp/launch-digest";
import { vcpuTypeNames } from "../lib/snp/vcpu-types";
import { verifyAttestationReport } from "../lib/snp/verify";
import type { VmmType } from "../lib/snp/vmsa";

const USAGE = `usage:
  snp measure --ovmf FILE [--ovmf-hash HEX] [--kernel FILE] [--initrd FILE] [--append STR]
              --vcpus N (--vcpu-type NAME | --vcpu-sig HEX) [--guest-features HEX] [--vmm-type QEMU|ec2|gce]
      prints the 96-hex-digit launch digest
  snp verify --report FILE --vcek FILE --chain FILE [--expected HEX ...] [--report-data HEX] [--allow-debug]
      prints PASS/FAIL per check; exits 1 when any check fails

vCPU types: ${vcpuTypeNames().join(", ")}
`;

class UsageError extends Error {}

interface OptionSpec {
  kind: "string" | "boolean" | "list";
}

type ParsedOptions = Map<string, string | boolean | string[]>;

/**
 * A list option takes every following token up to the next --option, so both
 * "--expected A B" and "--expected A --expected B" work.
 */
function parseOptions(args: string[], specs: Record<string, OptionSpec>): ParsedOptions {
  const options: ParsedOptions = new Map();
  for (let i = 0; i < args.length; i++) {
    const token = args[i] as string;
    if (!token.startsWith("--")) {
      throw new UsageError(`unexpected argument "${token}"`);
    }
    const equals = token.indexOf("=");
    const name = token.slice(2, equals === -1 ? undefined : equals);
    const inlineValue = equals === -1 ? undefined : token.slice(equals + 1);
    const spec = specs[name];
    if (spec === undefined) {
      throw new UsageError(`unknown option --${name}`);
    }
    if (spec.kind === "boolean") {
      if (inlineValue !== undefined) {
        throw new UsageError(`--${name} takes no value`);
      }
      options.set(name, true);
      continue;
    }
    const values: string[] = [];
    if (inlineValue !== undefined) {
      values.push(inlineValue);
    } else {
      const next = args[i + 1];
      if (next === undefined || next.startsWith("--")) {
        throw new UsageError(`--${name} needs a value`);
      }
      values.push(next);
      i++;
    }
    if (spec.kind === "list") {
      while (i + 1 < args.length && !(args[i + 1] as string).startsWith("--")) {
        values.push(args[i + 1] as string);
        i++;
      }
      const previous = options.get(name);
      options.set(name, [...(Array.isArray(previous) ? previous : []), ...values]);
    } else {
      if (options.has(name)) {
        throw new UsageError(`--${name} given twice`);
      }
      options.set(name, values[0] as string);
    }
  }
  return options;
}

function stringOption(options: ParsedOptions, name: string): string | undefined {
  const value = options.get(name);
  return typeof value === "string" ? value : undefined;
}

function requiredOption(options: ParsedOptions, name: string): string {
  const value = stringOption(options, name);
  if (value === undefined) {
    throw new UsageError(`--${name} is required`);
  }
  return value;
}

function readInput(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new Error(`cannot read ${path}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

function requireHex(value: string, name: string, maxDigits: number): string {
  const digits = value.replace(/^0x/i, "");
  if (!/^[0-9a-f]+$/i.test(digits) || digits.length > maxDigits) {
    throw new UsageError(`--${name} must be a hex number of at most ${maxDigits} digits, got "${value}"`);
  }
  return digits;
}

function measure(args: string[]): number {
  const options = parseOptions(args, {
    ovmf: { kind: "string" },
    "ovmf-hash": { kind: "string" },
    kernel: { kind: "string" },
    initrd: { kind: "string" },
    append: { kind: "string" },
    vcpus: { kind: "string" },
    "vcpu-type": { kind: "string" },
    "vcpu-sig": { kind: "string" },
    "guest-features": { kind: "string" },
    "vmm-type": { kind: "string" },
  });
  const ovmfPath = requiredOption(options, "ovmf");
  const vcpusText = requiredOption(options, "vcpus");
  if (!/^[1-9][0-9]*$/.test(vcpusText)) {
    throw new UsageError(`--vcpus must be a positive integer, got "${vcpusText}"`);
  }
  const vcpuType = stringOption(options, "vcpu-type");
  const vcpuSig = stringOption(options, "vcpu-sig");
  const vmm = stringOption(options, "vmm-type") ?? "QEMU";
  if (vmm !== "QEMU" && vmm !== "ec2" && vmm !== "gce") {
    throw new UsageError(`--vmm-type must be QEMU, ec2 or gce, got "${vmm}"`);
  }
  if (vcpuType !== undefined && vcpuSig !== undefined) {
    throw new UsageError("give --vcpu-type or --vcpu-sig, not both");
  }
  if (vcpuType === undefined && vcpuSig === undefined && vmm === "QEMU") {
    throw new UsageError("--vcpu-type or --vcpu-sig is required");
  }
  if (vcpuType !== undefined && !vcpuTypeNames().some((name) => name.toLowerCase() === vcpuType.toLowerCase())) {
    throw new UsageError(`unknown --vcpu-type "${vcpuType}"`);
  }
  const kernelPath = stringOption(options, "kernel");
  const initrdPath = stringOption(options, "initrd");
  const append = stringOption(options, "append");
  if (kernelPath === undefined && (initrdPath !== undefined || append !== undefined)) {
    throw new UsageError("--initrd and --append need --kernel");
  }
  const ovmfHashText = stringOption(options, "ovmf-hash");
  const ovmfHash = ovmfHashText === undefined ? undefined : requireHex(ovmfHashText, "ovmf-hash", 96);
  if (ovmfHash !== undefined && ovmfHash.length !== 96) {
    throw new UsageError(`--ovmf-hash must be 96 hex digits (a SHA-384 digest), got ${ovmfHash.length}`);
  }
  const guestFeaturesText = stringOption(options, "guest-features");
  const guestFeatures = guestFeaturesText === undefined ? "1" : requireHex(guestFeaturesText, "guest-features", 16);
  const vcpuSignature = vcpuSig === undefined ? undefined : requireHex(vcpuSig, "vcpu-sig", 8);

  const digest = snpLaunchDigest({
    ovmf: readInput(ovmfPath),
    ovmfHash,
    kernel: kernelPath === undefined ? undefined : readInput(kernelPath),
    initrd: initrdPath === undefined ? undefined : readInput(initrdPath),
    append,
    vcpus: Number(vcpusText),
    vcpuType,
    vcpuSignature,
    guestFeatures,
    vmm: vmm as VmmType,
  });
  process.stdout.write(`${digest.toString("hex")}\n`);
  return 0;
}

function verify(args: string[]): number {
  const options = parseOptions(args, {
    report: { kind: "string" },
    vcek: { kind: "string" },
    chain: { kind: "string" },
    expected: { kind: "list" },
    "report-data": { kind: "string" },
    "allow-debug": { kind: "boolean" },
  });
  const reportPath = requiredOption(options, "report");
  const vcekPath = requiredOption(options, "vcek");
  const chainPath = requiredOption(options, "chain");
  const expected = options.get("expected");
  if (Array.isArray(expected)) {
    for (const measurement of expected) {
      if (requireHex(measurement, "expected", 96).length !== 96) {
        throw new UsageError(`--expected takes 96-hex-digit measurements, got "${measurement}"`);
      }
    }
  }
  const reportData = stringOption(options, "report-data");
  if (reportData !== undefined) {
    requireHex(reportData, "report-data", 128);
  }
  const result = verifyAttestationReport({
    report: readInput(reportPath),
    vcek: readInput(vcekPath),
    chain: readInput(chainPath).toString("latin1"),
    expectedMeasurements: Array.isArray(expected) ? expected : undefined,
    reportData,
    allowDebug: options.get("allow-debug") === true,
  });
  for (const check of result.checks) {
    process.stdout.write(`${check.ok ? "PASS" : "FAIL"} ${check.name}: ${check.detail}\n`);
  }
  return result.ok ? 0 : 1;
}

function main(argv: string[]): number {
  const [command, ...args] = argv;
  try {
    switch (command) {
      case "measure":
        return measure(args);
      case "verify":
        return verify(args);
      case "help":
      case "--help":
      case "-h":
        process.stdout.write(USAGE);
        return 0;
      default:
        throw new UsageError(command === undefined ? "no command given" : `unknown command "${command}"`);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`snp: ${error.message}\n${USAGE}`);
      return 2;
    }
    process.stderr.write(`snp: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}

process.exitCode = main(process.argv.slice(2));
