/**
 * The testnet host's services, run inside the testnet's network namespace
 * by `npm run testnet`: a web server (on the HTTP port, and on a port every
 * exit policy refuses) and the authoritative DNS zone of the testnet, all
 * on the bridge's host addresses. Only the namespace can reach them.
 *   tsx cli/testnet-services.ts NETWORK.json
 */
import { createSocket } from "node:dgram";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { answerQuery } from "../lib/render/dns-zone";
import { networkSchema, TESTNET } from "../lib/config/testnet";

const network = networkSchema.parse(JSON.parse(readFileSync(process.argv[2]!, "utf8")));
const records = {
  zone: network.zone,
  names: Object.fromEntries(TESTNET.names.map((name) => [name, { a: network.hostIPv4, aaaa: network.hostIPv6 }])),
};

for (const port of [TESTNET.httpPort, TESTNET.refusedPort]) {
  createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(`diskless-relays testnet: ${req.headers.host ?? ""} reached through Tor\n`);
  }).listen(port, network.hostIPv4);
}

for (const [family, address] of [["udp4", network.hostIPv4], ["udp6", network.hostIPv6]] as const) {
  const dns = createSocket(family);
  dns.on("message", (message, peer) => {
    const answer = answerQuery(message, records);
    if (answer) dns.send(answer, peer.port, peer.address);
  });
  dns.bind(53, address);
}
console.log(`testnet services on ${network.hostIPv4}: http :${TESTNET.httpPort} and :${TESTNET.refusedPort}, dns :53 for ${network.zone}`);
