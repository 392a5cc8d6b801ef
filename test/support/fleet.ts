/**
 * A small test fleet: keys made by real tor in a project copy, and the stack
 * config that points at them.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { parseStackConfig, type RelayConfig } from "../../lib/config/config";
import { initRelayKeys } from "../../lib/tor/key-store";

/**
 * The image section of every test stack: Debian bookworm, its RAM root
 * packed at zstd level 3. The program's default, 19, makes the smallest
 * image and costs 67 s of CPU in zstd per Debian base (0.6 s at 3); a cold
 * `npm test` builds the base four or five times. Every stack of the tests
 * must share it, or a test builds a base of its own.
 */
export const TEST_IMAGE = { flavour: "debian", release: "bookworm", compressLevel: 3 } as const;

export interface TestRelay {
  name: string;
  nickname: string;
  node: string;
  vmId: number;
  exit: boolean;
}

export const TEST_API_TOKEN = "root@pam!diskless-relays=0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
/** root@pam's password on the double: only it may set an SNP relay's args and amd-sev. */
export const TEST_ROOT_PASSWORD = "double root password: not a secret";

export const THREE_RELAYS: TestRelay[] = [
  { name: "exit-1", nickname: "TestExitOne", node: "pve1", vmId: 9101, exit: true },
  { name: "guard-1", nickname: "TestGuardOne", node: "pve1", vmId: 9102, exit: false },
  { name: "exit-2", nickname: "TestExitTwo", node: "pve2", vmId: 9201, exit: true },
];

/** Makes each relay's keys and the collection key (<store>/collector) in `store` inside `projectDir`. */
export function makeTestKeys(projectDir: string, relays: TestRelay[], store = "keys"): void {
  for (const relay of relays) initRelayKeys(join(projectDir, store), relay.name, { nickname: relay.nickname });
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "collector", "-f", join(projectDir, store, "collector")]);
}

export function testStackConfig(relays: TestRelay[], overrides: { endpoint?: string; flavour?: "alpine" | "debian" } = {}) {
  return {
    proxmox: {
      endpoint: overrides.endpoint ?? "https://127.0.0.1:8006",
      verifyTls: false,
      nodes: ["pve1", "pve2"],
      datastore: "local",
      bridge: "vmbr0",
      keepIsos: 2,
    },
    image: { ...TEST_IMAGE, flavour: overrides.flavour ?? TEST_IMAGE.flavour },
    stateCollection: { privateKeyFile: "keys/collector", port: 22, connectTimeoutSeconds: 5 },
    relays: relays.map((relay, i) => ({
      name: relay.name,
      nickname: relay.nickname,
      node: relay.node,
      vmId: relay.vmId,
      mac: `BC:24:11:00:00:${(i + 1).toString(16).padStart(2, "0").toUpperCase()}`,
      vlan: 100 + i,
      ipv4: { address: `198.51.100.${10 + i}/24`, gateway: "198.51.100.1" },
      ipv6: { address: `2001:db8::${10 + i}/64`, gateway: "2001:db8::1" },
      orPort: relay.exit ? 443 : 9001,
      exit: { enabled: relay.exit },
      ...(relay.exit ? { nameservers: ["198.51.100.53"] } : {}),
      contactInfo: "email:abuse[]example.net ciissversion:2",
      family: "testfleet",
      memoryMiB: 1024,
      cores: 1,
    })),
  };
}

/** One valid relay's config (IPv4 and IPv6, a resolver), as the schema returns it, with `overrides` applied first. */
export function validRelayConfig(overrides: Record<string, unknown> = {}): RelayConfig {
  return parseStackConfig({
    proxmox: { endpoint: "https://pve.example.net:8006", nodes: ["pve1"], datastore: "local", bridge: "vmbr0" },
    proxmoxApiToken: "a@pve!b=c",
    stateCollection: { privateKeyFile: "k" },
    relays: [
      {
        name: "r1",
        nickname: "TestRelay",
        node: "pve1",
        vmId: 9101,
        mac: "BC:24:11:00:00:01",
        ipv4: { address: "198.51.100.11/24", gateway: "198.51.100.1" },
        ipv6: { address: "2001:db8::11/64", gateway: "2001:db8::1" },
        contactInfo: "email:abuse[]example.net ciissversion:2",
        nameservers: ["198.51.100.53"],
        ...overrides,
      },
    ],
  }).relays[0]!;
}

/** A stack config loosely typed on purpose: the cases write values the schema must refuse. */
export type LooseConfig = { [key: string]: any; relays: any[]; proxmox: any };

/** A key broker's settings as `key-broker init` prints them, in shape. */
export const TEST_BROKER_SETTINGS = {
  url: "https://broker.example.net:8443",
  admin: { url: "https://broker.example.net:8444", tokenFile: "keys/broker-admin.token" },
  signingPublicKey: Buffer.alloc(32, 7).toString("base64"),
  pushRecipient: "age1" + "q".repeat(58),
  attestation: "none",
};

/**
 * The Proxmox VE stack config the config and option tests start from, as an
 * operator writes it: an exit (IPv4 and IPv6, its resolver) on pve1 and a
 * guard on pve2. Each test changes it into what it checks.
 */
export function validProxmoxConfig(): LooseConfig {
  return {
    proxmox: { endpoint: "https://pve.example.net:8006", nodes: ["pve1", "pve2"], datastore: "local", bridge: "vmbr0" },
    proxmoxApiToken: "pulumi@pve!ci=0a1b2c3d-0000-4000-8000-000000000000",
    stateCollection: { privateKeyFile: "keys/collector" },
    relays: [
      {
        name: "exit-1",
        nickname: "ExitOne",
        node: "pve1",
        vmId: 9101,
        mac: "BC:24:11:00:00:01",
        ipv4: { address: "198.51.100.11/24", gateway: "198.51.100.1" },
        ipv6: { address: "2001:db8::11/64", gateway: "2001:db8::1" },
        exit: { enabled: true },
        nameservers: ["198.51.100.53"],
        contactInfo: "abuse@example.net",
      },
      {
        name: "guard-1",
        nickname: "GuardOne",
        node: "pve2",
        vmId: 9102,
        mac: "BC:24:11:00:00:02",
        ipv4: { address: "198.51.100.12/24", gateway: "198.51.100.1" },
        orPort: 9001,
        contactInfo: "abuse@example.net",
      },
    ],
  };
}

