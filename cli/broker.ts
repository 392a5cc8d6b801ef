/**
 * The key broker, from the operator's chair (lib/broker/broker-admin.ts):
 *   npm run broker -- status                     per relay: revoked, images and measurements, last attestation, last push, stale
 *   npm run broker -- revoke RELAY               after a seizure: the relay gets nothing, ever, until re-enrolled
 *   npm run broker -- reenroll RELAY [--keep-keys]
 *   npm run broker -- log RELAY                  the relay's attestation log
 * Options: --stack NAME (default: the selected stack). Reads the stack's
 * identity.broker.admin; exits non-zero when a relay needs attention.
 */
import { parseArgs } from "node:util";
import { attestationLog, brokerStatus, reenrollRelay, revokeRelay } from "../lib/broker/broker-admin";
import { brokerAdminEndpoint, resolveBroker } from "../lib/broker/broker-endpoint";
import { inProject } from "../lib/core/paths";
import { parseHealthReport } from "../lib/ops/relay-health";
import { readStackConfig } from "../lib/config/stack-config";
import { readNetwork } from "../lib/testnet/testnet-host";
import { shellQuote } from "../lib/core/shell-quote";

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { stack: { type: "string" }, "keep-keys": { type: "boolean", default: false } } });
  const [command, relay] = positionals;
  const config = await readStackConfig(values.stack);
  const testnet = config.testnet ? readNetwork(inProject(process.cwd(), config.testnet.dir)) : undefined;
  const broker = resolveBroker(config, process.cwd(), testnet);
  if (!broker) throw new Error("identity.mode is not broker in this stack: its relays' keys are in their images");
  const endpoint = brokerAdminEndpoint(broker);
  const needRelay = () => {
    if (!relay) throw new Error(`usage: npm run broker -- ${command} RELAY`);
    return relay;
  };
  switch (command) {
    case "status": {
      const status = await brokerStatus(endpoint);
      let attention = 0;
      for (const r of status.relays) {
        const current = r.images.filter((image) => !image.retired);
        const last = r.lastAttestation;
        const state = r.revoked ? "REVOKED" : r.stale ? "STALE" : last ? last.verdict : "never attested";
        if (r.revoked || r.stale || !last) attention++;
        console.log(`${r.relay}: ${state}`);
        for (const image of current) console.log(`  expects image ${image.imageDigest.slice(0, 12)} (${image.attestation}${image.measurements ? `, measurement ${image.measurements.map((m) => m.slice(0, 16)).join(" ")}…` : ""})`);
        if (current.length === 0 && !r.revoked) {
          attention++;
          console.log("  no image registered: it gets nothing at its next boot (pulumi up registers its image)");
        }
        if (last) console.log(`  last ${last.purpose} ${last.time}: ${last.verdict}${last.reason ? ` (${last.reason})` : ""}, image ${last.imageDigest.slice(0, 12)}${last.measurement ? `, measurement ${last.measurement.slice(0, 16)}…` : ""}${last.reportedTcb ? `, TCB ${last.reportedTcb}` : ""}${last.root ? `, report verified by ${last.root.startsWith("simulated/") ? "the SIMULATOR's test root" : "AMD's root"} ${last.root}` : ""}`);
        const refusal = r.lastRefusal;
        if (refusal && (!last || Date.parse(refusal.time) > Date.parse(last.time))) {
          attention++;
          console.log(`  REFUSED ${refusal.purpose} ${refusal.time}: ${refusal.verdict}${refusal.reason ? ` (${refusal.reason})` : ""}${refusal.imageDigest ? `, image ${refusal.imageDigest.slice(0, 12)}` : ""}${refusal.root ? `, report verified by root ${refusal.root}` : ""}`);
        }
        console.log(`  last push: ${r.lastPush ?? "never"}`);
        if (r.lastHealth) {
          const health = parseHealthReport(r.lastHealth.report);
          console.log(`  last health report ${r.lastHealth.time}: image ${r.lastHealth.imageDigest.slice(0, 12)}, tor ${health.torPids.length > 0 ? "running" : "NOT running"}, fingerprint ${health.rsaFingerprint ?? "none"}, listening on ${health.listeningPorts.join(" ") || "nothing"}`);
        }
      }
      return attention === 0 ? 0 : 1;
    }
    case "revoke":
      await revokeRelay(endpoint, needRelay());
      console.log(`relay ${relay}: revoked; the broker releases nothing to it and accepts nothing from it until npm run broker -- reenroll ${shellQuote(needRelay())}`);
      return 0;
    case "reenroll":
      await reenrollRelay(endpoint, needRelay(), values["keep-keys"]!);
      console.log(`relay ${relay}: re-enrolled${values["keep-keys"] ? " with its stored keys" : "; upload its keys again (pulumi up)"}; its images must be registered again`);
      return 0;
    case "log":
      for (const entry of await attestationLog(endpoint, needRelay())) console.log(JSON.stringify(entry));
      return 0;
    default:
      console.error("usage: npm run broker -- status | revoke RELAY | reenroll RELAY [--keep-keys] | log RELAY  [--stack NAME]");
      return 2;
  }
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`broker: ${err.message}`);
    process.exit(1);
  },
);
