/**
 * Files that enter an image (or sign one) are judged by planFleet, before any
 * resource is registered: each must be the kind of file its setting says,
 * made here by the real tools (tor, ssh-keygen, openssl), a regular file in
 * its own directory, and never a secret where a public file belongs.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseStackConfig } from "../../lib/config/config";
import { FleetError, planFleet } from "../../lib/plan/fleet";
import { initFamilyKey, initRelayKeys, relayDir } from "../../lib/tor/key-store";
import { buildRelayImage } from "../../lib/image/relay-build";
import { privateTmpDir } from "../support/tmp";

const projectDir = privateTmpDir("plan-files");
const store = join(projectDir, "keys");
const now = new Date();

/** What key-broker init prints, in shape. */
const BROKER = {
  url: "https://broker.example.net:8443",
  admin: { url: "https://broker.example.net:8444", tokenFile: "admin.token" },
  signingPublicKey: Buffer.alloc(32, 7).toString("base64"),
  pushRecipient: "age1" + "q".repeat(58),
  attestation: "none",
};

function config(relay: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return parseStackConfig({
    proxmox: { endpoint: "https://pve.example.net:8006", nodes: ["pve1"], datastore: "local", bridge: "vmbr0" },
    proxmoxApiToken: "a@pve!b=c",
    stateCollection: { privateKeyFile: "keys/collector" },
    relays: [{ name: "r", nickname: "PlanFiles", node: "pve1", vmId: 9100, mac: "BC:24:11:00:00:01", ipv4: { address: "198.51.100.10/24", gateway: "198.51.100.1" }, contactInfo: "abuse@example.net", ...relay }],
    ...extra,
  });
}

/** The problems planFleet reports, or [] when it plans. */
function problemsOf(plan: () => unknown): string[] {
  try {
    plan();
    return [];
  } catch (err) {
    expect(err).toBeInstanceOf(FleetError);
    return (err as FleetError).problems;
  }
}

let copies = 0;
/** A copy of the relay "r"'s key directory (modes kept), to break one file in. */
function keysCopy(): string {
  const dir = join(projectDir, `copy-${++copies}`);
  cpSync(relayDir(store, "r"), dir, { recursive: true });
  return dir;
}

const plan = (relay: Record<string, unknown> = {}, extra: Record<string, unknown> = {}, options: { needCollectionKey?: boolean } = {}) =>
  problemsOf(() => planFleet(config(relay, extra), { projectDir, now, ...options }));

const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: ["ignore", "pipe", "ignore"] });
/** A self-signed certificate and its key, as openssl makes them (a CA unless `leaf`). */
function certificate(name: string, options: { days?: number; leaf?: boolean } = {}): { key: string; cert: string } {
  const key = join(projectDir, `${name}.key`);
  const cert = join(projectDir, `${name}.crt`);
  openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", String(options.days ?? 30), "-subj", `/CN=${name}`, ...(options.leaf ? ["-addext", "basicConstraints=critical,CA:FALSE"] : []), "-keyout", key, "-out", cert);
  return { key, cert };
}

beforeAll(() => {
  initRelayKeys(store, "r", { nickname: "PlanFiles" });
  initRelayKeys(store, "other", { nickname: "OtherRelay" });
  initFamilyKey(store, "fleet");
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(store, "collector")]);
  writeFileSync(join(projectDir, "admin.token"), "0123456789abcdef0123456789abcdef\n", { mode: 0o600 });
});

describe("planFleet reads a relay's key files as what they are", () => {
  it("plans the keys tor and ssh-keygen made, as they made them", () => {
    expect(plan({ keysDir: keysCopy() })).toEqual([]);
  });

  it("refuses a key store without the private SSH host key, naming the setting and the file", () => {
    const dir = keysCopy();
    rmSync(join(dir, "ssh_host_ed25519_key"));
    const problems = plan({ keysDir: dir });
    expect(problems).toEqual([expect.stringMatching(/^relays\[0\]\.keysDir: relay r: .*\/ssh_host_ed25519_key is missing; it ships in the relay's image .*npm run keys -- init r/)]);
    // keyStore names it when the relay's directory is the default one.
    const pub = join(relayDir(store, "r"), "ssh_host_ed25519_key.pub");
    const saved = readFileSync(pub);
    rmSync(pub);
    try {
      expect(plan()).toEqual([expect.stringMatching(/^keyStore: relay r: .*keys\/r\/ssh_host_ed25519_key\.pub is missing/)]);
    } finally {
      writeFileSync(pub, saved, { mode: 0o644 });
    }
  });

  it("does not want the private SSH host key of a broker-mode relay, whose image has no SSH server", () => {
    const dir = keysCopy();
    rmSync(join(dir, "ssh_host_ed25519_key"));
    expect(plan({ keysDir: dir }, { identity: { mode: "broker", broker: BROKER } })).toEqual([]);
  });

  it("refuses an SSH host key that is a symbolic link, out of the key store or within it", () => {
    const outside = keysCopy();
    rmSync(join(outside, "ssh_host_ed25519_key"));
    symlinkSync(join(relayDir(store, "other"), "ssh_host_ed25519_key"), join(outside, "ssh_host_ed25519_key"));
    expect(plan({ keysDir: outside })).toEqual([expect.stringMatching(/relay r: .*\/ssh_host_ed25519_key is a symbolic link \(to .*other\/ssh_host_ed25519_key\): .*would ship whatever it points to/)]);
    const within = keysCopy();
    rmSync(join(within, "ssh_host_ed25519_key"));
    symlinkSync("secret_id_key", join(within, "ssh_host_ed25519_key"));
    expect(plan({ keysDir: within })).toEqual([expect.stringMatching(/ssh_host_ed25519_key is a symbolic link \(to secret_id_key\)/)]);
  });

  it("refuses a private SSH host key that others may read, as OpenSSH does", () => {
    const dir = keysCopy();
    chmodSync(join(dir, "ssh_host_ed25519_key"), 0o640);
    expect(plan({ keysDir: dir })).toEqual([expect.stringMatching(/ssh_host_ed25519_key is secret, but others may read or write it \(mode 0640\): .*chmod 600/)]);
  });

  it("refuses an ssh_host_ed25519_key.pub that holds the private key", () => {
    const dir = keysCopy();
    copyFileSync(join(dir, "ssh_host_ed25519_key"), join(dir, "ssh_host_ed25519_key.pub"));
    expect(plan({ keysDir: dir })).toEqual([expect.stringMatching(/ssh_host_ed25519_key\.pub holds a private key where only a public key belongs: it would ship in the image as public/)]);
  });

  it("refuses an SSH host key pair that is not a pair, and a host key that is not a key", () => {
    const dir = keysCopy();
    copyFileSync(join(relayDir(store, "other"), "ssh_host_ed25519_key.pub"), join(dir, "ssh_host_ed25519_key.pub"));
    expect(plan({ keysDir: dir })).toEqual([expect.stringMatching(/ssh_host_ed25519_key is not the private key of .*ssh_host_ed25519_key\.pub/)]);
    const junk = keysCopy();
    copyFileSync(join(junk, "secret_id_key"), join(junk, "ssh_host_ed25519_key"));
    expect(plan({ keysDir: junk })).toEqual([expect.stringMatching(/ssh_host_ed25519_key is not an OpenSSH private key/)]);
  });

  it("refuses an ed25519_master_id_public_key that holds a secret key, saying so", () => {
    const dir = keysCopy();
    copyFileSync(join(dir, "ed25519_signing_secret_key"), join(dir, "ed25519_master_id_public_key"));
    expect(plan({ keysDir: dir })).toEqual([
      expect.stringMatching(/ed25519_master_id_public_key is unusable: holds a secret key \(header "ed25519v1-secret: type4"\) where a public file belongs/),
    ]);
  });

  it("refuses identity files that are links out of the relay's directory, or readable by others", () => {
    const linked = keysCopy();
    rmSync(join(linked, "secret_id_key"));
    symlinkSync(join(relayDir(store, "other"), "secret_id_key"), join(linked, "secret_id_key"));
    expect(plan({ keysDir: linked })).toEqual([expect.stringMatching(/relay r: .*\/secret_id_key is a symbolic link/)]);
    const open = keysCopy();
    chmodSync(join(open, "ed25519_signing_secret_key"), 0o644);
    expect(plan({ keysDir: open })).toEqual([expect.stringMatching(/ed25519_signing_secret_key is secret, but others may read or write it \(mode 0644\)/)]);
  });

  it("refuses a family key that is a symbolic link, naming the relay's family setting", () => {
    const families = join(store, "families");
    copyFileSync(join(families, "fleet.secret_family_key"), join(projectDir, "elsewhere.secret_family_key"));
    symlinkSync(join(projectDir, "elsewhere.secret_family_key"), join(families, "linked.secret_family_key"));
    expect(plan({ family: "linked" })).toEqual([expect.stringMatching(/^relays\[0\]\.family: family linked: .*linked\.secret_family_key is a symbolic link/)]);
    expect(plan({ family: "fleet" })).toEqual([]);
  });
});

describe("planFleet reads the collection key as what it is", () => {
  const collector = (name: string, make: (file: string) => void) => {
    const file = join(store, name);
    make(file);
    return { stateCollection: { privateKeyFile: `keys/${name}` } };
  };

  it("refuses an ECDSA collection key, naming stateCollection.privateKeyFile", () => {
    const extra = collector("ecdsa", (file) => execFileSync("ssh-keygen", ["-q", "-t", "ecdsa", "-N", "", "-f", file]));
    expect(plan({}, extra)).toEqual([
      expect.stringMatching(/^stateCollection\.privateKeyFile: .*keys\/ecdsa\.pub is a "ecdsa-sha2-nistp256" key, not an ssh-ed25519 or an ssh-rsa public key; it becomes the relays' authorized_keys line/),
    ]);
  });

  it("refuses a junk .pub, one with a private key in it, and one whose data is not the key its type names", () => {
    const junk = collector("junk", (file) => {
      execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", file]);
      writeFileSync(`${file}.pub`, "not a key\n");
    });
    expect(plan({}, junk)).toEqual([expect.stringMatching(/^stateCollection\.privateKeyFile: .*keys\/junk\.pub is a "not" key/)]);
    const secret = collector("secret", (file) => {
      execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", file]);
      writeFileSync(`${file}.pub`, readFileSync(`${file}.pub`, "utf8") + readFileSync(file, "utf8"));
    });
    expect(plan({}, secret)).toEqual([expect.stringMatching(/secret\.pub holds a private key where only a public key belongs/)]);
    const mislabelled = collector("mislabelled", (file) => {
      execFileSync("ssh-keygen", ["-q", "-t", "ecdsa", "-N", "", "-f", file]);
      writeFileSync(`${file}.pub`, readFileSync(`${file}.pub`, "utf8").replace(/^ecdsa-sha2-nistp256/, "ssh-ed25519"));
    });
    expect(plan({}, mislabelled)).toEqual([expect.stringMatching(/mislabelled\.pub holds key data of type "ecdsa-sha2-nistp256", not the "ssh-ed25519" its line names/)]);
  });

  it("refuses a .pub that is not the private key's, where the private key is needed", () => {
    const extra = collector("swapped", (file) => {
      execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", file]);
      copyFileSync(join(store, "collector.pub"), `${file}.pub`);
    });
    expect(plan({}, extra)).toEqual([expect.stringMatching(/^stateCollection\.privateKeyFile: .*keys\/swapped is not the private key of .*swapped\.pub/)]);
    rmSync(join(store, "swapped"));
    // A preview collects nothing: the private key may be absent; an up needs it.
    expect(plan({}, extra, { needCollectionKey: false })).toEqual([]);
    expect(plan({}, extra)).toEqual([expect.stringMatching(/keys\/swapped is missing\. Make the collection key with/)]);
  });
});

describe("planFleet reads the Secure Boot key and certificate before anything is registered", () => {
  const secureBoot = (privateKeyFile: string, certificateFile: string) => ({ image: { secureBoot: { privateKeyFile, certificateFile } } });

  it("plans a pair openssl made, and names both settings when the files are missing", () => {
    const { key, cert } = certificate("db");
    expect(plan({}, secureBoot(key, cert))).toEqual([]);
    expect(plan({}, secureBoot("nowhere/db.key", "nowhere/db.crt"))).toEqual([
      expect.stringMatching(/^image\.secureBoot\.privateKeyFile: .*nowhere\/db\.key is missing; every UKI is signed with it/),
      expect.stringMatching(/^image\.secureBoot\.certificateFile: .*nowhere\/db\.crt is missing; every UKI is signed with it/),
    ]);
  });

  it("refuses a certificate file that carries the key, and a certificate of another key", () => {
    const { key, cert } = certificate("db-both");
    const both = join(projectDir, "db-both.pem");
    writeFileSync(both, readFileSync(key, "utf8") + readFileSync(cert, "utf8"));
    expect(plan({}, secureBoot(key, both))).toEqual([expect.stringMatching(/^image\.secureBoot\.certificateFile: .*db-both\.pem holds a private key \(a PEM "PRIVATE KEY" block\)/)]);
    const other = certificate("db-other");
    expect(plan({}, secureBoot(key, other.cert))).toEqual([expect.stringMatching(/db-other\.crt is not the certificate of image\.secureBoot\.privateKeyFile's key/)]);
    chmodSync(cert, 0o600);
    expect(plan({}, secureBoot(cert, cert))).toEqual([expect.stringMatching(/^image\.secureBoot\.privateKeyFile: .*db-both\.crt holds 0 PEM private keys/)]);
  });
});

describe("planFleet reads the image signing key as what it is", () => {
  it("refuses one that others may read, and one that is no OpenSSH private key, naming image.signingKeyFile", () => {
    const key = join(projectDir, "signing");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key]);
    expect(plan({}, { image: { signingKeyFile: "signing" } })).toEqual([]);
    chmodSync(key, 0o644);
    expect(plan({}, { image: { signingKeyFile: "signing" } })).toEqual([expect.stringMatching(/^image\.signingKeyFile: .*signing is secret, but others may read or write it \(mode 0644\)/)]);
    expect(plan({}, { image: { signingKeyFile: "keys/r/secret_id_key" } })).toEqual([expect.stringMatching(/^image\.signingKeyFile: .*secret_id_key is not an OpenSSH private key/)]);
  });
});

describe("planFleet reads the broker's CA as PEM certificates and nothing else", () => {
  const broker = (caFile: string) => ({ identity: { mode: "broker", broker: { ...BROKER, caFile } } });

  const caWarnings = (warnings: string[]) => warnings.filter((warning) => warning.startsWith("identity.broker.caFile"));

  it("plans a CA openssl made, and the images carry exactly its text", () => {
    const { cert } = certificate("broker-ca");
    const fleet = planFleet(config({}, broker(cert)), { projectDir, now });
    expect(fleet.brokerCaPem).toBe(readFileSync(cert, "utf8"));
    // The fleet's documentation addresses are warned about too (lib/plan/publication.ts); the CA draws none.
    expect(caWarnings(fleet.warnings)).toEqual([]);
  });

  it("refuses a key file, the admin token and a missing file as the CA, naming identity.broker.caFile", () => {
    expect(plan({}, broker("keys/r/secret_id_key"))).toEqual([
      expect.stringMatching(/^identity\.broker\.caFile: .*keys\/r\/secret_id_key holds a private key \(a PEM "RSA PRIVATE KEY" block\): it would ship in every image as the CA/),
    ]);
    expect(plan({}, broker("admin.token"))).toEqual([expect.stringMatching(/^identity\.broker\.caFile: .*admin\.token holds no PEM certificate/)]);
    expect(plan({}, broker("keys/r/ed25519_signing_secret_key"))).toEqual([expect.stringMatching(/^identity\.broker\.caFile: .*ed25519_signing_secret_key holds no PEM certificate/)]);
    expect(plan({}, broker("nowhere/ca.pem"))).toEqual([expect.stringMatching(/^identity\.broker\.caFile: .*nowhere\/ca\.pem is missing; every image pins it as the broker's CA/)]);
  });

  it("refuses a CA file with its key, or with text beside the certificate", () => {
    const { key, cert } = certificate("ca-and-key");
    const both = join(projectDir, "ca-and-key.pem");
    writeFileSync(both, readFileSync(cert, "utf8") + readFileSync(key, "utf8"));
    expect(plan({}, broker(both))).toEqual([expect.stringMatching(/ca-and-key\.pem holds a private key \(a PEM "PRIVATE KEY" block\)/)]);
    const text = join(projectDir, "ca-text.pem");
    writeFileSync(text, execFileSync("openssl", ["x509", "-in", cert, "-text"], { encoding: "utf8" }));
    expect(plan({}, broker(text))).toEqual([expect.stringMatching(/ca-text\.pem holds text outside its PEM blocks/)]);
  });

  it("refuses an expired CA, and warns of a certificate that is no CA", () => {
    const { cert } = certificate("short-ca", { days: 1 });
    const later = new Date(Date.now() + 3 * 86_400_000);
    expect(problemsOf(() => planFleet(config({}, broker(cert)), { projectDir, now: later }))).toEqual([expect.stringMatching(/short-ca\.crt holds a certificate \(CN=short-ca\) that expired at /)]);
    const leaf = certificate("leaf", { leaf: true });
    const fleet = planFleet(config({}, broker(leaf.cert)), { projectDir, now });
    expect(caWarnings(fleet.warnings)).toEqual([expect.stringMatching(/^identity\.broker\.caFile: .*leaf\.crt holds a certificate \(CN=leaf\) that is not a CA/)]);
  });

  it("refuses a CA that is a symbolic link", () => {
    const { cert } = certificate("linked-ca");
    symlinkSync(cert, join(projectDir, "ca-link.pem"));
    expect(plan({}, broker("ca-link.pem"))).toEqual([expect.stringMatching(/^identity\.broker\.caFile: .*ca-link\.pem is a symbolic link/)]);
  });
});

describe("the image build itself", () => {
  it("refuses a key file that became a symbolic link after the plan, and leaves no staged key behind", () => {
    const keysDir = keysCopy();
    rmSync(join(keysDir, "secret_id_key"));
    symlinkSync(join(relayDir(store, "other"), "secret_id_key"), join(keysDir, "secret_id_key"));
    // The build stops while staging the overlay: a base that claims to be finished is all it looks at first.
    const baseDir = join(projectDir, "fake-base");
    mkdirSync(baseDir);
    writeFileSync(join(baseDir, ".complete"), "");
    const outDir = join(projectDir, "fake-out");
    const recipe = {
      relay: "r", nickname: "PlanFiles", imageDigest: "0".repeat(64), baseDir, keysDir, collectedDir: join(projectDir, "no-collection"), outDir,
      torrc: "Nickname PlanFiles\n", networkEnv: "RELAY_NICKNAME=PlanFiles\n", authorizedKeys: `restrict,command="/usr/local/sbin/relay-collector" ${readFileSync(join(store, "collector.pub"), "utf8").split(" ").slice(0, 2).join(" ")}\n`, kernelCmdline: "console=ttyS0",
    };
    expect(() => buildRelayImage(recipe, projectDir)).toThrow(/secret_id_key is not a regular file \(a symbolic link\?\); refusing to build an image with it/);
    expect(existsSync(outDir) ? readdirSync(outDir) : []).toEqual([]);
  });
});
