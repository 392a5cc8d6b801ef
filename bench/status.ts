/**
 * What `npm run status` costs for a fleet of 20 relays on Proxmox VE: the
 * real CLI against a stack in a local backend, the Proxmox VE API double
 * with 20 running VMs (each described with its image, as the program
 * describes them), and 20 real sshd stand-ins running the relay's own
 * request dispatcher and health script over relay-like directories.
 * Prints a table; reproduce with
 *   npm run bench:status [-- RELAYS [RUNS]]
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo, type Server } from "node:net";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { initRelayKeys } from "../lib/tor/key-store";

import { vmDescription } from "../lib/deploy/relay-reach";
import { TEST_API_TOKEN, testStackConfig, type TestRelay } from "../test/support/fleet";
import { ProxmoxDoubleProcess } from "../test/support/proxmox";
import { TestProject } from "../test/support/pulumi";
import { RelaySshd } from "../test/support/sshd";
import { makeGuestRoot } from "../test/support/guest-root";
import { relayBuildDir } from "../lib/config/build-layout";

const RELAYS = Number(process.argv[2] ?? 20);
const RUNS = Number(process.argv[3] ?? 3);
const seconds = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e9;

async function main() {
  const scratch = mkdtempSync(join(tmpdir(), "diskless-relays-bench-status-"));
  const sshds: RelaySshd[] = [];
  let double: ProxmoxDoubleProcess | undefined;
  let project: TestProject | undefined;
  let orPortListener: Server | undefined;
  let idleTor: ChildProcess | undefined;
  try {
    double = await ProxmoxDoubleProcess.start(scratch, TEST_API_TOKEN);
    project = new TestProject("bench");
    const relays: TestRelay[] = Array.from({ length: RELAYS }, (_, i) => ({ name: `bench-${i}`, nickname: `BenchRelay${i}`, node: "pve1", vmId: 9100 + i, exit: false }));
    // One real identity (tor --keygen) lends its signing certificate to every stand-in.
    const keys = initRelayKeys(join(scratch, "keys"), "lender", { nickname: "Lender" });
    const collector = join(project.dir, "keys", "collector");
    mkdirSync(join(project.dir, "keys"), { recursive: true, mode: 0o700 });
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", collector]);
    const hostPublicKey = readFileSync(join(keys, "ssh_host_ed25519_key.pub"), "utf8").trim().split(" ").slice(0, 2).join(" ");
    const config = testStackConfig(relays, { endpoint: double.endpoint }) as ReturnType<typeof testStackConfig> & Record<string, any>;
    config.stateCollection = { privateKeyFile: "keys/collector", port: 22, connectTimeoutSeconds: 5 };
    const outputs: Record<string, unknown> = {};
    // Every stand-in shares this machine's /proc and sockets: one idle tor is every relay's tor, one listener every ORPort.
    mkdirSync(join(scratch, "idle-tor"), { mode: 0o700 });
    idleTor = spawn("tor", ["-f", "/dev/null", "--defaults-torrc", "/dev/null", "--ignore-missing-torrc", "--DataDirectory", join(scratch, "idle-tor"), "--DisableNetwork", "1", "--SocksPort", "0", "--Log", "err stderr"], { stdio: "ignore" });
    orPortListener = createServer().listen(0, "127.0.0.1");
    await new Promise((resolve) => orPortListener!.once("listening", resolve));
    const orPort = (orPortListener.address() as AddressInfo).port;
    const buildRoot = join(project.dir, "build", "diskless-relays-bench");
    for (const [i, relay] of relays.entries()) {
      const digest = (i + 1).toString(16).padStart(64, "a");
      const fingerprint = (i + 1).toString(16).toUpperCase().padStart(40, "F");
      const ed25519 = `${"E".repeat(40)}${i.toString().padStart(3, "0")}`;
      const dir = join(scratch, relay.name);
      const guest = makeGuestRoot(join(dir, "root"));
      const data = guest.at("RELAY_TOR_DATA");
      mkdirSync(join(data, "keys"), { recursive: true });
      writeFileSync(guest.at("RELAY_IMAGE_LABEL"), JSON.stringify({ relay: relay.name, nickname: relay.nickname, imageDigest: digest }) + "\n");
      writeFileSync(join(data, "fingerprint"), `${relay.nickname} ${fingerprint}\n`);
      writeFileSync(join(data, "fingerprint-ed25519"), `${relay.nickname} ${ed25519}\n`);
      copyFileSync(join(keys, "ed25519_signing_cert"), join(data, "keys", "ed25519_signing_cert"));
      writeFileSync(join(data, "state"), `# Tor state file last generated on ${new Date().toISOString()}\nLastRotatedOnionKey 2026-11-20 00:00:00\n`);
      const sshd = await RelaySshd.start(join(dir, "sshd"), join(keys, "ssh_host_ed25519_key"), `${collector}.pub`, guest.root);
      sshds.push(sshd);
      Object.assign(config.relays[i]!, { sshHost: "127.0.0.1", sshPort: sshd.port, orPort });
      await double.api("POST", "/nodes/pve1/qemu", { vmid: String(relay.vmId), name: relay.nickname, description: vmDescription(relay, digest, `relay-${relay.nickname}-${digest.slice(0, 12)}-00000000.iso`) });
      await double.waitForTask((await double.api("POST", `/nodes/pve1/qemu/${relay.vmId}/status/start`)) as string);
      const relayDir = relayBuildDir(buildRoot, relay.name);
      mkdirSync(relayDir, { recursive: true, mode: 0o700 });
      writeFileSync(join(relayDir, "running.json"), JSON.stringify({ imageDigest: digest, recipe: {}, hostPublicKey, isoName: "-", orPort, exit: false, since: new Date().toISOString() }));
      outputs[relay.name] = { nickname: relay.nickname, rsaFingerprint: fingerprint, ed25519Identity: ed25519, signingCertExpiresAt: new Date(Date.now() + 20 * 86_400_000).toISOString(), node: "pve1", vmId: relay.vmId, imageDigest: digest };
    }
    project.configure(config, { proxmoxApiToken: TEST_API_TOKEN });
    // The stack's outputs, as a deployment would have left them.
    const exported = JSON.parse(project.must("stack", "export"));
    exported.deployment.resources = [
      { urn: `urn:pulumi:bench::diskless-relays::pulumi:pulumi:Stack::diskless-relays-bench`, custom: false, type: "pulumi:pulumi:Stack", outputs: { relayOutputs: outputs } },
    ];
    writeFileSync(join(scratch, "deployment.json"), JSON.stringify(exported));
    project.must("stack", "import", "--file", join(scratch, "deployment.json"));

    const times: number[] = [];
    let last = { status: 0 as number | null, healthy: 0 };
    for (let run = 0; run < RUNS; run++) {
      const start = process.hrtime.bigint();
      const result = await project.scriptAsync("cli/status.ts", "--stack", "bench", "--json");
      times.push(seconds(start));
      const board = JSON.parse(result.stdout) as { relays: { attention: string[] }[] };
      last = { status: result.status, healthy: board.relays.filter((row) => row.attention.length === 0).length };
      const sick = board.relays.find((row) => row.attention.length > 0);
      if (sick && run === 0) console.log(`(a relay needing attention: ${sick.attention.join("; ")})`);
    }
    console.log(`npm run status, ${RELAYS} relays (Proxmox VE double, ${RELAYS} sshd stand-ins), ${cpus().length} cores`);
    console.log(`run  seconds`);
    times.forEach((t, i) => console.log(`${String(i + 1).padEnd(4)} ${t.toFixed(2)}`));
    console.log(`mean ${(times.reduce((a, b) => a + b, 0) / times.length).toFixed(2)} s; healthy ${last.healthy}/${RELAYS}, exit ${last.status}`);
  } finally {
    for (const sshd of sshds) sshd.stop();
    orPortListener?.close();
    idleTor?.kill("SIGTERM");
    double?.stop();
    project?.destroy();
    rmSync(scratch, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
