/**
 * Broker mode's first promise: a relay image holds no private key byte. The
 * same relay is built twice with the program's own builder: in image mode
 * (the positive control: the scan finds every key), and in broker mode,
 * whose ISO and initrds must hold none of them, raw, hex or base64; nor an
 * SSH host key or the collection key. The broker-mode image carries the
 * agent and its configuration instead.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { renderAgentConfig } from "../../lib/broker/broker-agent";
import type { BuiltImage } from "../../lib/image/relay-build";
import { occurrences, secrets } from "../support/key-scan";
import { makeTestKeys } from "../support/fleet";
import { buildRelayIso, debianBase } from "../support/images";
import { toolEnv } from "../support/pulumi";
import { privateTmpDir } from "../support/tmp";

const BROKER = {
  url: "https://10.77.0.1:8443",
  signingPublicKey: Buffer.alloc(32, 7).toString("base64"),
  pushRecipient: "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
  attestation: "snp" as const,
  allowSimulatedAttestation: true,
  pushIntervalSeconds: 300,
};

describe("a broker-mode image", () => {
  const dir = privateTmpDir("broker-image");
  const relay = { name: "exit-1", nickname: "ExitOne", vmId: 100, mac: "52:54:00:00:00:01" };
  let keys: Map<string, Buffer>;
  let imageMode: BuiltImage;
  let brokerMode: BuiltImage;
  let agentConfig = "";
  const zstdCat = (file: string) => spawnSync("zstd", ["-dc", file], { maxBuffer: 1 << 30, env: toolEnv() }).stdout as Buffer;

  beforeAll(() => {
    const base = debianBase();
    makeTestKeys(dir, [{ name: relay.name, nickname: relay.nickname, node: "local", vmId: relay.vmId, exit: true }]);
    keys = secrets(join(dir, "keys", relay.name));
    // What a running relay handed over: its onion keys, as the collection step leaves them.
    const collected = join(dir, "collected");
    mkdirSync(join(collected, "keys"), { recursive: true, mode: 0o700 });
    for (const file of ["secret_onion_key", "secret_onion_key_ntor"]) spawnSync("cp", [join(dir, "keys", relay.name, file), join(collected, "keys", file)]);
    const agentBinary = spawnSync("sh", ["-c", "command -v relay-agent"], { encoding: "utf8", env: toolEnv() }).stdout.trim();
    imageMode = buildRelayIso(dir, base, relay, collected, join(dir, "image-mode"));
    brokerMode = buildRelayIso(dir, base, relay, collected, join(dir, "broker-mode"), {}, (imageDigest) => {
      agentConfig = renderAgentConfig({ relay: relay.name, imageDigest, broker: BROKER, withCa: true });
      return { broker: { agentBinary, agentConfig, caPem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" } };
    });
  }, 600_000);

  it("the scan finds every key in an image-mode ISO (the positive control)", () => {
    const hits = occurrences(readFileSync(imageMode.iso), keys);
    for (const file of ["secret_id_key", "ed25519_signing_secret_key", "secret_onion_key_ntor", "ssh_host_ed25519_key"]) {
      expect(hits.some((hit) => hit.startsWith(file)), `${file} in ${hits.join(", ")}`).toBe(true);
    }
  });

  it("holds no private key byte in its ISO or its initrds, raw, hex or base64", () => {
    expect(occurrences(readFileSync(brokerMode.iso), keys)).toEqual([]);
    expect(occurrences(readFileSync(brokerMode.uki), keys)).toEqual([]);
    // The base's initrd is compressed: scan it unpacked too.
    const baseInitrd = zstdCat(join(debianBase(), "base.cpio.zst"));
    expect(baseInitrd.length).toBeGreaterThan(1_000_000);
    expect(occurrences(baseInitrd, keys)).toEqual([]);
    expect(brokerMode.onionKeys).toEqual([]);
    expect(brokerMode.hostPublicKey).toBe("");
  });

  it("carries no SSH server: the base's SSH layer is in the image-mode UKI only, and the base layer has no sshd", () => {
    const base = debianBase();
    const sshLayer = readFileSync(join(base, "ssh.cpio.zst"));
    expect(sshLayer.length).toBeGreaterThan(1000);
    // The layer is concatenated into the UKI's initrd byte for byte: found in the image-mode UKI, absent from the broker-mode one.
    expect(readFileSync(imageMode.uki).includes(sshLayer)).toBe(true);
    expect(readFileSync(brokerMode.uki).includes(sshLayer)).toBe(false);
    // cpio -t prints names without their leading "./".
    const list = (archive: string) => spawnSync("cpio", ["-t", "--quiet"], { input: zstdCat(archive), maxBuffer: 1 << 28 }).stdout.toString().split("\n").map((name) => name.replace(/^\.\//, ""));
    const sshFiles = list(join(base, "ssh.cpio.zst")).filter(Boolean);
    expect(sshFiles).toContain("usr/sbin/sshd");
    // Files only: never a directory or a link to one (merged /usr makes /lib and /bin such links), which the base needs.
    for (const name of sshFiles) expect(statSync(join(base, "rootfs", name)).isDirectory(), name).toBe(false);
    const baseFiles = list(join(base, "base.cpio.zst"));
    expect(baseFiles).toContain("usr/bin/tor");
    expect(baseFiles).not.toContain("usr/sbin/sshd");
    expect(brokerMode.baseLayers).toEqual(["base.cpio.zst"]);
    expect(imageMode.baseLayers).toEqual(["base.cpio.zst", "ssh.cpio.zst"]);
  });

  it("carries the agent, its configuration and the broker's CA, and no SSH or collection key", () => {
    const files = JSON.parse(readFileSync(brokerMode.files, "utf8")) as { path: string; mode: string }[];
    const paths = files.map((file) => file.path);
    expect(paths).toEqual(expect.arrayContaining(["/usr/local/sbin/relay-agent", "/etc/relay/broker.json", "/etc/relay/broker-ca.pem", "/etc/tor/torrc"]));
    expect(paths.filter((path) => /keys\/|ssh_host|authorized_keys|\/state$|dircache\//.test(path))).toEqual([]);
    expect(files.find((file) => file.path === "/usr/local/sbin/relay-agent")!.mode).toBe("755");
    expect(readFileSync(brokerMode.iso).includes(Buffer.from(agentConfig))).toBe(true);
    // The image-mode build of the same relay does carry them: the list above is not empty by accident.
    const imageFiles = (JSON.parse(readFileSync(imageMode.files, "utf8")) as { path: string }[]).map((file) => file.path);
    expect(imageFiles.filter((path) => /keys\/|ssh_host|authorized_keys/.test(path)).length).toBeGreaterThan(4);
  });

  it("with attestation none, carries a fresh boot token for root only, still no key, and only the token's digest leaves the build", () => {
    const agentBinary = spawnSync("sh", ["-c", "command -v relay-agent"], { encoding: "utf8", env: toolEnv() }).stdout.trim();
    const tokenBuild = (out: string) =>
      buildRelayIso(dir, debianBase(), relay, join(dir, "collected"), join(dir, out), {}, (imageDigest) => ({
        broker: { agentBinary, agentConfig: renderAgentConfig({ relay: relay.name, imageDigest, broker: { ...BROKER, attestation: "none", allowSimulatedAttestation: false }, withCa: false }), bootToken: true },
      }));
    const first = tokenBuild("token-1");
    const second = tokenBuild("token-2");
    expect(first.imageDigest).toBe(second.imageDigest);
    expect(first.bootTokenSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(second.bootTokenSha256).not.toBe(first.bootTokenSha256);
    const files = JSON.parse(readFileSync(first.files, "utf8")) as { path: string; mode: string }[];
    expect(files.find((file) => file.path === "/etc/relay/boot-token")?.mode).toBe("600");
    expect(occurrences(readFileSync(first.iso), keys)).toEqual([]);
    // What the build prints (and Pulumi keeps) names the token's digest, never the token.
    const record = readFileSync(join(dir, "token-1", "image.json"), "utf8");
    expect(record).toContain(first.bootTokenSha256!);
    expect(JSON.parse(record)).not.toHaveProperty("bootToken");
  });
});
