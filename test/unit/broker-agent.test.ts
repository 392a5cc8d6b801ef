/**
 * The agent configuration a broker-mode image carries (lib/broker/broker-agent.ts),
 * judged by the agent itself: `relay-agent check` applies the same rules the
 * agent applies at boot (tools/broker/internal/agent/config.go).
 */
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { renderAgentConfig } from "../../lib/broker/broker-agent";
import { BROKER_FILE_SET_PATH, brokerFileSet, renderBrokerFileSet } from "../../lib/image/broker-files";
import { RELAY_EXPORT_FILES } from "../../lib/steps/steps";
import { DEFAULT_PUBLIC_ATTESTATION_PORT, parseStackConfig, servesPublicAttestation } from "../../lib/config/config";
import { toolEnv } from "../support/pulumi";
import { privateTmpDir } from "../support/tmp";
import { repoRoot } from "../support/pulumi";

const BROKER = {
  url: "https://broker.example.net:8443",
  signingPublicKey: Buffer.alloc(32, 7).toString("base64"),
  // A well-formed age recipient: bech32 of 32 bytes (age-keygen's form).
  pushRecipient: "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
  attestation: "snp" as const,
  allowSimulatedAttestation: true,
  pushIntervalSeconds: 300,
};
const DIGEST = "ab".repeat(32);

describe("the agent configuration of a broker-mode image", () => {
  const dir = privateTmpDir("agent-config");
  const check = (text: string) => {
    const file = join(dir, `config-${Math.random().toString(16).slice(2)}.json`);
    writeFileSync(file, text);
    return spawnSync("relay-agent", ["check", file], { encoding: "utf8", env: toolEnv() });
  };

  it("is accepted by the agent for simulated SNP, hardware SNP and boot tokens", () => {
    for (const broker of [BROKER, { ...BROKER, allowSimulatedAttestation: false }, { ...BROKER, attestation: "none" as const, allowSimulatedAttestation: false }]) {
      const result = check(renderAgentConfig({ relay: "exit-1", imageDigest: DIGEST, broker, withCa: true }));
      expect(result.status, result.stderr).toBe(0);
    }
  });

  it("names the simulator's port locally and the SEV guest device otherwise, and no key at all", () => {
    const local = JSON.parse(renderAgentConfig({ relay: "exit-1", imageDigest: DIGEST, broker: BROKER, withCa: false }));
    expect(local.reportSource).toBe("serial:/dev/virtio-ports/org.diskless-relays.snp");
    expect(JSON.parse(renderAgentConfig({ relay: "exit-1", imageDigest: DIGEST, broker: { ...BROKER, allowSimulatedAttestation: false }, withCa: false })).reportSource).toBe("sev-guest");
    expect(Object.keys(local).sort()).toEqual(["attestation", "brokerSigningPublicKey", "brokerUrl", "healthCommand", "imageDigest", "pushIntervalSeconds", "pushRecipient", "relay", "reportSource", "torDataDir", "torGroup", "torUser"]);
  });

  it("serves the public attestation endpoint only where the stack config says an SNP relay does, and the agent agrees", () => {
    const relay = (sev: object) => ({ name: "exit-1", nickname: "ExitOne", node: "local", vmId: 100, mac: "52:54:00:00:00:01", ipv4: { address: "10.77.0.11/24", gateway: "10.77.0.1" }, contactInfo: "x@example.net", sev });
    const sev = { enabled: true, ovmf: "ovmf.fd", ovmfSha256: "8f765dfabc127fc0a938a0744a3103ec15864d7d794eb4c398aa976b6d6ab16c", vcpuType: "EPYC-v4" };
    const stack = (broker: object, sevSettings: object) => parseStackConfig({ target: "qemu", testnet: {}, stateCollection: { privateKeyFile: "k" }, identity: { mode: "broker", broker: { ...BROKER, ...broker } }, relays: [relay(sevSettings)] });
    // On by default for an SNP relay, on port 9180.
    const on = stack({}, sev);
    expect(servesPublicAttestation(on, on.relays[0]!)).toBe(true);
    expect(on.relays[0]!.sev!.publicAttestation.port).toBe(DEFAULT_PUBLIC_ATTESTATION_PORT);
    const off = stack({}, { ...sev, publicAttestation: { enabled: false } });
    expect(servesPublicAttestation(off, off.relays[0]!)).toBe(false);
    // A clash with another of the relay's ports names the field.
    expect(() => stack({}, { ...sev, publicAttestation: { port: 443 } })).toThrow(/relays\[0\]\.sev\.publicAttestation\.port: 443 is already the relay's orPort/);
    const served = renderAgentConfig({ relay: "exit-1", imageDigest: DIGEST, broker: BROKER, withCa: false, publicAttestation: { port: 9180, buildRecord: "artifacts/relays/exit-1/abababababab.json" } });
    expect(JSON.parse(served).publicAttestation).toEqual({ port: 9180, buildRecord: "artifacts/relays/exit-1/abababababab.json" });
    const accepted = check(served);
    expect(accepted.status, accepted.stderr).toBe(0);
    // The agent refuses the endpoint for a boot-token relay: it has no report to show.
    const token = check(renderAgentConfig({ relay: "exit-1", imageDigest: DIGEST, broker: { ...BROKER, attestation: "none", allowSimulatedAttestation: false }, withCa: false, publicAttestation: { port: 9180, buildRecord: "x" } }));
    expect(token.status).not.toBe(0);
    expect(token.stderr).toMatch(/publicAttestation is only for attestation "snp"/);
  });

  it("agrees with the agent on the broker URL: what the stack config refuses, the agent refuses too", () => {
    const config = (url: string) => ({
      target: "qemu",
      testnet: {},
      stateCollection: { privateKeyFile: "k" },
      identity: { mode: "broker", broker: { ...BROKER, url } },
      relays: [{ name: "exit-1", nickname: "ExitOne", node: "local", vmId: 100, mac: "52:54:00:00:00:01", ipv4: { address: "10.77.0.11/24", gateway: "10.77.0.1" }, contactInfo: "x@example.net", sev: { enabled: true, ovmf: "ovmf.fd", ovmfSha256: "8f765dfabc127fc0a938a0744a3103ec15864d7d794eb4c398aa976b6d6ab16c", vcpuType: "EPYC-v4" } }],
    });
    for (const url of ["http://127.0.0.1:8443", "https://10.77.0.1:8443", "http://10.77.0.1:8443"]) {
      let schemaAccepts = true;
      try {
        parseStackConfig(config(url));
      } catch {
        schemaAccepts = false;
      }
      const agent = check(renderAgentConfig({ relay: "exit-1", imageDigest: DIGEST, broker: { ...BROKER, url }, withCa: false }));
      expect(agent.status === 0, `${url}: schema ${schemaAccepts}, agent ${agent.stderr}`).toBe(schemaAccepts);
    }
  });
});

describe("the key broker's file set", () => {
  it("is the one lib renders, embedded as data where the Go code reads it", () => {
    const embedded = readFileSync(join(repoRoot, BROKER_FILE_SET_PATH), "utf8");
    expect(embedded, "run `npx tsx cli/broker-files.ts` and rebuild the broker (scripts/setup.sh)").toBe(renderBrokerFileSet());
  });

  it("lets a broker-mode relay push what an image-mode relay hands over: onion keys, state and directory documents", () => {
    const set = brokerFileSet();
    expect([...set.mutable].sort()).toEqual([...RELAY_EXPORT_FILES].sort());
    expect(set.mutable).toEqual(expect.arrayContaining(["cached-certs", "cached-microdesc-consensus", "keys/secret_onion_key_ntor", "state"]));
    expect(set.identity.filter((file) => set.mutable.includes(file))).toEqual([]);
  });
});
