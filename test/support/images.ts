/** Real image builds and boots for tests, sharing the Debian base the way the program does. */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseStackConfig } from "../../lib/config/config";
import { planFleet } from "../../lib/plan/fleet";
import { planBasePackages } from "../../lib/image/package-set";
import { baseBuildSpec, baseImageDigest, baseImageInputs, relayImageDigest, relayImageInputs, relayImageTexts, RELAY_SCRIPT_PATHS, treeDigest } from "../../lib/plan/image-inputs";
import { monitorCommand, startLocalVm, stopLocalVm } from "../../lib/local/local-vm";
import { buildRelayImage, type BuiltImage } from "../../lib/image/relay-build";
import { encodeStepSpec, STEP_ARGV, STEP_SPEC_ENV, type RelayRecipe, type RelayTarget, type StepName, type StepSpec } from "../../lib/steps/steps";
import { repoRoot, toolEnv } from "./pulumi";
import { TEST_IMAGE } from "./fleet";

/** Shared by test runs so the Debian base is built once per machine (test/support/global-setup.ts builds it). */
export const BUILD_CACHE = join(tmpdir(), "diskless-relays-test-build");

/**
 * The inputs of the tests' Debian base, as the program plans them: its
 * package set is what Debian's mirrors serve now (lib/image/package-set.ts), so a
 * Debian update gives the tests a new base, as it gives the relays one.
 */
export function debianBaseInputs(image: Record<string, unknown> = {}) {
  const config = parseStackConfig(minimalConfig(undefined, image));
  const plan = planBasePackages(config, { projectDir: repoRoot, stack: "test-base", release: config.image.release ?? "bookworm", now: new Date() })!;
  return baseImageInputs(config.image, repoRoot, { sources: plan.request.sources, packages: plan.packages });
}

/** Where the Debian base of the current scripts and packages is, built or not. */
export function debianBaseDir(inputs = debianBaseInputs()): string {
  return join(BUILD_CACHE, "base", `debian-${baseImageDigest(inputs).slice(0, 12)}`);
}

/** The Debian base, built by the real step unless already built for these inputs. */
export function debianBase(inputs = debianBaseInputs()): string {
  const dir = debianBaseDir(inputs);
  if (!existsSync(join(dir, ".complete"))) {
    mkdirSync(join(BUILD_CACHE, "base"), { recursive: true, mode: 0o700 });
    const result = runStep("build-base", baseBuildSpec(inputs, dir));
    if (result.status !== 0) throw new Error(`building the Debian base failed:\n${result.stdout}\n${result.stderr}`);
  }
  return dir;
}

export function minimalConfig(relays: Record<string, unknown>[] = [{ name: "r", nickname: "R", vmId: 100, mac: "52:54:00:00:00:01" }], image: Record<string, unknown> = {}) {
  return {
    proxmox: { endpoint: "https://127.0.0.1:8006", nodes: ["local"], datastore: "local", bridge: "vmbr0" },
    proxmoxApiToken: "root@pam!t=0",
    image: { ...TEST_IMAGE, ...image },
    stateCollection: { privateKeyFile: "keys/collector" },
    relays: relays.map((relay) => ({
      node: "local",
      // QEMU user networking: the guest is 10.0.2.15 behind 10.0.2.2.
      ipv4: { address: "10.0.2.15/24", gateway: "10.0.2.2" },
      orPort: 9001,
      contactInfo: "test@example.net",
      ...relay,
    })),
  };
}

/** Builds one relay's image with the program's own builder, from the recipe the program would write. */
export function buildRelayIso(
  projectDir: string,
  base: string,
  relayConfig: Record<string, unknown>,
  collectedDir: string,
  out: string,
  image: Record<string, unknown> = {},
  /** Recipe fields to add, e.g. broker mode's agent (its configuration is rendered with the image digest). */
  extra: (imageDigest: string) => Partial<RelayRecipe> = () => ({}),
): BuiltImage {
  const config = parseStackConfig(minimalConfig([relayConfig], image));
  // The image boots under QEMU here, on a test network's (private) addresses.
  const fleet = planFleet(config, { projectDir, now: new Date(), localBoot: true });
  const planned = fleet.relays[0]!;
  const texts = relayImageTexts(planned, config, fleet.collectorPublicKey, projectDir);
  const imageDigest = relayImageDigest(relayImageInputs(planned, "test-base", texts, treeDigest(repoRoot, RELAY_SCRIPT_PATHS)));
  const env = toolEnv();
  const saved = process.env.PATH;
  process.env.PATH = env.PATH;
  try {
    return buildRelayImage(
      { relay: planned.config.name, nickname: planned.config.nickname, imageDigest, baseDir: base, keysDir: planned.keysDir, collectedDir, outDir: out, ...texts, ...extra(imageDigest) },
      repoRoot,
    );
  } finally {
    process.env.PATH = saved;
  }
}

/** Runs a step as its resource does: `STEP_COMMAND STEP` with the spec as JSON in the environment. */
export function runStep<N extends StepName>(step: N, spec: StepSpec<N>, env: Record<string, string> = {}) {
  const [command, ...args] = STEP_ARGV;
  return spawnSync(command, [...args, step], {
    cwd: repoRoot,
    encoding: "utf8",
    env: toolEnv({ [STEP_SPEC_ENV]: encodeStepSpec(step, spec), ...env }),
  });
}

/** A local-stack machine for one test relay: QEMU with the program's own start code; SSH forwarded to sshPort. */
export function qemuTargetFor(dir: string, mac: string, sshPort: number, guestSshPort = 22, orPort?: { host: number; guest: number }): Extract<RelayTarget, { kind: "qemu" }> {
  return {
    kind: "qemu",
    runDir: join(dir, "run"),
    mac,
    memoryMiB: 1024,
    cores: 2,
    network: { kind: "user", forwards: [{ host: sshPort, guest: guestSshPort }, ...(orPort ? [orPort] : [])], guestAddress: "10.0.2.15" },
  };
}

/** Boots an ISO under QEMU (TCG) as the local stack does; returns the console and a stop function. */
export async function bootIso(iso: string, target: Extract<RelayTarget, { kind: "qemu" }>) {
  const saved = process.env.PATH;
  process.env.PATH = toolEnv().PATH;
  try {
    await startLocalVm(target, iso);
  } finally {
    process.env.PATH = saved;
  }
  const serialLog = join(target.runDir, "console.log");
  return {
    serialLog,
    console: () => (existsSync(serialLog) ? readFileSync(serialLog, "latin1") : ""),
    stop: () => stopLocalVm(target.runDir),
  };
}

/** Polls `read` until `pattern` matches or `seconds` pass. */
export async function waitFor(read: () => string, pattern: RegExp, seconds: number): Promise<RegExpMatchArray> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const match = read().match(pattern);
    if (match) return match;
    if (Date.now() > deadline) throw new Error(`timed out after ${seconds}s waiting for ${pattern}; last output:\n${read().slice(-3000)}`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/** One HMP command over the VM's monitor socket; the text QEMU answers. */
export const hmp = monitorCommand;
