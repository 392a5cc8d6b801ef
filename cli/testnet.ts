/**
 * The private Tor network on this machine (lib/config/testnet.ts, lib/testnet/testnet-host.ts):
 *   npm run testnet [-- up]            start it (idempotent): namespace, bridge, 3 authorities, a client, web and DNS
 *   npm run testnet -- status          the relays in the client's consensus, with their flags
 *   npm run testnet -- fetch [HOST[:PORT]] [--via NICK,NICK,…]
 *                                      fetch http://HOST/ (default web.testnet) through a circuit you choose
 *   npm run testnet -- verify NICK|FP [--log DIR] [--allowed-signers FILE]
 *                                      verify-relay against one of your relays, from the testnet's namespace, as a
 *                                      volunteer would: the client's consensus, the published measurement log
 *                                      (default artifacts/measurement-log), the simulated secure processor's TEST root
 *   npm run testnet -- down            stop all of it, relay VMs in it included
 * Options: --dir DIR (default .testnet), --netns NAME (default diskless-relays).
 */
import { parseArgs } from "node:util";
import { parseRouterStatuses } from "../lib/tor/consensus";
import { fetchThroughCircuit, TorControl } from "../lib/tor/tor-control";
import { TESTNET } from "../lib/config/testnet";
import { readNetwork, startTestnet, stopTestnet } from "../lib/testnet/testnet-host";
import { BROKER_MIN_TCB } from "../lib/testnet/testnet-broker";
import { inNetns } from "../lib/local/netns";
import { withToolsOnPath } from "../lib/core/paths";
import { artifactsDirOf, measurementLogDir, measurementLogSigners } from "../lib/config/build-layout";
import { spawnSync } from "node:child_process";
import { join, resolve } from "node:path";

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      dir: { type: "string", default: ".testnet" },
      netns: { type: "string", default: TESTNET.netns },
      via: { type: "string" },
      log: { type: "string", default: measurementLogDir(artifactsDirOf(".")) },
      "allowed-signers": { type: "string", default: measurementLogSigners(artifactsDirOf(".")) },
    },
  });
  const location = { dir: values.dir!, netns: values.netns! };
  const command = positionals[0] ?? "up";
  if (command === "up") {
    const started = Date.now();
    await startTestnet(location, process.cwd(), (line) => console.log(line));
    console.log(`testnet up in ${((Date.now() - started) / 1000).toFixed(0)}s (${location.dir}/network.json)`);
    return 0;
  }
  if (command === "down") {
    await stopTestnet(location);
    console.log(`testnet ${location.netns} removed`);
    return 0;
  }
  const network = readNetwork(location.dir);
  if (!network) {
    console.error(`no testnet in ${location.dir}: start it with npm run testnet`);
    return 1;
  }
  const control = await TorControl.connect(network.controlSocket);
  try {
    const routers = parseRouterStatuses(await control.getInfo("ns/all"));
    if (command === "status") {
      console.log(`consensus valid-after ${await control.getInfo("consensus/valid-after")}`);
      for (const router of routers) console.log(`${router.nickname.padEnd(20)} ${router.fingerprint}  ${router.address}:${router.orPort}  ${router.flags.join(" ")}`);
      return 0;
    }
    if (command === "fetch") {
      const [host = TESTNET.names[0], port = String(TESTNET.httpPort)] = (positionals[1] ?? "").split(":").filter(Boolean);
      const authorities = new Set(network.authorities.map((a) => a.fingerprint));
      const byNick = (nick: string) => routers.find((r) => r.nickname === nick)?.fingerprint ?? nick;
      const path = values.via
        ? values.via.split(",").map(byNick)
        : [
            routers.find((r) => !authorities.has(r.fingerprint) && r.flags.includes("Guard") && !r.flags.includes("Exit"))?.fingerprint,
            network.authorities[0]!.fingerprint,
            routers.find((r) => !authorities.has(r.fingerprint) && r.flags.includes("Exit"))?.fingerprint,
          ].filter((fp): fp is string => !!fp);
      if (path.length === 0) throw new Error("no relay of yours is in the consensus yet; see npm run testnet -- status");
      // A relay is in the consensus a little before the client has what it needs to extend to it.
      await control.waitForMicrodescriptors(path, 120_000);
      const circuit = await control.buildCircuit(path);
      const result = await fetchThroughCircuit(control, network.socksSocket, circuit, host!, Number(port));
      console.log(`through ${path.map((fp) => routers.find((r) => r.fingerprint === fp)?.nickname ?? fp).join(" → ")}: HTTP ${result.status}\n${result.body}`);
      return 0;
    }
    if (command === "verify") {
      const wanted = positionals[1] ?? "";
      const fingerprint = routers.find((r) => r.nickname === wanted)?.fingerprint ?? wanted.toUpperCase();
      if (!/^[0-9A-F]{40}$/.test(fingerprint)) throw new Error(`"${wanted}" is neither a nickname in the consensus nor a fingerprint; see npm run testnet -- status`);
      // The relays' addresses are reachable only inside the namespace; every value travels as its own argument.
      const [tool, ...args] = inNetns(network.netns, [
        "verify-relay", "--tor-data-dir", resolve(location.dir, "client"), "--log", resolve(values.log!), "--allowed-signers", resolve(values["allowed-signers"]!),
        "--min-tcb", BROKER_MIN_TCB, "--allow-simulated-root", join(network.broker.simulatorDir, "ark-ask.pem"), "--", fingerprint,
      ]);
      return spawnSync(tool!, args, { stdio: "inherit", env: withToolsOnPath() }).status ?? 1;
    }
  } finally {
    control.close();
  }
  console.error(`unknown command ${command}; see the header of cli/testnet.ts`);
  return 2;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`testnet: ${err.message}`);
    process.exit(1);
  },
);
