/**
 * `npm run broker` (cli/broker.ts) as an operator runs it: the stack's own
 * config names the broker's admin socket and token file; status, revoke,
 * re-enrol and log reach the real broker (tools/broker).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uploadRelayKeys } from "../../lib/broker/broker-admin";
import { IDENTITY_FILES } from "../../lib/tor/tor-keys";
import { makeTestKeys } from "../support/fleet";
import { TestProject, toolEnv } from "../support/pulumi";
import { privateTmpDir } from "../support/tmp";
import { poll } from "../support/poll";
import { BROKER_MIN_TCB } from "../../lib/testnet/testnet-broker";

describe("npm run broker", () => {
  const dir = privateTmpDir("broker-cli");
  const data = join(dir, "broker");
  const socket = join(dir, "admin.sock");
  let broker: ChildProcess;
  let project: TestProject;
  let config: Record<string, any>;

  beforeAll(async () => {
    const published = JSON.parse(spawnSync("key-broker", ["init", "--data", data, "--admin-token", join(dir, "admin.token")], { encoding: "utf8", env: toolEnv() }).stdout) as { signingPublicKey: string; pushRecipient: string };
    broker = spawn("key-broker", ["serve", "--data", data, "--listen", "127.0.0.1:0", "--admin-listen", `unix:${socket}`, "--min-tcb", BROKER_MIN_TCB], { env: toolEnv(), stdio: "ignore" });
    await poll(() => existsSync(socket), { seconds: 5, intervalMs: 50 });
    project = new TestProject("brokercli", { passphrase: "" });
    makeTestKeys(project.dir, [{ name: "exit-1", nickname: "ExitOne", node: "local", vmId: 100, exit: true }]);
    const token = readFileSync(join(dir, "admin.token"), "utf8").trim();
    await uploadRelayKeys({ socket, token }, "exit-1", Object.fromEntries(IDENTITY_FILES.map((file) => [`keys/${file}`, readFileSync(join(project.dir, "keys", "exit-1", file))])));
    config = {
      target: "qemu",
      testnet: { dir: ".testnet" },
      stateCollection: { privateKeyFile: "keys/collector" },
      identity: {
        mode: "broker",
        broker: { url: "http://127.0.0.1:8443", ...published, attestation: "snp", allowSimulatedAttestation: true, admin: { socket, tokenFile: join(dir, "admin.token") } },
      },
      relays: [{ name: "exit-1", nickname: "ExitOne", node: "local", vmId: 100, mac: "52:54:00:00:00:01", ipv4: { address: "10.77.0.11/24", gateway: "10.77.0.1" }, contactInfo: "x@example.net", sev: { enabled: true, ovmf: "ovmf.fd", ovmfSha256: "8f765dfabc127fc0a938a0744a3103ec15864d7d794eb4c398aa976b6d6ab16c", vcpuType: "EPYC-v4" } }],
    };
    project.configure(config);
  }, 120_000);
  afterAll(() => {
    broker?.kill();
    project?.destroy();
  });

  it("shows a relay that never attested as needing attention", () => {
    const result = project.script("cli/broker.ts", "--stack", project.stack, "status");
    expect(result.stdout).toMatch(/^exit-1: never attested$/m);
    expect(result.stdout).toMatch(/last push: never/);
    expect(result.status).toBe(1);
  });

  it("revokes, shows it, and re-enrols", () => {
    const revoked = project.script("cli/broker.ts", "--stack", project.stack, "revoke", "exit-1");
    expect(revoked.status, revoked.stderr).toBe(0);
    expect(revoked.stdout).toMatch(/revoked; the broker releases nothing to it/);
    expect(project.script("cli/broker.ts", "--stack", project.stack, "status").stdout).toMatch(/^exit-1: REVOKED$/m);
    const log = project.script("cli/broker.ts", "--stack", project.stack, "log", "exit-1");
    expect(log.stdout).toMatch(/"verdict":"admin"/);
    expect(project.script("cli/broker.ts", "--stack", project.stack, "reenroll", "exit-1", "--keep-keys").status).toBe(0);
    expect(project.script("cli/broker.ts", "--stack", project.stack, "status").stdout).not.toMatch(/REVOKED/);
  });

  it("says what is missing when the stack names no admin endpoint", () => {
    delete config.identity.broker.admin;
    project.configure(config);
    const result = project.script("cli/broker.ts", "--stack", project.stack, "status");
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/identity\.broker\.admin is not set/);
  });
});
