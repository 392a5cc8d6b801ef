/**
 * Updates reach every relay. The local stack (real QEMU relays on a private
 * Tor network, lib/testnet/testnet-host.ts) is built from a local Debian mirror of
 * the base's real packages (test/support/debian-mirror.ts: the closure
 * Debian serves today, signed by a throwaway key, on loopback). The mirror
 * then gains a newer tor (the real tor .deb, re-versioned with dpkg-deb):
 *   - a held stack (Pulumi.STACK.packages.lock, `npm run packages -- lock`)
 *     previews with no change, and says the update is held;
 *   - lifted (`npm run packages -- update`), the preview names the change
 *     for every relay, `npm run status` and `npm run vulns` say which relays
 *     have fixes waiting, and vulns finds tor vulnerable (a test database,
 *     tools/vulndb, says it is fixed in the new version);
 *   - `pulumi up` redeploys both relays through the health gate, each with
 *     its fingerprints and its ntor key; the new image's SBOM shows the new
 *     tor, and vulns finds nothing.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { summarizePreview } from "../../lib/ops/preview-summary";
import { toolsBin } from "../../lib/core/paths";
import { type TestnetNetwork } from "../../lib/config/testnet";
import { startTestnet, stopTestnet } from "../../lib/testnet/testnet-host";
import { TEST_IMAGE } from "../support/fleet";
import { realBaseDebs, reversionDeb, serveMirror, UPDATES_MIRROR, updatesMirrorKey, writeMirror, type MirrorKey } from "../support/debian-mirror";
import { runStep, waitFor } from "../support/images";
import { TestProject } from "../support/pulumi";
import { poll } from "../support/poll";
import { privateTmpDir } from "../support/tmp";
import { collectStateSpec, localRelayConfig, localStackProject, type LocalStack } from "../support/local-stack";

const RELAYS = [
  { name: "upd-exit", nickname: "UpdateExit", host: 21, vmId: 110 },
  { name: "upd-guard", nickname: "UpdateGuard", host: 22, vmId: 111 },
] as const;
type RelayName = (typeof RELAYS)[number]["name"];
const NEW_TOR = "0.4.9.12-0+deb12u1";

describe("a Debian update on the mirror reaches every relay of the local stack", () => {
  const scratch = privateTmpDir("updates");
  const testnetLocation = { dir: join(scratch, "testnet"), netns: `drupd-${process.pid}` };
  const mirror = join(UPDATES_MIRROR.dir, "mirror");
  let network: TestnetNetwork;
  let project: TestProject;
  let server: Awaited<ReturnType<typeof serveMirror>>;
  let config: Record<string, any>;
  let oldTor: string;
  let key: MirrorKey;
  const fingerprints = {} as Record<RelayName, { rsa: string; ed25519: string }>;
  const grypeEnv = () => ({ GRYPE_DB_CACHE_DIR: join(scratch, "grype-db") });

  let stack: LocalStack;
  const runDir = (relay: RelayName) => stack.runDir(relay);
  const consoleOf = (relay: RelayName) => () => (existsSync(join(runDir(relay), "console.log")) ? readFileSync(join(runDir(relay), "console.log"), "latin1") : "");
  const packagesCli = (...args: string[]) => project.scriptAsync("cli/packages.ts", ...args, "--stack", project.stack);
  const vulns = () => project.scriptAsyncWith(grypeEnv(), "cli/vulns.ts", "--stack", project.stack);

  const expectFingerprints = async (relay: (typeof RELAYS)[number]) => {
    const rest = consoleOf(relay.name);
    const rsa = await waitFor(rest, new RegExp(`identity key fingerprint is '${relay.nickname} ([0-9A-F]{40})'`), 300);
    const ed = await waitFor(rest, new RegExp(`ed25519 fingerprint is '${relay.nickname} ([A-Za-z0-9+/]{43})'`), 60);
    expect(rsa[1]).toBe(fingerprints[relay.name].rsa);
    expect(ed[1]).toBe(fingerprints[relay.name].ed25519);
  };

  /** The ntor key the relay holds now, through the real collection step over SSH; undefined until tor has written it. */
  let collections = 0;
  let lastCollection = "";
  const ntorKeyNow = (index: number): Buffer | undefined => {
    const relay = config.relays[index];
    const imageDigest = (++collections).toString(16).padStart(12, "0").padEnd(64, "f");
    const dir = join(scratch, "collect", relay.name);
    const result = runStep("collect-state", collectStateSpec(stack, network, relay, dir, imageDigest));
    const file = join(dir, "collected", imageDigest.slice(0, 12), "keys", "secret_onion_key_ntor");
    if (result.status !== 0) lastCollection = result.stdout + result.stderr;
    return result.status === 0 && existsSync(file) ? readFileSync(file) : undefined;
  };
  /**
   * The relay's ntor key once tor has written it, from the collection that
   * found it: a second collection to read it again may meet a busy guest
   * (its SSH) and prove nothing about the key.
   */
  const ntorKeyOnceWritten = async (index: number): Promise<Buffer> => {
    let found: Buffer | undefined;
    const written = await poll(() => (found = ntorKeyNow(index))?.length === 96, { seconds: 300, intervalMs: 1000 });
    expect(written, `no ntor key collected from ${config.relays[index].name} in 300 s; the last failed collection said:\n${lastCollection}`).toBe(true);
    return found!;
  };

  const imageDigests = () => {
    const outputs = JSON.parse(project.must("stack", "output", "relayOutputs", "--json")) as Record<string, { imageDigest: string }>;
    return Object.fromEntries(Object.entries(outputs).map(([relay, out]) => [relay, out.imageDigest]));
  };

  /** The tor version in the Syft inventory of the image a relay's stack output names. */
  const sbomTorVersion = (relay: RelayName): string => {
    const outputs = JSON.parse(project.must("stack", "output", "relayOutputs", "--json")) as Record<string, { sbom: string }>;
    const record = JSON.parse(readFileSync(join(project.dir, outputs[relay]!.sbom), "utf8")) as { base: { syftJson: { file: string } } };
    const syft = JSON.parse(readFileSync(join(project.dir, "artifacts", "sbom", record.base.syftJson.file), "utf8")) as { artifacts: { name: string; version: string; type: string }[] };
    return syft.artifacts.find((a) => a.name === "tor" && a.type === "deb")!.version;
  };

  beforeAll(async () => {
    const real = realBaseDebs();
    oldTor = real.packages.find((line) => line.startsWith("tor "))!.split(" ")[1]!;
    // The mirror as Debian serves the base today: its old pool (a newer tor from an earlier run) goes first.
    key = updatesMirrorKey();
    rmSync(mirror, { recursive: true, force: true });
    writeMirror(mirror, "bookworm", real.debs, key);
    server = await serveMirror(mirror, UPDATES_MIRROR.port);
    // Resolutions of this file's own (the project's engine and CLIs inherit it).
    process.env.DISKLESS_RELAYS_PACKAGE_CACHE = join(scratch, "package-cache");

    network = await startTestnet(testnetLocation, process.cwd());
    // Bases are shared with the other tests' (each is named after its own inputs: this one is the local mirror's).
    stack = localStackProject("updates", RELAYS);
    project = stack.project;
    Object.assign(fingerprints, stack.fingerprints);
    config = {
      target: "qemu",
      testnet: { dir: testnetLocation.dir },
      image: { ...TEST_IMAGE, mirrors: [{ uri: server.url, suites: ["bookworm"], signedBy: key.keyring }] },
      stateCollection: { privateKeyFile: "keys/collector", connectTimeoutSeconds: 10 },
      rollout: { healthTimeoutSeconds: 360 },
      relays: RELAYS.map((relay, i) => localRelayConfig(relay, i, 3, "updates@example.net")),
    };
    project.configure(config);
    // A database that knows tor before NEW_TOR as vulnerable.
    writeFileSync(join(scratch, "vulns.json"), JSON.stringify({ entries: [{ id: "CVE-2099-0002", distro: "debian:12", package: "tor", fixedIn: NEW_TOR, severity: "high" }] }));
    const made = spawnSync(join(toolsBin(), "vulndb"), ["-spec", join(scratch, "vulns.json"), "-out", join(scratch, "vulndb")], { encoding: "utf8" });
    expect(made.status, made.stderr).toBe(0);
    expect((await project.scriptAsyncWith(grypeEnv(), "cli/vulns.ts", "db", "import", made.stdout.trim())).status).toBe(0);
  }, 900_000);

  afterAll(async () => {
    if (project) await project.runAsync("destroy", "--yes", "--skip-preview");
    project?.destroy();
    server?.stop();
    // Also after a start that failed midway: the namespace is this test's own.
    await stopTestnet(testnetLocation);
  }, 600_000);

  let ntorBefore: Buffer[];

  it("deploys both relays from the mirror's packages, and holds the stack on them", async () => {
    const result = await project.runAsync("up", "--yes", "--skip-preview");
    expect(result.status, result.stdout + result.stderr).toBe(0);
    for (const relay of RELAYS) expect(result.stdout).toMatch(new RegExp(`relay ${relay.name}: healthy on image [0-9a-f]{12}`));
    for (const relay of RELAYS) expect(sbomTorVersion(relay.name)).toBe(oldTor);
    const locked = await packagesCli("lock");
    expect(locked.status, locked.stderr).toBe(0);
    // tor writes its ntor key at first start; the redeploy must carry it.
    ntorBefore = [await ntorKeyOnceWritten(0), await ntorKeyOnceWritten(1)];
    const scanned = await vulns();
    expect(scanned.status, scanned.stdout + scanned.stderr).toBe(5);
    expect(scanned.stdout).not.toContain("FIXES WAITING");
  }, 1_800_000);

  it("held: the mirror's newer tor changes nothing, and preview says it is held", async () => {
    const torDeb = realBaseDebs().debs.find((deb) => deb.includes("/tor_"))!;
    rmSync(join(mirror, "pool/main", torDeb.split("/").at(-1)!));
    writeMirror(mirror, "bookworm", [reversionDeb(torDeb, NEW_TOR, scratch)], key);
    const { steps, raw, result } = await project.preview();
    expect(result.status, result.stderr).toBe(0);
    // The engine's warnings, without its colour markup (<{%reset%}>).
    const warnings = (raw.diagnostics ?? []).filter((d: any) => d.severity === "warning").map((d: any) => String(d.message).replace(/<\{%[a-z]*%\}>/g, "")).join("\n");
    expect(warnings).toContain(`base packages held by Pulumi.updates.packages.lock`);
    expect(warnings).toContain(`1 update pending, not deployed: tor ${oldTor} → ${NEW_TOR}`);
    expect(steps.filter((step) => step.op !== "same" && step.op !== "read").map((step) => step.urn)).toEqual([]);
  }, 600_000);

  it("lifted: preview names the change for every relay, and status and vulns say fixes wait", async () => {
    const lifted = await packagesCli("update");
    expect(lifted.status, lifted.stderr).toBe(0);
    const preview = await project.runAsync("preview");
    expect(preview.status, preview.stderr).toBe(0);
    for (const relay of RELAYS) expect(preview.stdout).toContain(`${relay.name}: base: tor ${oldTor} → ${NEW_TOR}`);
    const json = await project.preview();
    // A preview of a stack with state leaves unchanged components out: the relays are named, as cli/preview-summary.ts names them.
    const lines = summarizePreview(json.raw.steps, Object.fromEntries(RELAYS.map((relay) => [relay.name, ""]))).map((summary) => summary.line);
    for (const relay of RELAYS) expect(lines.find((line) => line.startsWith(`${relay.name}: `))).toMatch(new RegExp(`^${relay.name}: rebuild — base: tor ${oldTor.replace(/[.+]/g, "\\$&")} → ${NEW_TOR.replace(/[.+]/g, "\\$&")}(;|$)`));

    const board = await project.status();
    for (const relay of RELAYS) expect(board.rows.get(relay.name).updates).toMatchObject({ count: 1, changes: `tor ${oldTor} → ${NEW_TOR}`, level: "warn" });
    const scanned = await vulns();
    expect(scanned.status).toBe(5);
    for (const relay of RELAYS) expect(scanned.stdout).toContain(`${relay.name}: FIXES WAITING: its image lacks 1 package update`);
    expect(scanned.stdout).toContain(`tor ${oldTor} → ${NEW_TOR}`);
  }, 600_000);

  it("pulumi up redeploys both relays through the gate with their fingerprints and ntor keys; the SBOM shows the new tor, and vulns finds nothing", async () => {
    const pids = RELAYS.map((relay) => readFileSync(join(runDir(relay.name), "qemu.pid"), "utf8").trim());
    const digests = imageDigests();
    const result = await project.runAsync("up", "--yes", "--skip-preview");
    expect(result.status, result.stdout + result.stderr).toBe(0);
    for (const [i, relay] of RELAYS.entries()) {
      expect(result.stdout).toMatch(new RegExp(`relay ${relay.name}: collected .*keys/secret_onion_key_ntor`));
      expect(result.stdout).toMatch(new RegExp(`relay ${relay.name}: healthy on image ${imageDigests()[relay.name]!.slice(0, 12)}`));
      expect(imageDigests()[relay.name]).not.toBe(digests[relay.name]);
      expect(sbomTorVersion(relay.name)).toBe(NEW_TOR);
      // A new QEMU (its console starts empty) runs the relay, and tor prints the relay's own fingerprints.
      expect(readFileSync(join(runDir(relay.name), "qemu.pid"), "utf8").trim()).not.toBe(pids[i]);
      await expectFingerprints(relay);
    }
    for (const index of [0, 1]) expect((await ntorKeyOnceWritten(index)).equals(ntorBefore[index]!)).toBe(true);
    const scanned = await vulns();
    expect(scanned.status, scanned.stdout + scanned.stderr).toBe(0);
    expect(scanned.stdout).not.toContain("FIXES WAITING");
    const board = await project.status();
    for (const relay of RELAYS) expect(board.rows.get(relay.name).updates).toMatchObject({ count: 0, level: "ok" });
  }, 1_800_000);
});
