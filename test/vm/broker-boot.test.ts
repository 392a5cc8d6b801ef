/**
 * Broker mode booted for real: the key broker (tools/broker) in a network
 * namespace of the test's own, reachable from the guest over TLS on a bridge
 * as on the local stack; a simulated SEV-SNP secure processor beside QEMU
 * reporting the measurement of the ISO it boots; a relay image with no key
 * in it. The relay gets its keys into RAM and tor starts with the expected
 * identity; it pushes its onion keys and state back; an ISO altered after
 * the build, and a revoked relay, get nothing and tor never starts.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { attestationLog, brokerStatus, reenrollRelay, registerImage, revokeRelay, type BrokerAdminEndpoint } from "../../lib/broker/broker-admin";
import { torListFingerprint } from "../../lib/tor/key-store";
import type { BuiltImage } from "../../lib/image/relay-build";
import { brokerModeImage, brokerTarget, startTestBroker, TEST_OVMF, type TestBroker } from "../support/broker";
import { brokerObservation } from "../../lib/ops/status-probe";
import { brokerHealth } from "../../lib/ops/health-gate";
import { mismatchExplainer } from "../../lib/ops/measurement-mismatch";
import { makeTestKeys } from "../support/fleet";
import { bootIso, debianBase, waitFor } from "../support/images";
import { privateTmpDir } from "../support/tmp";

const RELAY = { name: "guard-1", nickname: "BrokerGuard", vmId: 100, mac: "52:54:00:00:05:01", host: 11 };

describe("a broker-mode relay, booted", () => {
  const dir = privateTmpDir("broker-boot");
  let broker: TestBroker;
  let admin: BrokerAdminEndpoint;
  let built: BuiltImage;
  let measurement: string;
  let expected: { rsa: string; ed25519: string };
  let vm: Awaited<ReturnType<typeof bootIso>> | undefined;

  const target = (runName: string) => brokerTarget(broker, RELAY, join(dir, runName));
  /** What the image was measured for (test/support/broker.ts brokerModeImage and brokerTarget). */
  const LAUNCH = { ovmf: TEST_OVMF, vcpus: 1, vcpuType: "EPYC-v4" };
  /** The status board's reading of the broker's last refusal, with the mismatch explained from the built UKI (cli/status.ts). */
  const explainedRefusal = async () => {
    const status = (await brokerStatus(admin)).relays.find((entry) => entry.relay === RELAY.name);
    const seen = brokerObservation(status, (imageDigest, refused) => (imageDigest === built.imageDigest ? mismatchExplainer(RELAY.name, built.uki, LAUNCH)(refused) : undefined));
    expect(seen.attestation?.refusal).toBeDefined();
    return seen.attestation!;
  };
  const verdicts = async () => (await attestationLog(admin, RELAY.name)).filter((entry) => entry.purpose === "boot").map((entry) => `${entry.verdict}:${entry.reason ?? ""}`);

  beforeAll(async () => {
    const base = debianBase();
    broker = await startTestBroker(dir, `drbrk-${process.pid}`);
    admin = broker.admin;
    makeTestKeys(dir, [{ name: RELAY.name, nickname: RELAY.nickname, node: "local", vmId: RELAY.vmId, exit: false }]);
    expected = torListFingerprint(join(dir, "keys", RELAY.name), RELAY.nickname);
    const image = await brokerModeImage(dir, base, broker, RELAY, join(dir, "image"));
    built = image.built;
    measurement = image.measurement!;
  }, 900_000);

  afterAll(async () => {
    await vm?.stop();
    broker?.stop();
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
    // The status says the simulator's test chain verified the report, never AMD's.
    expect(status.lastAttestation?.root).toBe("simulated/Milan");
    // No SSH server runs: nothing listens on port 22 of the relay.
    const ssh = spawnSync("ip", ["netns", "exec", broker.netns, "timeout", "5", "bash", "-c", "echo > /dev/tcp/10.77.0.11/22"]);
    expect(ssh.status).not.toBe(0);
  }, 900_000);

  it("pushes its onion keys and state back, re-attesting", async () => {
    let lastPush: string | null = null;
    for (let i = 0; i < 90 && !lastPush; i++) {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      lastPush = (await brokerStatus(admin)).relays.find((relay) => relay.relay === RELAY.name)!.lastPush;
    }
    expect(lastPush).not.toBeNull();
    // The broker records the push before its answer reaches the agent, which logs it after:
    // wait for the agent's line rather than read the console at the same instant.
    await waitFor(vm!.console, /relay-agent: .*push: stored .*keys\/secret_onion_key_ntor.*state/, 60);
  }, 300_000);

  it("comes back with the onion key it pushed after the broker is killed and restarted and the guest reboots", async () => {
    const pushed = [...vm!.console().matchAll(/relay-agent: .*push: stored .*ntor public key (\S+)/g)].at(-1)?.[1];
    expect(pushed).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    await broker.restart();
    await vm!.stop();
    vm = await bootIso(built.iso, target("run"));
    const installed = await waitFor(vm.console, /relay-agent: .*boot: installed .*ntor public key (\S+)/, 600);
    expect(installed[1]).toBe(pushed);
    await waitFor(vm.console, new RegExp(`identity key fingerprint is '${RELAY.nickname} ${expected.rsa}'`), 300);
  }, 900_000);

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
    // No other launch of the built UKI gives the tampered ISO's measurement: the status board says other bytes were booted.
    expect((await explainedRefusal()).refusal).toMatch(/measurement-mismatch\); no launch of this UKI and OVMF .* gives it: the VM booted other bytes/);
  }, 900_000);

  it("refuses the image started with 2 vCPUs where it was measured for 1; the status board and the rollout gate say the report matches 2 vCPUs and what to set", async () => {
    await vm!.stop();
    const since = Date.now();
    vm = await bootIso(built.iso, { ...target("run-two-vcpus"), cores: 2 });
    await waitFor(() => vm!.console(), /relay-agent: .*fetch attempt \d+ failed: .*measurement-mismatch/, 600);
    const seen = await explainedRefusal();
    expect(Date.parse(seen.refusedAt!)).toBeGreaterThanOrEqual(since - 1000);
    expect(seen.refusal).toMatch(/the report matches 2 vCPUs of EPYC-v4, not the 1 vCPU of EPYC-v4 the image was measured for: .*set cores of relay guard-1/);
    const gate = await brokerHealth(admin, RELAY.name, built.imageDigest, since - 1000, mismatchExplainer(RELAY.name, built.uki, LAUNCH))();
    expect(gate.ok).toBe(false);
    expect(!gate.ok && gate.error).toMatch(/refused it at .*measurement-mismatch\); the report matches 2 vCPUs of EPYC-v4/);
    expect(vm.console()).not.toMatch(/identity key fingerprint is/);
  }, 900_000);

  it("with a boot token instead of a report (hosts without SNP): the first boot gets its keys, a second boot of the same ISO gets nothing", async () => {
    await vm?.stop();
    const tokenRelay = { name: "guard-2", nickname: "TokenGuard", vmId: 101, mac: "52:54:00:00:05:02", host: 12 };
    makeTestKeys(join(dir, "token"), [{ name: tokenRelay.name, nickname: tokenRelay.nickname, node: "local", vmId: tokenRelay.vmId, exit: false }]);
    const tokenExpected = torListFingerprint(join(dir, "token", "keys", tokenRelay.name), tokenRelay.nickname);
    const { built: tokenImage } = await brokerModeImage(join(dir, "token"), debianBase(), broker, tokenRelay, join(dir, "token", "image"), "none");
    expect(tokenImage.bootTokenSha256).toMatch(/^[0-9a-f]{64}$/);
    // No simulated secure processor: this host has no SNP.
    const machine = { ...brokerTarget(broker, tokenRelay, join(dir, "run-token")), snp: undefined };
    vm = await bootIso(tokenImage.iso, machine);
    await waitFor(vm.console, new RegExp(`identity key fingerprint is '${tokenRelay.nickname} ${tokenExpected.rsa}'`), 600);
    await vm.stop();
    vm = await bootIso(tokenImage.iso, machine);
    await waitFor(() => vm!.console(), /relay-agent: .*fetch attempt \d+ failed: .*token-reused/, 600);
    expect(vm.console()).not.toMatch(/identity key fingerprint is/);
    const log = (await attestationLog(admin, tokenRelay.name)).filter((entry) => entry.purpose === "boot").map((entry) => `${entry.verdict}:${entry.reason ?? ""}`);
    expect(log).toEqual(expect.arrayContaining(["released:", "refused:token-reused"]));
  }, 900_000);
});
