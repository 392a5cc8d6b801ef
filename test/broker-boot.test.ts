/**
 * Broker mode booted for real: the key broker (tools/broker) in a network
 * namespace of the test's own, reachable from the guest over TLS on a bridge
 * as on the local stack; a simulated SEV-SNP secure processor beside QEMU
 * reporting the measurement of the ISO it boots; a relay image with no key
 * in it. The relay gets its keys into RAM and tor starts with the expected
 * identity; it pushes its onion keys and state back; an ISO altered after
 * the build, and a revoked relay, get nothing and tor never starts.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { attestationLog, brokerStatus, reenrollRelay, registerImage, revokeRelay, uploadRelayKeys, type BrokerAdminEndpoint } from "../lib/broker-admin";
import { renderAgentConfig } from "../lib/broker-agent";
import { torListFingerprint } from "../lib/key-store";
import { ensureNetns, netnsPids, removeNetns } from "../lib/netns";
import type { BuiltImage } from "../lib/relay-build";
import type { RelayTarget } from "../lib/steps";
import { IDENTITY_FILES } from "../lib/tor-keys";
import { makeTestKeys } from "./support/fleet";
import { bootIso, buildRelayIso, debianBase, runStep, waitFor } from "./support/images";
import { toolEnv } from "./support/pulumi";
import { privateTmpDir } from "./support/tmp";
import { fixturePath } from "./snp/fixtures";

const BROKER_IP = "10.77.0.1";
const RELAY = { name: "guard-1", nickname: "BrokerGuard", vmId: 100, mac: "52:54:00:00:05:01" };

describe("a broker-mode relay, booted", () => {
  const dir = privateTmpDir("broker-boot");
  const netns = `drbrk-${process.pid}`;
  const data = join(dir, "broker");
  const adminSocket = join(dir, "admin.sock");
  const simulatorDir = join(dir, "simulator");
  // The public AmdSevX64 OVMF description the measurement is computed with (test/snp/fixtures/VECTORS.md).
  const ovmf = fixturePath("ovmf_AmdSev_suffix.bin");
  let broker: ChildProcess;
  let admin: BrokerAdminEndpoint;
  let built: BuiltImage;
  let measurement: string;
  let expected: { rsa: string; ed25519: string };
  let vm: Awaited<ReturnType<typeof bootIso>> | undefined;

  const target = (runName: string): Extract<RelayTarget, { kind: "qemu" }> => ({
    kind: "qemu",
    runDir: join(dir, runName),
    mac: RELAY.mac,
    memoryMiB: 1024,
    cores: 1,
    network: { kind: "bridge", netns, bridge: "br0", tap: "drb100" },
    snp: { simulatorDir, ovmf, vcpuType: "EPYC-v4" },
  });
  const tool = (command: string, args: string[]) => {
    const result = spawnSync(command, args, { encoding: "utf8", env: toolEnv() });
    if (result.status !== 0) throw new Error(`${command} ${args.join(" ")}: ${result.stderr}`);
    return result.stdout;
  };
  const verdicts = async () => (await attestationLog(admin, RELAY.name)).filter((entry) => entry.purpose === "boot").map((entry) => `${entry.verdict}:${entry.reason ?? ""}`);

  beforeAll(async () => {
    const base = debianBase();
    ensureNetns(netns, "br0", `${BROKER_IP}/24`, "fd77:77::1/64");
    // The broker's TLS: a private CA the image pins, and a certificate for the broker's address.
    const tls = join(dir, "tls");
    mkdirSync(tls, { mode: 0o700 });
    tool("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", join(tls, "ca.key"), "-out", join(tls, "ca.pem"), "-days", "2", "-subj", "/CN=diskless-relays test broker CA"]);
    tool("openssl", ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", join(tls, "broker.key"), "-out", join(tls, "broker.csr"), "-subj", "/CN=broker"]);
    writeFileSync(join(tls, "san.cnf"), `subjectAltName=IP:${BROKER_IP}\n`);
    tool("openssl", ["x509", "-req", "-in", join(tls, "broker.csr"), "-CA", join(tls, "ca.pem"), "-CAkey", join(tls, "ca.key"), "-CAcreateserial", "-out", join(tls, "broker.pem"), "-days", "2", "-extfile", join(tls, "san.cnf")]);

    const published = JSON.parse(tool("key-broker", ["init", "--data", data])) as { signingPublicKey: string; pushRecipient: string };
    tool("snp-simulator", ["init", "--out", simulatorDir]);
    broker = spawn(
      "ip",
      ["netns", "exec", netns, "key-broker", "serve", "--data", data, "--listen", `${BROKER_IP}:8443`, "--tls-cert", join(tls, "broker.pem"), "--tls-key", join(tls, "broker.key"),
        "--admin-listen", `unix:${adminSocket}`, "--allow-simulated-attestation", "--simulated-ark-ask", join(simulatorDir, "ark-ask.pem")],
      { env: toolEnv(), stdio: ["ignore", "ignore", "pipe"] },
    );
    let brokerLog = "";
    broker.stderr!.on("data", (chunk: Buffer) => (brokerLog += chunk.toString()));
    for (let i = 0; i < 100 && !existsSync(adminSocket); i++) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(existsSync(adminSocket), brokerLog).toBe(true);
    admin = { socket: adminSocket, token: readFileSync(join(data, "admin.token"), "utf8").trim() };

    makeTestKeys(dir, [{ name: RELAY.name, nickname: RELAY.nickname, node: "local", vmId: RELAY.vmId, exit: false }]);
    expected = torListFingerprint(join(dir, "keys", RELAY.name), RELAY.nickname);
    const empty = join(dir, "collected");
    mkdirSync(empty, { mode: 0o700 });
    const agentBinary = tool("sh", ["-c", "command -v relay-agent"]).trim();
    const brokerConfig = {
      url: `https://${BROKER_IP}:8443`,
      signingPublicKey: published.signingPublicKey,
      pushRecipient: published.pushRecipient,
      attestation: "snp" as const,
      allowSimulatedAttestation: true,
      pushIntervalSeconds: 30,
    };
    built = buildRelayIso(dir, base, { ...RELAY, ipv4: { address: "10.77.0.11/24", gateway: BROKER_IP } }, empty, join(dir, "image"), {}, (imageDigest) => ({
      broker: { agentBinary, agentConfig: renderAgentConfig({ relay: RELAY.name, imageDigest, broker: brokerConfig, withCa: true }), caPem: readFileSync(join(tls, "ca.pem"), "utf8") },
    }));
    // The measurement the build publishes for this image: computed from the built UKI, not from the ISO the launcher boots.
    const measured = runStep("measure-launch", { relay: RELAY.name, imageDigest: built.imageDigest, uki: built.uki, ovmf, vcpus: 1, vcpuType: "EPYC-v4", out: join(dir, "snp.json") });
    expect(measured.status, measured.stderr).toBe(0);
    measurement = measured.stdout.trim();
    await uploadRelayKeys(admin, RELAY.name, Object.fromEntries(IDENTITY_FILES.map((file) => [`keys/${file}`, readFileSync(join(dir, "keys", RELAY.name, file))])));
    await registerImage(admin, RELAY.name, { imageDigest: built.imageDigest, attestation: "snp", measurements: [measurement] });
  }, 900_000);

  afterAll(async () => {
    await vm?.stop();
    broker?.kill();
    for (const pid of netnsPids(netns)) spawnSync("kill", ["-KILL", String(pid)]);
    removeNetns(netns);
  }, 120_000);

  it("gets its keys into RAM after attestation, and tor starts with the relay's identity", async () => {
    vm = await bootIso(built.iso, target("run"));
    const rsa = await waitFor(vm.console, new RegExp(`identity key fingerprint is '${RELAY.nickname} ([0-9A-F]{40})'`), 600);
    const ed = await waitFor(vm.console, new RegExp(`ed25519 fingerprint is '${RELAY.nickname} ([A-Za-z0-9+/]{43})'`), 60);
    expect(rsa[1]).toBe(expected.rsa);
    expect(ed[1]).toBe(expected.ed25519);
    expect(vm.console()).toMatch(/relay-agent: .*boot: installed \d+ files in \/var\/lib\/tor/);
    expect(await verdicts()).toContain("released:");
    const status = (await brokerStatus(admin)).relays.find((relay) => relay.relay === RELAY.name)!;
    expect(status.lastAttestation?.measurement).toBe(measurement);
    // No SSH server runs: nothing listens on port 22 of the relay.
    const ssh = spawnSync("ip", ["netns", "exec", netns, "timeout", "5", "bash", "-c", "echo > /dev/tcp/10.77.0.11/22"]);
    expect(ssh.status).not.toBe(0);
  }, 900_000);

  it("pushes its onion keys and state back, re-attesting", async () => {
    let lastPush: string | null = null;
    for (let i = 0; i < 90 && !lastPush; i++) {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      lastPush = (await brokerStatus(admin)).relays.find((relay) => relay.relay === RELAY.name)!.lastPush;
    }
    expect(lastPush).not.toBeNull();
    expect(vm!.console()).toMatch(/relay-agent: .*push: stored .*keys\/secret_onion_key_ntor.*state/);
  }, 300_000);

  it("gets nothing once revoked: after a reboot tor never starts", async () => {
    await revokeRelay(admin, RELAY.name);
    await vm!.stop();
    vm = await bootIso(built.iso, target("run"));
    await waitFor(() => vm!.console(), /relay-agent: .*fetch attempt \d+ failed: .*relay-revoked/, 600);
    expect(await verdicts()).toContain("refused:relay-revoked");
    expect(vm!.console()).not.toMatch(/identity key fingerprint is/);
    // Re-enrolled with its stored keys and its image registered again, the same boot gets them on the agent's next try.
    await reenrollRelay(admin, RELAY.name, true);
    await registerImage(admin, RELAY.name, { imageDigest: built.imageDigest, attestation: "snp", measurements: [measurement] });
    await waitFor(vm!.console, new RegExp(`identity key fingerprint is '${RELAY.nickname} ${expected.rsa}'`), 300);
  }, 1_200_000);

  it("gets nothing from an ISO altered after the build: the measurement differs, tor never starts", async () => {
    await vm!.stop();
    const tampered = join(dir, "tampered.iso");
    copyFileSync(built.iso, tampered);
    const bytes = readFileSync(tampered);
    // One byte of the relay's torrc inside the UKI's initrd.
    const at = bytes.indexOf(Buffer.from(`Nickname ${RELAY.nickname}`));
    expect(at).toBeGreaterThan(0);
    bytes[at + "Nickname ".length] = "X".charCodeAt(0);
    writeFileSync(tampered, bytes);
    vm = await bootIso(tampered, target("run-tampered"));
    await waitFor(() => vm!.console(), /relay-agent: .*fetch attempt \d+ failed: .*measurement-mismatch/, 600);
    expect(await verdicts()).toContain("refused:measurement-mismatch");
    expect(vm.console()).not.toMatch(/identity key fingerprint is/);
  }, 900_000);
});
