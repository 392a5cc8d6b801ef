/**
 * A preview without private keys (lib/plan/preview-record.ts, lib/plan/shipped-keys.ts):
 * planned from the public key files and the preview records that
 * previewBundle lists, it gives every relay the image inputs and torrc a
 * plan with the private keys gives; a stale record, or one where a build
 * would need the keys, is refused by name. Keys are made by real tor.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseStackConfig, type StackConfig } from "../../lib/config/config";
import { FleetError, planFleet } from "../../lib/plan/fleet";
import { relayImageInputs, relayImageTexts } from "../../lib/plan/image-inputs";
import { initFamilyKey, initRelayKeys, renewSigningKey } from "../../lib/tor/key-store";
import { previewBundle } from "../../lib/plan/shipped-keys";
import { privateTmpDir } from "../support/tmp";

const keyHost = privateTmpDir("record-keyhost");
const runner = privateTmpDir("record-runner");
const now = new Date();

const config: StackConfig = parseStackConfig({
  proxmox: { endpoint: "https://pve.example.net:8006", nodes: ["pve1"], datastore: "local", bridge: "vmbr0" },
  proxmoxApiToken: "a@pve!b=c",
  stateCollection: { privateKeyFile: "ssh/collector" },
  relays: [
    { name: "exit-a", nickname: "ExitA", exit: { enabled: true }, nameservers: ["198.51.100.53"], family: "fleet" },
    { name: "guard-b", nickname: "GuardB", family: "fleet", keysDir: "elsewhere/guard-b" },
  ].map((relay, i) => ({
    node: "pve1",
    vmId: 9100 + i,
    mac: `BC:24:11:00:00:0${i + 1}`,
    ipv4: { address: `198.51.100.${10 + i}/24`, gateway: "198.51.100.1" },
    contactInfo: "abuse@example.net",
    ...relay,
  })),
});

/** Unpacks a bundle as the workflow does: its files at their paths, and the records. */
function unpack(into: string): void {
  const bundle = previewBundle(config, keyHost, now);
  for (const file of bundle.files) cpSync(join(keyHost, file), join(into, file));
  for (const { path, record } of bundle.records) writeFileSync(join(into, path), JSON.stringify(record));
}

const imageInputs = (projectDir: string, options: { allowPreviewRecords?: boolean } = {}) => {
  const plan = planFleet(config, { projectDir, now, needCollectionKey: false, ...options });
  return plan.relays.map((relay) => ({
    torrc: relay.torrc,
    fingerprint: relay.identity.rsaFingerprint,
    inputs: relayImageInputs(relay, "base", relayImageTexts(relay, config, plan.collectorPublicKey, projectDir), "scripts"),
  }));
};

describe("a preview from preview records", () => {
  beforeAll(() => {
    initRelayKeys(join(keyHost, "keys"), "exit-a", { nickname: "ExitA" });
    initRelayKeys(join(keyHost, "elsewhere"), "guard-b", { nickname: "GuardB" });
    initFamilyKey(join(keyHost, "keys"), "fleet");
    mkdirSync(join(keyHost, "ssh"));
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(keyHost, "ssh/collector")]);
    unpack(runner);
  });

  it("gives every relay the torrc (with its FamilyId), fingerprint and image inputs of a plan with the private keys", () => {
    const withKeys = imageInputs(keyHost);
    expect(withKeys[0]!.torrc).toMatch(/^FamilyId /m);
    expect(imageInputs(runner, { allowPreviewRecords: true })).toEqual(withKeys);
  });

  it("is a preview's only: a plan for an update reads the private keys, and names the one missing", () => {
    expect(() => imageInputs(runner)).toThrow(/relay exit-a: .*keys\/exit-a\/ed25519_signing_secret_key is missing/);
  });

  it("refuses a record made from other public files than those beside it (a renewed certificate), naming it", () => {
    renewSigningKey(join(keyHost, "keys"), "exit-a", 30);
    cpSync(join(keyHost, "keys/exit-a/ed25519_signing_cert"), join(runner, "keys/exit-a/ed25519_signing_cert"));
    let error: unknown;
    try {
      imageInputs(runner, { allowPreviewRecords: true });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(FleetError);
    expect((error as FleetError).problems).toEqual([expect.stringMatching(/^keyStore: relay exit-a: .*keys\/exit-a\/preview-record\.json was made from other key files .*export-shipped --stack STACK/)]);
    // Exported again, it plans as the key host does.
    unpack(runner);
    expect(imageInputs(runner, { allowPreviewRecords: true })).toEqual(imageInputs(keyHost));
  });
});
