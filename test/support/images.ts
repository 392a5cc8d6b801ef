/** Real image builds for tests, sharing the Debian base the way the program does. */
import { execFileSync, spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseStackConfig } from "../../lib/config";
import { planFleet } from "../../lib/fleet";
import { baseImageDigest, baseImageInputs, relayBuildEnvironment } from "../../lib/image-inputs";
import { OVMF_VARS, qemuRelayArgs } from "../../lib/qemu";
import { repoRoot, toolEnv } from "./pulumi";

/** Shared by test runs so the Debian base is built once per machine. */
export const BUILD_CACHE = join(tmpdir(), "diskless-relays-test-build");

/** The Debian base, built by images/debian/build-base.sh unless already built for these inputs. */
export function debianBase(): string {
  const image = parseStackConfig(minimalConfig()).image;
  const inputs = baseImageInputs(image, repoRoot);
  const dir = join(BUILD_CACHE, "base", `debian-${baseImageDigest(inputs).slice(0, 12)}`);
  if (!existsSync(join(dir, ".complete"))) {
    mkdirSync(join(BUILD_CACHE, "base"), { recursive: true, mode: 0o700 });
    execFileSync("bash", [join(repoRoot, "images/debian/build-base.sh"), dir, inputs.release, "no"], { stdio: "ignore", env: toolEnv() });
  }
  return dir;
}

export function minimalConfig(relays: Record<string, unknown>[] = [{ name: "r", nickname: "R", vmId: 100, mac: "52:54:00:00:00:01" }], image: Record<string, unknown> = {}) {
  return {
    proxmox: { endpoint: "https://127.0.0.1:8006", nodes: ["local"], datastore: "local", bridge: "vmbr0" },
    proxmoxApiToken: "root@pam!t=0",
    image: { flavour: "debian", release: "bookworm", ...image },
    stateCollection: { privateKeyFile: "keys/collector" },
    relays: relays.map((relay) => ({
      node: "local",
      // QEMU user networking: the guest is 10.0.2.15 behind 10.0.2.2.
      ipv4: { address: "10.0.2.15/24", gateway: "10.0.2.2" },
      orPort: 9001,
      contactInfo: "test@example.net",
      ...relay,
    })),
  };
}

/** Builds one relay's ISO with images/build-relay.sh, as the RelayImage component runs it. */
export function buildRelayIso(
  projectDir: string,
  base: string,
  relayConfig: Record<string, unknown>,
  collectedDir: string,
  out: string,
  image: Record<string, unknown> = {},
): { iso: string; uki: string } {
  const config = parseStackConfig(minimalConfig([relayConfig], image));
  const fleet = planFleet(config, { projectDir, now: new Date() });
  const planned = fleet.relays[0]!;
  const environment = relayBuildEnvironment(planned, config, fleet.collectorPublicKey, projectDir);
  const name = `relay-${planned.config.nickname}-test.iso`;
  execFileSync("bash", [join(repoRoot, "images/build-relay.sh"), base, planned.keysDir, collectedDir, out, name], {
    env: toolEnv({ ...environment }),
    stdio: ["ignore", "pipe", "inherit"],
  });
  return { iso: join(out, name), uki: join(out, "relay.efi") };
}

/** Boots an ISO under QEMU (TCG) as Proxmox would; returns the console log path and a stop function. */
export function bootIso(iso: string, dir: string, sshPort: number, mac: string) {
  const varsFile = join(dir, "OVMF_VARS.fd");
  copyFileSync(OVMF_VARS, varsFile);
  const serialLog = join(dir, "console.log");
  const qemu = spawn("qemu-system-x86_64", qemuRelayArgs({ iso, varsFile, memoryMiB: 1024, cores: 2, mac, hostForwards: [{ host: sshPort, guest: 22 }], serialLog }), {
    stdio: "ignore",
  });
  return {
    serialLog,
    console: () => (existsSync(serialLog) ? readFileSync(serialLog, "latin1") : ""),
    stop: () => qemu.kill("SIGKILL"),
  };
}

/** Polls `read` until `pattern` matches or `seconds` pass. */
export async function waitFor(read: () => string, pattern: RegExp, seconds: number): Promise<RegExpMatchArray> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const match = read().match(pattern);
    if (match) return match;
    if (Date.now() > deadline) throw new Error(`timed out after ${seconds}s waiting for ${pattern}; last output:\n${read().slice(-3000)}`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
