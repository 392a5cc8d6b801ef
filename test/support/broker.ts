/**
 * A key broker for tests and benchmarks, set up as on the local stack: in a
 * network namespace with a bridge (the broker at 10.77.0.1, relays on tap
 * devices), TLS with a private CA that images pin, its admin API on a unix
 * socket, trusting a simulated secure processor's test-only chain. Also a
 * broker-mode image of a relay, with the measurement the build publishes for
 * it registered and the relay's identity uploaded. I/O throughout.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { brokerStatus, registerImage, uploadRelayKeys, type BrokerAdminEndpoint } from "../../lib/broker/broker-admin";
import { renderAgentConfig } from "../../lib/broker/broker-agent";
import type { ResolvedBroker } from "../../lib/broker/broker-endpoint";
import { keyBrokerServeArgs, prepareBrokerFiles } from "../../lib/testnet/testnet-broker";
import { ensureNetns, netnsPids, removeNetns } from "../../lib/local/netns";
import type { BuiltImage } from "../../lib/image/relay-build";
import { parseStepOutput, type RelayTarget } from "../../lib/steps/steps";
import { IDENTITY_FILES } from "../../lib/tor/tor-keys";
import { fixturePath } from "./snp-fixtures";
import { buildRelayIso, runStep } from "./images";
import { toolEnv } from "./pulumi";

const BROKER_IP = "10.77.0.1";
/** The public AmdSevX64 OVMF description measurements are computed with (test/fixtures/snp/VECTORS.md). */
export const TEST_OVMF = fixturePath("ovmf_AmdSev_suffix.bin");
/** Its SHA-256 as `sha256sum test/fixtures/snp/ovmf_AmdSev_suffix.bin` prints it: the pin relays' sev.ovmfSha256 carries. */
export const TEST_OVMF_SHA256 = "8f765dfabc127fc0a938a0744a3103ec15864d7d794eb4c398aa976b6d6ab16c";

function tool(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: "utf8", env: toolEnv() });
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ")}: ${result.stderr}`);
  return result.stdout;
}

export interface TestBroker {
  netns: string;
  admin: BrokerAdminEndpoint;
  simulatorDir: string;
  /** What images pin (key-broker init's output) and where they reach the broker. */
  config: Pick<ResolvedBroker, "url" | "signingPublicKey" | "pushRecipient" | "attestation" | "allowSimulatedAttestation" | "pushIntervalSeconds">;
  caPem: string;
  log: () => string;
  /** SIGKILL, then the same broker again from the same data directory: nothing it acknowledged may be lost. */
  restart: () => Promise<void>;
  stop: () => void;
}

export async function startTestBroker(dir: string, netns: string): Promise<TestBroker> {
  ensureNetns(netns, "br0", `${BROKER_IP}/24`, "fd77:77::1/64");
  // The same files and command line as the local stack's broker (lib/testnet/testnet-broker.ts), in the test's own namespace.
  const files = prepareBrokerFiles(dir, BROKER_IP);
  const { simulatorDir, adminSocket } = files;
  let log = "";
  const serve = async () => {
    const child = spawn(
      "ip",
      ["netns", "exec", netns, "key-broker", ...keyBrokerServeArgs(files, `${BROKER_IP}:8443`)],
      { env: toolEnv(), stdio: ["ignore", "ignore", "pipe"] },
    );
    child.stderr!.on("data", (chunk: Buffer) => (log += chunk.toString()));
    for (let i = 0; i < 100; i++) {
      if (existsSync(adminSocket) && (await brokerStatus(admin).then(() => true, () => false))) return child;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`the key broker did not start:\n${log}`);
  };
  const admin = { socket: adminSocket, token: readFileSync(files.tokenFile, "utf8").trim() };
  let broker: ChildProcess = await serve();
  return {
    netns,
    admin,
    simulatorDir,
    config: { url: `https://${BROKER_IP}:8443`, signingPublicKey: files.signingPublicKey, pushRecipient: files.pushRecipient, attestation: "snp", allowSimulatedAttestation: true, pushIntervalSeconds: 30 },
    caPem: readFileSync(files.caFile, "utf8"),
    log: () => log,
    restart: async () => {
      // ip netns exec runs the broker as its own process: kill that one.
      for (const pid of netnsPids(netns)) {
        if (readFileSync(`/proc/${pid}/cmdline`, "latin1").startsWith("key-broker\0serve")) spawnSync("kill", ["-KILL", String(pid)]);
      }
      await new Promise<void>((resolve) => (broker.exitCode !== null ? resolve() : broker.once("exit", () => resolve())));
      broker = await serve();
    },
    stop: () => {
      broker.kill();
      for (const pid of netnsPids(netns)) spawnSync("kill", ["-KILL", String(pid)]);
      removeNetns(netns);
    },
  };
}

export interface TestRelayOnBroker {
  name: string;
  nickname: string;
  vmId: number;
  mac: string;
  /** Its IPv4 host part on the bridge (10.77.0.N). */
  host: number;
}

/**
 * The relay's broker-mode image, its identity uploaded, and registered with
 * the measurement the build publishes for it (snp) or its boot token's
 * SHA-256 (none).
 */
export async function brokerModeImage(
  dir: string,
  base: string,
  broker: TestBroker,
  relay: TestRelayOnBroker,
  out: string,
  attestation: "snp" | "none" = "snp",
): Promise<{ built: BuiltImage; measurement?: string }> {
  const empty = join(dir, "collected-none");
  mkdirSync(empty, { recursive: true, mode: 0o700 });
  const agentBinary = tool("sh", ["-c", "command -v relay-agent"]).trim();
  const built = buildRelayIso(dir, base, { name: relay.name, nickname: relay.nickname, vmId: relay.vmId, mac: relay.mac, ipv4: { address: `10.77.0.${relay.host}/24`, gateway: BROKER_IP } }, empty, out, {}, (imageDigest) => ({
    broker: {
      agentBinary,
      agentConfig: renderAgentConfig({ relay: relay.name, imageDigest, broker: { ...broker.config, attestation, allowSimulatedAttestation: attestation === "snp" }, withCa: true }),
      caPem: broker.caPem,
      ...(attestation === "none" ? { bootToken: true } : {}),
    },
  }));
  await uploadRelayKeys(broker.admin, relay.name, Object.fromEntries(IDENTITY_FILES.map((file) => [`keys/${file}`, readFileSync(join(dir, "keys", relay.name, file))])));
  if (attestation === "none") {
    await registerImage(broker.admin, relay.name, { imageDigest: built.imageDigest, attestation: "none", tokenSha256: built.bootTokenSha256! });
    return { built };
  }
  // Computed from the built UKI, not from the ISO the launcher boots.
  const measured = runStep("measure-launch", { relay: relay.name, imageDigest: built.imageDigest, uki: built.uki, ovmf: TEST_OVMF, vcpus: 1, vcpuType: "EPYC-v4", policy: "0x20000", out: join(out, "snp.json") });
  if (measured.status !== 0) throw new Error(`measure-launch: ${measured.stderr}`);
  const measurement = parseStepOutput("measure-launch", measured.stdout);
  await registerImage(broker.admin, relay.name, { imageDigest: built.imageDigest, attestation: "snp", measurements: [measurement] });
  return { built, measurement };
}

/** A one-core QEMU machine for the relay on the broker's bridge, with a simulated secure processor beside it. */
export function brokerTarget(broker: TestBroker, relay: TestRelayOnBroker, runDir: string): Extract<RelayTarget, { kind: "qemu" }> {
  return {
    kind: "qemu",
    runDir,
    mac: relay.mac,
    memoryMiB: 1024,
    cores: 1,
    network: { kind: "bridge", netns: broker.netns, bridge: "br0", tap: `drb${relay.vmId}` },
    snp: { simulatorDir: broker.simulatorDir, ovmf: TEST_OVMF, vcpuType: "EPYC-v4" },
  };
}
