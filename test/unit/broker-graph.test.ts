/**
 * Broker mode's resource graph under Pulumi's mocks, through deployFleet:
 * each relay's shipped keys are uploaded and its image registered before its
 * VM, registrations are replaced only by a new image digest (their delete
 * step retires the old image), the image build carries the agent and no key,
 * and collection and the rollout gate ask the broker. Every spec passes its
 * step's schema. The real engine runs this mode in broker-deploy.test.ts.
 */
import * as pulumi from "@pulumi/pulumi";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseStackConfig } from "../../lib/config/config";
import { planFleet } from "../../lib/plan/fleet";
import { initRelayKeys } from "../../lib/tor/key-store";
import { parseStepSpec, type StepName } from "../../lib/steps/steps";
import { mockFleetResources, specOf, type Registered } from "../support/graph-mocks";
import { privateTmpDir } from "../support/tmp";
import { poll } from "../support/poll";

const registered = mockFleetResources("broker-graph");

describe("the fleet's resource graph in broker mode", () => {
  const dir = privateTmpDir("broker-graph");
  const index = (name: string) => registered.findIndex((r) => r.name === name);
  const find = (name: string) => registered[index(name)]!;
  const stepOf = (command: Registered) => String(command.inputs.create).split(" ").at(-1) as StepName;

  beforeAll(async () => {
    for (const [name, nickname] of [["r1", "BrokerGraphOne"], ["r2", "BrokerGraphTwo"]] as const) initRelayKeys(join(dir, "keys"), name, { nickname });
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "keys", "collector")]);
    writeFileSync(join(dir, "admin.token"), "test-admin-token\n", { mode: 0o600 });
    const config = parseStackConfig({
      proxmox: { endpoint: "https://pve.example.net:8006", nodes: ["pve1"], datastore: "local", bridge: "vmbr0" },
      proxmoxApiToken: "root@pam!graph=0a1b",
      keyStore: join(dir, "keys"),
      buildDir: join(dir, "build"),
      stateCollection: { privateKeyFile: join(dir, "keys", "collector") },
      identity: {
        mode: "broker",
        broker: {
          url: "https://broker.example.net:8443",
          signingPublicKey: Buffer.alloc(32, 7).toString("base64"),
          pushRecipient: "age1" + "q".repeat(58),
          attestation: "none",
          admin: { url: "https://broker.example.net:8444", tokenFile: join(dir, "admin.token") },
        },
      },
      relays: ["r1", "r2"].map((name, i) => ({
        name,
        nickname: `BrokerGraph${["One", "Two"][i]}`,
        node: "pve1",
        vmId: 9200 + i,
        mac: `BC:24:11:00:01:0${i + 1}`,
        ipv4: { address: `198.51.100.${20 + i}/24`, gateway: "198.51.100.1" },
        contactInfo: "x@example.net",
      })),
    });
    const fleet = planFleet(config, { projectDir: dir, now: new Date() });
    const { deployFleet } = await import("../../components/fleet");
    // A fixed package set: the graph does not depend on what Debian serves today.
    const basePackages = { sources: ["deb http://deb.debian.org/debian bookworm main"], packages: ["tor 0.4.9.11-1 amd64"] };
    const outputs = deployFleet(config, { ...fleet, basePackages }, { projectDir: process.cwd(), project: "diskless-relays", stack: "broker-graph", dryRun: true, observeVms: (vms) => vms.map(() => ({ kind: "absent" as const })) });
    await new Promise<void>((resolve) => pulumi.all(Object.values(outputs).flatMap((o) => [o.iso, o.vmId])).apply(() => resolve()));
    await poll(() => index("r2-rollout-gate") >= 0, { seconds: 5 });
  });

  it("uploads the keys and registers the image after the build and before the VM; the gate comes after", () => {
    for (const order of [
      ["r1-state-collect", "r1-broker-keys", "r1-vm"],
      ["r1-state-collect", "r1-image-build", "r1-broker-image", "r1-vm", "r1-rollout-gate"],
    ].map((names) => names.map(index))) {
      expect(order.every((i) => i >= 0), JSON.stringify(order)).toBe(true);
      expect([...order].sort((a, b) => a - b)).toEqual(order);
    }
    expect(stepOf(find("r1-broker-keys"))).toBe("upload-relay-keys");
    expect(find("r1-broker-keys").inputs.delete).toMatch(/ forget-relay-keys$/);
    expect(stepOf(find("r1-broker-image"))).toBe("register-image");
    expect(find("r1-broker-image").inputs.delete).toMatch(/ retire-image$/);
  });

  it("replaces a registration only for a new image digest: a rebuild of the same image registers again in place", () => {
    const registration = find("r1-broker-image");
    const spec = specOf(registration);
    expect(registration.inputs.triggers).toEqual([spec.imageDigest]);
    // The keys are never replaced (their delete step would run): a new identity changes the spec, in place.
    expect(find("r1-broker-keys").inputs.triggers).toBeUndefined();
    expect(specOf(find("r1-broker-keys")).identity.rsaFingerprint).toMatch(/^[0-9A-F]{40}$/);
  });

  it("builds an image with the agent and a boot token, and no key, host key or collection key", () => {
    const spec = specOf(find("r1-image-build"));
    expect(spec.broker).toMatchObject({ bootToken: true });
    expect(spec.broker.agentBinary).toMatch(/relay-agent$/);
    const agent = JSON.parse(spec.broker.agentConfig);
    expect(agent).toMatchObject({ relay: "r1", imageDigest: spec.imageDigest, attestation: "none", brokerUrl: "https://broker.example.net:8443", healthCommand: "/usr/local/sbin/relay-health" });
    expect(spec.authorizedKeys).toBeUndefined();
  });

  it("has collection and the rollout gate ask the broker, with the token in its file only", () => {
    for (const name of ["r1-state-collect", "r1-rollout-gate"]) {
      const spec = specOf(find(name));
      expect(spec.broker).toEqual({ admin: { url: "https://broker.example.net:8444", tokenFile: join(dir, "admin.token") }, pushIntervalSeconds: 300, attestation: "none" });
    }
    const everything = JSON.stringify(registered.map((r) => r.inputs));
    expect(everything).not.toContain("test-admin-token");
  });

  it("gives every step a spec its schema accepts", () => {
    for (const command of registered.filter((r) => r.type === "command:local:Command")) {
      expect(() => parseStepSpec(stepOf(command), specOf(command)), command.name).not.toThrow();
    }
  });
});
