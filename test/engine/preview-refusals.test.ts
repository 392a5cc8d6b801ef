/**
 * The real `pulumi preview` (engine, language host, plugins) refuses a bad
 * file or setting before any resource is registered: the message names the
 * config field, no stack trace reaches the operator, and the preview's steps
 * hold nothing but the stack itself.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseStackConfig } from "../../lib/config/config";
import { lockFileName, renderLock } from "../../lib/image/package-index";
import { packageSetRequest } from "../../lib/image/package-set";
import { makeTestKeys, TEST_API_TOKEN, TEST_IMAGE, TEST_ROOT_PASSWORD, testStackConfig, THREE_RELAYS } from "../support/fleet";
import { type PulumiResult, TestProject } from "../support/pulumi";

/** What key-broker init prints, in shape. */
const BROKER = {
  url: "https://broker.example.net:8443",
  admin: { url: "https://broker.example.net:8444", tokenFile: "admin.token" },
  signingPublicKey: Buffer.alloc(32, 7).toString("base64"),
  pushRecipient: "age1" + "q".repeat(58),
  attestation: "none",
};

// Each case runs up to three real previews; sized for a busy machine with a cold cache (120 s was seen to be too little).
describe("pulumi preview refuses before registering anything", { timeout: 600_000 }, () => {
  let project: TestProject;
  beforeAll(() => {
    project = new TestProject("refusals");
    makeTestKeys(project.dir, THREE_RELAYS);
    writeFileSync(join(project.dir, "admin.token"), "0123456789abcdef0123456789abcdef\n", { mode: 0o600 });
  });
  afterAll(() => project?.destroy());

  const keys = (...path: string[]) => join(project.dir, "keys", ...path);

  /** `pulumi preview --json` of `config` (the API token set as a secret unless `secrets` says otherwise). */
  async function preview(config: Record<string, unknown>, secrets: Record<string, string> = { proxmoxApiToken: TEST_API_TOKEN }): Promise<{ result: PulumiResult; text: string; steps: any[] }> {
    project.configure(config, secrets);
    const result = await project.runAsync("preview", "--json");
    let json: { steps?: any[]; diagnostics?: { message: string }[] };
    try {
      json = JSON.parse(result.stdout);
    } catch {
      throw new Error(`pulumi preview printed no JSON (${result.status}):\n${result.stdout}${result.stderr}`);
    }
    // What the operator reads: the diagnostics' own text, beside anything printed outside the JSON.
    const text = [...(json.diagnostics ?? []).map((d) => d.message), result.stderr].join("\n");
    return { result, text, steps: json.steps ?? [] };
  }

  /** Refused, naming the field; no stack trace; no step but the stack's own. */
  async function expectRefused(config: Record<string, unknown>, field: RegExp, secrets?: Record<string, string>): Promise<string> {
    const { result, text, steps } = await preview(config, secrets);
    expect(result.status, text).not.toBe(0);
    expect(text).toMatch(field);
    expect(text).toMatch(/nothing was changed/);
    expect(text, "a stack trace reached the operator").not.toMatch(/^\s+at /m);
    expect(steps.filter((step) => !String(step.urn).endsWith("pulumi:pulumi:Stack::diskless-relays-refusals"))).toEqual([]);
    return text;
  }

  it("accepts the valid fleet these cases break, one at a time", async () => {
    const { result, text, steps } = await preview(testStackConfig(THREE_RELAYS));
    expect(result.status, text).toBe(0);
    expect(steps.length).toBeGreaterThan(40);
  });

  it("on a key store without the private SSH host key, naming the key store and the file", async () => {
    const file = keys("guard-1", "ssh_host_ed25519_key");
    renameSync(file, `${file}.away`);
    try {
      await expectRefused(testStackConfig(THREE_RELAYS), /keyStore: relay guard-1: \S*keys\/guard-1\/ssh_host_ed25519_key is missing; it ships in the relay's image/);
    } finally {
      renameSync(`${file}.away`, file);
    }
  });

  it("on an SSH host key that is a symbolic link out of the key store", async () => {
    const file = keys("guard-1", "ssh_host_ed25519_key");
    renameSync(file, `${file}.away`);
    symlinkSync(keys("exit-1", "ssh_host_ed25519_key"), file);
    try {
      await expectRefused(testStackConfig(THREE_RELAYS), /keyStore: relay guard-1: \S*keys\/guard-1\/ssh_host_ed25519_key is a symbolic link \(to \S*keys\/exit-1\/ssh_host_ed25519_key\)/);
    } finally {
      rmSync(file);
      renameSync(`${file}.away`, file);
    }
  });

  it("on missing Secure Boot files, naming both settings", async () => {
    const config = { ...testStackConfig(THREE_RELAYS), image: { ...TEST_IMAGE, secureBoot: { privateKeyFile: "sb/db.key", certificateFile: "sb/db.crt" } } };
    const text = await expectRefused(config, /image\.secureBoot\.privateKeyFile: \S*sb\/db\.key is missing/);
    expect(text).toMatch(/image\.secureBoot\.certificateFile: \S*sb\/db\.crt is missing/);
  });

  it("on an ECDSA collection key, and on a junk one, naming stateCollection.privateKeyFile", async () => {
    execFileSync("ssh-keygen", ["-q", "-t", "ecdsa", "-N", "", "-f", keys("ecdsa")]);
    const config = testStackConfig(THREE_RELAYS);
    await expectRefused({ ...config, stateCollection: { ...config.stateCollection, privateKeyFile: "keys/ecdsa" } }, /stateCollection\.privateKeyFile: \S*keys\/ecdsa\.pub is a "ecdsa-sha2-nistp256" key, not an ssh-ed25519/);
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", keys("junk")]);
    writeFileSync(keys("junk.pub"), "ssh-ed25519 bm90IGEga2V5\n");
    await expectRefused({ ...config, stateCollection: { ...config.stateCollection, privateKeyFile: "keys/junk" } }, /stateCollection\.privateKeyFile: \S*keys\/junk\.pub holds key data of type/);
  });

  it("on a missing broker CA, and on a key file or the admin token given as the CA, naming identity.broker.caFile", async () => {
    const broker = (caFile: string) => ({ ...testStackConfig(THREE_RELAYS), identity: { mode: "broker", broker: { ...BROKER, caFile } } });
    await expectRefused(broker("broker/ca.pem"), /identity\.broker\.caFile: \S*broker\/ca\.pem is missing; every image pins it as the broker's CA/);
    await expectRefused(broker("keys/exit-1/secret_id_key"), /identity\.broker\.caFile: \S*keys\/exit-1\/secret_id_key holds a private key \(a PEM "RSA PRIVATE KEY" block\): it would ship in every image as the CA/);
    await expectRefused(broker("admin.token"), /identity\.broker\.caFile: \S*admin\.token holds no PEM certificate/);
  });

  it("on a broker url on loopback, on a Proxmox VE stack", async () => {
    const config = { ...testStackConfig(THREE_RELAYS), identity: { mode: "broker", broker: { ...BROKER, url: "https://[::ffff:127.0.0.1]:8443" } } };
    await expectRefused(config, /identity\.broker\.url: is on \[::ffff:7f00:1\], which every relay reads as itself/);
  });

  it("on memoryMiB: 1e12", async () => {
    const config = testStackConfig(THREE_RELAYS);
    (config.relays[1] as Record<string, unknown>).memoryMiB = 1e12;
    await expectRefused(config, /relays\[1\]\.memoryMiB: must be at most 4194304 MiB/);
  });

  it("on a DirPort on the fleet's SSH port, at the DirPort, naming stateCollection.port", async () => {
    const config = testStackConfig(THREE_RELAYS);
    (config.relays[2] as Record<string, unknown>).dirPort = 22;
    const text = await expectRefused(config, /relays\[2\]\.dirPort: 22 is already stateCollection\.port \(the fleet's SSH port\)/);
    expect(text).not.toMatch(/sshPort/);
  });

  it("on a plaintext API token or root password, with the line that makes it a secret and never the value", async () => {
    const config = { ...testStackConfig(THREE_RELAYS), proxmoxApiToken: TEST_API_TOKEN, proxmoxRootPassword: TEST_ROOT_PASSWORD };
    const text = await expectRefused(config, /proxmoxApiToken: is stored in plain text, .*run `pulumi config set --secret proxmoxApiToken`/, {});
    expect(text).toMatch(/proxmoxRootPassword: is stored in plain text, .*run `pulumi config set --secret proxmoxRootPassword`/);
  });
});

describe("pulumi preview of a valid stack with secret credentials", { timeout: 600_000 }, () => {
  let project: TestProject;
  beforeAll(() => {
    project = new TestProject("credentials");
    makeTestKeys(project.dir, THREE_RELAYS);
  });
  afterAll(() => project?.destroy());

  it("plans, and prints neither the API token nor the root password anywhere", async () => {
    project.configure(testStackConfig(THREE_RELAYS), { proxmoxApiToken: TEST_API_TOKEN, proxmoxRootPassword: TEST_ROOT_PASSWORD });
    const result = await project.runAsync("preview", "--json");
    const text = result.stdout + result.stderr;
    expect(result.status, text).toBe(0);
    const count = (needle: string) => text.split(needle).length - 1;
    expect(count(TEST_API_TOKEN)).toBe(0);
    expect(count(TEST_API_TOKEN.split("=")[1]!)).toBe(0);
    expect(count(TEST_ROOT_PASSWORD)).toBe(0);
    // The engine saw them: as secrets.
    expect(count("[secret]")).toBeGreaterThan(0);
  });
});

describe("pulumi preview keeps text settings as text", { timeout: 600_000 }, () => {
  let project: TestProject;
  beforeAll(() => {
    project = new TestProject("text");
    // The key store at "1234": a name that JSON would read as a number.
    makeTestKeys(project.dir, THREE_RELAYS, "1234");
  });
  afterAll(() => project?.destroy());

  it("plans keyStore: \"1234\", buildDir: \"true\", a nickname \"12345\" and a release \"12\"", async () => {
    const config = testStackConfig(THREE_RELAYS);
    const relays = config.relays.map((relay, i) => (i === 1 ? { ...relay, nickname: "12345" } : relay));
    project.configure(
      { ...config, relays, keyStore: "1234", buildDir: "true", image: { flavour: "debian", release: "12" }, stateCollection: { ...config.stateCollection, privateKeyFile: "1234/collector" } },
      { proxmoxApiToken: TEST_API_TOKEN },
    );
    // No Debian suite is called "12": the stack is held on a recorded set, so preview asks no mirror for one.
    const parsed = parseStackConfig({ ...config, relays, image: { flavour: "debian", release: "12" }, proxmoxApiToken: TEST_API_TOKEN });
    const request = packageSetRequest(parsed, project.dir, "12");
    writeFileSync(
      join(project.dir, lockFileName(project.stack)),
      renderLock(project.stack, { resolvedAt: "2026-12-01T00:00:00.000Z", sources: request.sources, request: request.include, packages: ["tor 0.4.9.11-0+deb12u1 amd64"] }),
    );
    const result = await project.runAsync("preview", "--json");
    const text = result.stdout + result.stderr;
    expect(text).not.toMatch(/must be (string|text)/);
    expect(result.status, text).toBe(0);
    const steps = JSON.parse(result.stdout).steps as any[];
    const inputs = (name: string) => steps.find((step) => step.urn.endsWith(`::${name}`) && step.newState.custom).newState.inputs;
    // Specs a preview already knows (the others wait for a build's output).
    const spec = (name: string) => JSON.parse(inputs(name).environment.DISKLESS_RELAYS_STEP);
    expect(spec("debian-build")).toMatchObject({ release: "12", dir: expect.stringMatching(/^true\/base\//) });
    expect(JSON.stringify(spec("guard-1-state-collect"))).toContain('"1234/collector"');
    expect(JSON.stringify(inputs("guard-1-vm"))).toContain("12345");
    expect(readFileSync(join(project.dir, `Pulumi.${project.stack}.yaml`), "utf8")).toContain('"diskless-relays:keyStore": "1234"');
  });
});
