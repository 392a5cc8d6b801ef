/**
 * The local stack's key broker (tools/broker, key-broker): it runs in the
 * testnet's namespace at the bridge address, as an off-site broker would run
 * on its own host, with a private TLS CA that images pin, its admin API on a
 * unix socket only its owner may open, and trust in the simulated secure
 * processor's test-only chain (the simulator's directory lives beside it).
 * Its data directory holds relays' keys (age-encrypted at rest) and survives
 * `testnet down`, like a real broker's. I/O: openssl, key-broker,
 * snp-simulator, processes.
 */
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { brokerStatus } from "../broker/broker-admin";
import { inNetns } from "../local/netns";
import { runTool } from "../core/run";
import { withToolsOnPath } from "../core/paths";
import { TESTNET, type TestnetBroker } from "../config/testnet";
import { setTimeout as sleep } from "node:timers/promises";

/** Where relays reach the broker: the bridge address, on the broker's port. */
const BROKER_PORT = 8443;

export interface BrokerFiles {
  data: string;
  tlsCert: string;
  tlsKey: string;
  caFile: string;
  adminSocket: string;
  tokenFile: string;
  simulatorDir: string;
  signingPublicKey: string;
  pushRecipient: string;
}

/**
 * Makes what a broker needs, once (idempotent): a CA and a server
 * certificate for `address`, the broker's data directory (key-broker init),
 * and the simulated secure processor's test chain.
 */
export function prepareBrokerFiles(dir: string, address: string, env: NodeJS.ProcessEnv = withToolsOnPath()): BrokerFiles {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const tls = join(dir, "tls");
  mkdirSync(tls, { recursive: true, mode: 0o700 });
  const file = (name: string) => join(tls, name);
  if (!existsSync(file("broker.pem"))) {
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    runTool("openssl", ["req", "-x509", ...ec, "-keyout", file("ca.key"), "-out", file("ca.pem"), "-days", "3650", "-subj", "/CN=diskless-relays local broker CA"], { what: "making the broker's CA", env });
    runTool("openssl", ["req", ...ec, "-keyout", file("broker.key"), "-out", file("broker.csr"), "-subj", "/CN=key-broker"], { what: "making the broker's TLS key", env });
    writeFileSync(file("san.cnf"), `subjectAltName=IP:${address}\n`);
    runTool("openssl", ["x509", "-req", "-in", file("broker.csr"), "-CA", file("ca.pem"), "-CAkey", file("ca.key"), "-CAcreateserial", "-out", file("broker.pem"), "-days", "3650", "-extfile", file("san.cnf")], {
      what: "signing the broker's TLS certificate",
      env,
    });
  }
  const data = join(dir, "broker");
  // Outside the data directory, which keeps only the token's hash.
  const tokenFile = join(dir, "admin.token");
  const publicFile = join(dir, "broker-public.json");
  if (!existsSync(publicFile)) writeFileSync(publicFile, runTool("key-broker", ["init", "--data", data, "--admin-token", tokenFile], { what: "key-broker init", env }));
  // A broker made when the data directory held the token in clear: move it out (the broker refuses to start otherwise).
  runTool("key-broker", ["admin-token", "--data", data, "--move-to", tokenFile], { what: "key-broker admin-token", env });
  const published = JSON.parse(readFileSync(publicFile, "utf8")) as { signingPublicKey: string; pushRecipient: string };
  const simulatorDir = join(dir, "snp-simulator");
  if (!existsSync(join(simulatorDir, "ark-ask.pem"))) runTool("snp-simulator", ["init", "--out", simulatorDir], { what: "snp-simulator init", env });
  return {
    data,
    tlsCert: file("broker.pem"),
    tlsKey: file("broker.key"),
    caFile: file("ca.pem"),
    adminSocket: join(dir, "admin.sock"),
    tokenFile,
    simulatorDir,
    signingPublicKey: published.signingPublicKey,
    pushRecipient: published.pushRecipient,
  };
}

/**
 * The firmware floor of the brokers this machine runs (the testnet's, the
 * tests'): the one AMD published and key-broker.service carries, by its name
 * in the broker (tools/broker/internal/snpcheck PublishedFloors). The SNP
 * simulator reports firmware at that floor.
 */
export const BROKER_MIN_TCB = "amd-sb-3019";

/** `key-broker serve` for these files, trusting the simulator's test chain (TEST ONLY). */
export function keyBrokerServeArgs(files: BrokerFiles, listen: string): string[] {
  return [
    "serve", "--data", files.data, "--listen", listen, "--tls-cert", files.tlsCert, "--tls-key", files.tlsKey, "--min-tcb", BROKER_MIN_TCB,
    "--admin-listen", `unix:${files.adminSocket}`, "--allow-simulated-attestation", "--simulated-ark-ask", join(files.simulatorDir, "ark-ask.pem"),
  ];
}

async function answers(files: BrokerFiles): Promise<boolean> {
  if (!existsSync(files.adminSocket)) return false;
  const token = readFileSync(files.tokenFile, "utf8").trim();
  return brokerStatus({ socket: files.adminSocket, token }).then(
    () => true,
    () => false,
  );
}

/** Starts the testnet's broker in its namespace unless it already answers; returns what network.json says about it. */
export async function startTestnetBroker(dir: string, netns: string): Promise<TestnetBroker> {
  const files = prepareBrokerFiles(dir, TESTNET.hostIPv4);
  if (!(await answers(files))) {
    const output = openSync(join(dir, "key-broker.log"), "a");
    const [command, ...args] = inNetns(netns, ["key-broker", ...keyBrokerServeArgs(files, `${TESTNET.hostIPv4}:${BROKER_PORT}`)]);
    const child = spawn(command!, args, { detached: true, stdio: ["ignore", output, output], env: withToolsOnPath() });
    child.unref();
    let up = false;
    for (let i = 0; i < 100 && !up; i++) {
      await sleep(100);
      up = await answers(files);
    }
    if (!up) throw new Error(`the testnet's key broker did not start; see ${join(dir, "key-broker.log")}`);
  }
  return {
    url: `https://${TESTNET.hostIPv4}:${BROKER_PORT}`,
    signingPublicKey: files.signingPublicKey,
    pushRecipient: files.pushRecipient,
    caFile: files.caFile,
    adminSocket: files.adminSocket,
    tokenFile: files.tokenFile,
    simulatorDir: files.simulatorDir,
  };
}
