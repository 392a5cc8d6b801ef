/**
 * A stand-in for a relay that runs behind the Proxmox VE double, where no VM
 * really boots: real tor with the relay's identity (its fingerprint files
 * and ORPort are real), and a real sshd answering the relay's own requests
 * (relay-collector → relay-health, relay-export-state) from relay-like
 * directories under a stand-in / (test/support/guest-root.ts). Its image label is written by the double when the VM
 * "boots" an ISO (test/support/proxmox-double), so the rollout gate sees which image
 * the VM was given. An exit's stand-in also runs a real unbound, as an exit
 * runs its own resolver. Only 127.0.0.1 is ever contacted.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RELAY_EXPORT_FILES } from "../../lib/steps/steps";
import { IDENTITY_FILES, ONION_KEY_FILES } from "../../lib/tor/tor-keys";
import { freePort, RelaySshd } from "./sshd";
import { makeGuestRoot, type GuestRoot } from "./guest-root";

export interface StandInOptions {
  dir: string;
  /** The relay's key directory in the test project's key store. */
  keysDir: string;
  nickname: string;
  orPort: number;
  collectorPublicKey: string;
  /** <boot-dir>/<vmid>: the relay's /, where the double writes the booted image's label. */
  root: string;
  /** An exit runs its own resolver. */
  exit?: boolean;
}

export class StandInRelay {
  private tor?: ChildProcess;
  private resolver?: ChildProcess;
  private constructor(
    public sshd: RelaySshd,
    private readonly guest: GuestRoot,
    private readonly options: StandInOptions,
  ) {}

  /** tor's DataDirectory, under the stand-in's /. */
  get torData(): string {
    return this.guest.at("RELAY_TOR_DATA");
  }

  static async start(options: StandInOptions): Promise<StandInRelay> {
    const guest = makeGuestRoot(options.root);
    const torData = guest.at("RELAY_TOR_DATA");
    mkdirSync(join(torData, "keys"), { recursive: true, mode: 0o700 });
    for (const file of [...IDENTITY_FILES, ...ONION_KEY_FILES]) {
      if (existsSync(join(options.keysDir, file))) copyFileSync(join(options.keysDir, file), join(torData, "keys", file));
    }
    chmodSync(join(options.root, "etc"), 0o755);
    // What every relay image carries besides its label (lib/image/relay-build.ts writes the same list).
    writeFileSync(guest.at("RELAY_EXPORT_LIST"), RELAY_EXPORT_FILES.join("\n") + "\n");
    writeFileSync(join(options.root, "etc", "resolv.conf"), "nameserver 127.0.0.1\n", { mode: 0o644 });
    const sshd = await RelaySshd.start(join(options.dir, "sshd"), join(options.keysDir, "ssh_host_ed25519_key"), options.collectorPublicKey, options.root);
    const relay = new StandInRelay(sshd, guest, options);
    relay.startTor();
    if (options.exit) await relay.startResolver();
    return relay;
  }

  /** tor as the relay runs it (OfflineMasterKey), kept off every network but loopback. */
  startTor(): void {
    const { orPort, nickname } = this.options;
    this.tor = spawn(
      "tor",
      ["-f", "/dev/null", "--defaults-torrc", "/dev/null", "--ignore-missing-torrc", "--DataDirectory", this.torData, "--Nickname", nickname, "--ORPort", `127.0.0.1:${orPort}`,
        "--OfflineMasterKey", "1", "--PublishServerDescriptor", "0", "--AssumeReachable", "1", "--SocksPort", "0", "--ContactInfo", "stand-in",
        "--DirAuthority", "standin orport=1 no-v2 v3ident=0000000000000000000000000000000000000000 127.0.0.1:1 0000000000000000000000000000000000000000",
        "--Log", `notice file ${this.guest.at("RELAY_TOR_LOG")}`],
      { stdio: "ignore" },
    );
  }

  /** The relay's SSH server back on its port, as a rebooted relay's would be. */
  async restartSshd(): Promise<void> {
    this.sshd.stop();
    this.sshd = await RelaySshd.start(join(this.options.dir, "sshd"), join(this.options.keysDir, "ssh_host_ed25519_key"), this.options.collectorPublicKey, this.options.root, this.sshd.port);
  }

  /** unbound, as the exit's image runs it, on a free loopback port (this machine may already use 53). */
  private async startResolver(): Promise<void> {
    const conf = this.guest.at("RELAY_RESOLVER_CONF");
    const port = await freePort();
    writeFileSync(conf, ["server:", "  interface: 127.0.0.1", `  port: ${port}`, "  do-daemonize: no", '  username: ""', '  chroot: ""', '  pidfile: ""', "  use-syslog: no"].join("\n") + "\n", { mode: 0o644 });
    this.resolver = spawn("unbound", ["-d", "-c", conf], { stdio: "ignore" });
  }

  stopTor(): void {
    this.tor?.kill("SIGTERM");
    this.tor = undefined;
  }

  stop(): void {
    this.stopTor();
    this.resolver?.kill("SIGTERM");
    this.sshd.stop();
  }
}
