/**
 * The local stack as the VM tests set it up: a Pulumi project of the test's
 * own on the testnet, sharing this machine's test base, with keys for two
 * relays (an exit and a guard); each relay's config on the testnet's
 * addresses; and the collect-state step's spec for a relay of it, as the
 * program would hand it over. Used by test/vm/local-e2e, package-updates and
 * broker-deploy.
 */
import { mkdirSync, readFileSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { torListFingerprint } from "../../lib/tor/key-store";
import { TESTNET, tapName, type TestnetNetwork } from "../../lib/config/testnet";
import type { StepSpec } from "../../lib/steps/steps";
import { makeTestKeys } from "./fleet";
import { BUILD_CACHE } from "./images";
import { TestProject } from "./pulumi";

/** A relay of a test's local stack: the first of a stack is its exit. */
export interface LocalTestRelay {
  name: string;
  nickname: string;
  /** Its address on the testnet: 10.77.0.HOST. */
  host: number;
  vmId: number;
}

export interface LocalStack {
  project: TestProject;
  /** What tor says each relay's fingerprints are, from its key store. */
  fingerprints: Record<string, { rsa: string; ed25519: string }>;
  /** A relay's QEMU run directory (console.log, qemu.pid). */
  runDir: (relay: string) => string;
}

/** A project of its own for `relays`, with their keys, its build directory on this machine's test bases. */
export function localStackProject(name: string, relays: readonly LocalTestRelay[]): LocalStack {
  const project = new TestProject(name, { passphrase: "" });
  // The default, project-relative build directory, sharing this machine's test bases (each named after its own inputs).
  mkdirSync(join(project.dir, "build"), { mode: 0o700 });
  mkdirSync(join(BUILD_CACHE, "base"), { recursive: true, mode: 0o700 });
  symlinkSync(join(BUILD_CACHE, "base"), join(project.dir, "build", "base"));
  makeTestKeys(project.dir, relays.map((r, i) => ({ name: r.name, nickname: r.nickname, node: "local", vmId: r.vmId, exit: i === 0 })));
  const fingerprints: LocalStack["fingerprints"] = {};
  for (const relay of relays) fingerprints[relay.name] = torListFingerprint(join(project.dir, "keys", relay.name), relay.nickname);
  return { project, fingerprints, runDir: (relay) => join(project.dir, ".runtime", project.stack, relay) };
}

/** A relay's config on the testnet: the first of `relays` is an exit; `macBlock` keeps each file's MACs its own. */
export function localRelayConfig(relay: LocalTestRelay, index: number, macBlock: number, contactInfo: string): Record<string, any> {
  return {
    name: relay.name,
    nickname: relay.nickname,
    node: "local",
    vmId: relay.vmId,
    mac: `52:54:00:00:0${macBlock}:0${index + 1}`,
    ipv4: { address: `10.77.0.${relay.host}/24`, gateway: TESTNET.hostIPv4 },
    orPort: 9001,
    exit: { enabled: index === 0 },
    // The exit's own resolver forwards to the testnet's DNS.
    nameservers: [TESTNET.hostIPv4],
    contactInfo,
    memoryMiB: 1024,
    cores: 1,
  };
}

/** The collect-state step's spec for a relay of the stack, over its pinned channel in the testnet's namespace. */
export function collectStateSpec(
  stack: LocalStack,
  network: TestnetNetwork,
  relay: Record<string, any>,
  relayDir: string,
  imageDigest: string,
): StepSpec<"collect-state"> {
  const dir = stack.project.dir;
  return {
    relay: relay.name,
    relayDir,
    imageDigest,
    channel: {
      host: relay.ipv4.address.split("/")[0],
      port: 22,
      user: "root",
      privateKeyFile: join(dir, "keys", "collector"),
      hostPublicKey: readFileSync(join(dir, "keys", relay.name, "ssh_host_ed25519_key.pub"), "utf8").trim().split(" ").slice(0, 2).join(" "),
      connectTimeoutSeconds: 10,
      netns: network.netns,
    },
    target: {
      kind: "qemu",
      runDir: stack.runDir(relay.name),
      mac: relay.mac,
      memoryMiB: relay.memoryMiB,
      cores: relay.cores,
      network: { kind: "bridge", netns: network.netns, bridge: network.bridge, tap: tapName(relay.vmId) },
    },
    allowFreshOnionKeys: false,
  };
}
