/**
 * Starts and stops the private Tor network on this machine (lib/config/testnet.ts
 * says what it is made of): the namespace and its bridge, three directory
 * authorities with keys made by tor-gencert and tor, a client, and the web
 * and DNS services. Its directory keeps the authorities' keys and
 * network.json between runs. I/O: processes, files, iproute2.
 */
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { ensureNetns, inNetns, netnsPids, removeNetns } from "../local/netns";
import { hasOption, ownedPid } from "../core/pid-file";
import { runTool } from "../core/run";
import { TorControl } from "../tor/tor-control";
import { startTestnetBroker } from "./testnet-broker";
import { authorityTorrc, clientTorrc, networkSchema, TESTNET, type Authority, type TestnetNetwork } from "../config/testnet";
import { setTimeout as sleep } from "node:timers/promises";

export interface TestnetLocation {
  /** The testnet's directory (keys, data, sockets, network.json); private. */
  dir: string;
  netns: string;
}

const NETWORK_FILE = "network.json";
/** The key broker's directory in the testnet's: kept by `down`, as a real broker keeps what it holds. */
const BROKER_DIR = "key-broker";

/** An authority's keys, made once: its v3 identity (tor-gencert) and its relay identity (tor). */
function authorityKeys(dir: string, index: number): Authority {
  const nickname = `testauth${index + 1}`;
  const orPort = TESTNET.authorityOrPorts[index]!;
  const dirPort = TESTNET.authorityDirPorts[index]!;
  const keys = join(dir, "keys");
  mkdirSync(keys, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const certificate = join(keys, "authority_certificate");
  if (!existsSync(certificate)) {
    runTool(
      "tor-gencert",
      ["--create-identity-key", "-m", "12", "-a", `${TESTNET.hostIPv4}:${dirPort}`, "-i", join(keys, "authority_identity_key"), "-s", join(keys, "authority_signing_key"), "-c", certificate, "--passphrase-fd", "0"],
      { input: "\n", what: `tor-gencert for ${nickname}` },
    );
  }
  const v3ident = /^fingerprint ([0-9A-F]{40})$/m.exec(readFileSync(certificate, "utf8"))?.[1];
  const listed = runTool(
    "tor",
    ["--list-fingerprint", "--DataDirectory", dir, "--ORPort", String(orPort), "--Nickname", nickname, "--DisableNetwork", "1", "--ignore-missing-torrc", "-f", "/dev/null", "--defaults-torrc", "/dev/null", "--Log", "err stderr"],
    { what: `tor --list-fingerprint for ${nickname}` },
  );
  const fingerprint = new RegExp(`^${nickname} ([0-9A-F ]{49})$`, "m").exec(listed)?.[1]?.replace(/ /g, "");
  if (!v3ident || !fingerprint) throw new Error(`could not read the keys of testnet authority ${nickname} in ${dir}`);
  return { nickname, address: TESTNET.hostIPv4, orPort, dirPort, v3ident, fingerprint };
}

/** Starts tor inside the namespace (it daemonizes); nothing happens if it already runs. */
function startTor(location: TestnetLocation, dataDir: string, torrc: string): void {
  const file = join(dataDir, "torrc");
  // Running already: the pid tor wrote is a tor reading this torrc (a stale pid file names some other process).
  if (ownedPid(join(dataDir, "pid"), (argv) => hasOption(argv, "-f", file)) !== undefined) return;
  writeFileSync(file, torrc, { mode: 0o600 });
  const [command, ...args] = inNetns(location.netns, ["tor", "-f", file, "--defaults-torrc", "/dev/null", "--hush"]);
  runTool(command!, args, { what: `starting tor in ${dataDir}` });
}

/** The network as the program and tests read it; undefined when the testnet was never started. */
export function readNetwork(dir: string): TestnetNetwork | undefined {
  const file = join(dir, NETWORK_FILE);
  return existsSync(file) ? networkSchema.parse(JSON.parse(readFileSync(file, "utf8"))) : undefined;
}

/**
 * Brings the testnet up (idempotent) and returns once its client has a
 * consensus. `projectDir` is where cli/testnet-services.ts lives.
 */
export async function startTestnet(location: TestnetLocation, projectDir: string, log: (line: string) => void = () => undefined): Promise<TestnetNetwork> {
  const dir = resolve(location.dir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  ensureNetns(location.netns, TESTNET.bridge, `${TESTNET.hostIPv4}/${TESTNET.ipv4Prefix}`, `${TESTNET.hostIPv6}/${TESTNET.ipv6Prefix}`);
  const authorities = [0, 1, 2].map((i) => authorityKeys(join(dir, `auth${i + 1}`), i));
  const broker = await startTestnetBroker(join(dir, BROKER_DIR), location.netns);
  const network: TestnetNetwork = {
    netns: location.netns,
    bridge: TESTNET.bridge,
    hostIPv4: TESTNET.hostIPv4,
    hostIPv6: TESTNET.hostIPv6,
    zone: TESTNET.zone,
    authorities,
    controlSocket: join(dir, "client", "control.sock"),
    socksSocket: join(dir, "client", "socks.sock"),
    broker,
  };
  writeFileSync(join(dir, NETWORK_FILE), JSON.stringify(network, null, 1) + "\n");

  authorities.forEach((authority, i) => startTor(location, join(dir, `auth${i + 1}`), authorityTorrc(authority, join(dir, `auth${i + 1}`), network)));
  mkdirSync(join(dir, "client"), { recursive: true, mode: 0o700 });
  startTor(location, join(dir, "client"), clientTorrc(join(dir, "client"), network));

  const services = join(dir, "services.pid");
  if (ownedPid(services, (argv) => argv.includes(join(dir, NETWORK_FILE))) === undefined) {
    const output = openSync(join(dir, "services.log"), "a");
    const [command, ...args] = inNetns(location.netns, [join(projectDir, "node_modules/.bin/tsx"), join(projectDir, "cli/testnet-services.ts"), join(dir, NETWORK_FILE)]);
    const child = spawn(command!, args, { detached: true, stdio: ["ignore", output, output] });
    child.unref();
    writeFileSync(services, String(child.pid));
  }
  log(`testnet ${location.netns}: 3 authorities, a client and a key broker (${broker.url}) on ${TESTNET.hostIPv4}; waiting for the first consensus`);
  await waitForClient(network, 180);
  return network;
}

/**
 * Waits until the client has enough directory information to build
 * circuits (bootstrap 75%: it builds none of its own, the tests and
 * `fetch` build theirs).
 */
async function waitForClient(network: TestnetNetwork, seconds: number): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  let last = "";
  for (;;) {
    try {
      const control = await TorControl.connect(network.controlSocket);
      try {
        last = await control.getInfo("status/bootstrap-phase");
        const progress = Number(/PROGRESS=(\d+)/.exec(last)?.[1] ?? 0);
        if (progress >= 75) return;
      } finally {
        control.close();
      }
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`the testnet's client has no consensus after ${seconds}s: ${last}`);
    await sleep(1000);
  }
}

/**
 * Stops everything in the namespace (tor, services, the key broker, any relay
 * VM) and removes it; keeps the authorities' keys (the relays' images name
 * them) and the key broker's directory (it holds the relays' keys), and
 * nothing else. The next start is a new network: an authority that remembered a relay
 * as down would not test it again for many minutes after it came back.
 */
export async function stopTestnet(location: TestnetLocation): Promise<void> {
  for (const pid of netnsPids(location.netns)) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // already gone
    }
  }
  for (let i = 0; i < 50 && netnsPids(location.netns).length > 0; i++) await sleep(100);
  for (const pid of netnsPids(location.netns)) spawnSync("kill", ["-KILL", String(pid)]);
  removeNetns(location.netns);
  for (const file of [NETWORK_FILE, "services.pid"]) rmSync(join(location.dir, file), { force: true });
  for (let i = 1; i <= 3; i++) {
    const authority = join(location.dir, `auth${i}`);
    if (!existsSync(authority)) continue;
    for (const entry of readdirSync(authority)) if (entry !== "keys") rmSync(join(authority, entry), { recursive: true, force: true });
  }
  rmSync(join(location.dir, "client"), { recursive: true, force: true });
}
