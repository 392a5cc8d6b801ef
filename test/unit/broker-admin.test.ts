/**
 * The program's side of the key broker's admin API (lib/broker/broker-admin.ts),
 * against the real broker (tools/broker, built by setup): over its unix
 * socket, with and without the token, uploading a relay's real tor keys,
 * registering and retiring images, revoking, reading status and log.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { attestationLog, BrokerAdminError, brokerStatus, reenrollRelay, registerImage, retireImage, revokeRelay, uploadRelayKeys, type BrokerAdminEndpoint } from "../../lib/broker/broker-admin";
import { IDENTITY_FILES } from "../../lib/tor/tor-keys";
import { makeTestKeys } from "../support/fleet";
import { toolEnv } from "../support/pulumi";
import { privateTmpDir } from "../support/tmp";
import { poll } from "../support/poll";
import { BROKER_MIN_TCB } from "../../lib/testnet/testnet-broker";

describe("the key broker's admin API, from the program", () => {
  const dir = privateTmpDir("broker-admin");
  const data = join(dir, "broker");
  const socket = join(dir, "admin.sock");
  let broker: ChildProcess;
  let admin: BrokerAdminEndpoint;
  const digest = (n: number) => n.toString(16).padStart(64, "0");
  const shipped = () => Object.fromEntries(IDENTITY_FILES.map((file) => [`keys/${file}`, readFileSync(join(dir, "keys", "exit-1", file))]));

  beforeAll(async () => {
    makeTestKeys(dir, [{ name: "exit-1", nickname: "ExitOne", node: "local", vmId: 100, exit: true }]);
    const init = spawnSync("key-broker", ["init", "--data", data, "--admin-token", join(dir, "admin.token")], { encoding: "utf8", env: toolEnv() });
    expect(init.status, init.stderr).toBe(0);
    broker = spawn("key-broker", ["serve", "--data", data, "--listen", "127.0.0.1:0", "--admin-listen", `unix:${socket}`, "--min-tcb", BROKER_MIN_TCB], { env: toolEnv(), stdio: "ignore" });
    await poll(() => existsSync(socket), { seconds: 5, intervalMs: 50 });
    admin = { socket, token: readFileSync(join(dir, "admin.token"), "utf8").trim() };
  });
  afterAll(() => broker?.kill());

  it("refuses a caller without the admin token", async () => {
    const refused = await brokerStatus({ socket, token: "not-the-token" }).catch((err: Error) => err);
    expect(refused).toBeInstanceOf(BrokerAdminError);
    expect((refused as BrokerAdminError).status).toBe(401);
  });

  it("takes a relay's shipped keys and images, and reports them without a key byte", async () => {
    await uploadRelayKeys(admin, "exit-1", shipped());
    await registerImage(admin, "exit-1", { imageDigest: digest(1), attestation: "snp", measurements: ["ab".repeat(48)] });
    await registerImage(admin, "exit-1", { imageDigest: digest(2), attestation: "none", tokenSha256: "cd".repeat(32) });
    await retireImage(admin, "exit-1", digest(1));
    const status = await brokerStatus(admin);
    const relay = status.relays.find((r) => r.relay === "exit-1")!;
    expect(relay.hasKeys).toBe(true);
    expect(relay.revoked).toBe(false);
    expect(relay.images.map((image) => [image.imageDigest, image.attestation, image.retired])).toEqual([
      [digest(1), "snp", true],
      [digest(2), "none", false],
    ]);
    const secret = readFileSync(join(dir, "keys", "exit-1", "ed25519_signing_secret_key")).subarray(32);
    expect(JSON.stringify(status)).not.toContain(secret.toString("base64").slice(0, 24));
    // At rest, in the broker's directory, nothing of the key in clear.
    for (const file of readdirSync(join(data, "relays"))) expect(readFileSync(join(data, "relays", file)).includes(secret.subarray(0, 16))).toBe(false);
  });

  it("refuses keys without the full identity, naming what is missing", async () => {
    const partial = shipped();
    delete partial["keys/secret_id_key"];
    await expect(uploadRelayKeys(admin, "exit-1", partial)).rejects.toThrow(/secret_id_key/);
  });

  it("revokes a relay: no new keys until it is re-enrolled, and the log says who did what", async () => {
    await revokeRelay(admin, "exit-1");
    expect((await brokerStatus(admin)).relays.find((r) => r.relay === "exit-1")!.revoked).toBe(true);
    await expect(uploadRelayKeys(admin, "exit-1", shipped())).rejects.toThrow(/revoked/);
    await reenrollRelay(admin, "exit-1", false);
    await uploadRelayKeys(admin, "exit-1", shipped());
    const log = await attestationLog(admin, "exit-1");
    expect(log.map((entry) => entry.verdict)).toEqual(expect.arrayContaining(["admin"]));
    expect(JSON.stringify(log)).toMatch(/revoke/);
  });

  it("refuses a relay name the broker would not accept before sending anything", async () => {
    await expect(revokeRelay(admin, "../etc")).rejects.toThrow(/not a relay name/);
  });
});
