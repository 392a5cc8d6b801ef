/**
 * Everything the program must know about the fleet before it registers a
 * single resource: each relay's identity, the checks on it, and its torrc.
 * A problem with any relay stops the whole run here, so nothing changes.
 * Every file that enters an image (or signs one) is read and judged here.
 * I/O: reads key files, certificates and the testnet's network.json; runs
 * tor --verify-config (lib/render/torrc-check.ts).
 */
import type { KeyObject } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { resolveBroker } from "../broker/broker-endpoint";
import { inProject, PROGRAM_DIR } from "../core/paths";
import { readGuardedFile } from "../tor/key-files";
import { checkCaBundle, checkSecureBootCertificate, readSecureBootKey } from "../core/pem";
import { parseSshPrivateKey, parseSshPublicKey } from "../core/ssh-keys";
import type { ImageConfig, RelayConfig, StackConfig } from "../config/config";
import { IdentityError, checkCertificateWindow, findSharedIdentities, loadRelayIdentity, type RelayIdentity } from "./identity";
import { familyIdFromSecretKey, KeyFileError } from "../tor/tor-keys";
import { PREVIEW_RECORD_FILE, readPreviewRecord, type PreviewRecord } from "./preview-record";
import { addressOf, inSubnet, parseAddress, parsePrefix } from "../tor/addresses";
import { TESTNET, networkSchema, type TestnetNetwork } from "../config/testnet";
import { authorityAddresses, PUBLIC_AUTHORITIES } from "../tor/tor-authorities";
import { renderTorrcLines, type TorrcLine } from "../render/torrc";
import { renderUnboundConf } from "../render/unbound";
import { EXIT_NOTICE_TEMPLATE, exitNoticeFileProblem, renderExitNotice } from "../render/exit-notice";
import { renderHardening, type Hardening } from "../render/hardening";
import { defaultConntrackMax } from "../config/limits";
import { verifyTorrcsWithTor } from "../render/torrc-check";
import { shellQuote } from "../core/shell-quote";
import { checkPublication } from "./publication";
import { sha256File } from "../core/digest";
import { TOR_DATA_DIRECTORY } from "../image/guest-paths";

export interface PlannedRelay {
  config: RelayConfig;
  keysDir: string;
  identity: RelayIdentity;
  /** The family key file that ships with this relay, if its family has one. */
  familyKeyFile?: string;
  /** That family key's FamilyId. */
  familyId?: string;
  torrc: string;
  /** The torrc's lines with the config field behind each. */
  torrcLines: TorrcLine[];
  /** The relay's SSH host public key ("ssh-ed25519 AAAA…"), pinned by the build host. */
  sshHostPublicKey: string;
  /** For an exit: its resolver's unbound.conf. */
  resolverConf?: string;
  /** For an exit that serves its notice: the page, filled in (lib/render/exit-notice.ts). */
  exitNotice?: string;
  /** Its connection limits, kernel settings and open-file limit (lib/render/hardening.ts). */
  hardening: Hardening;
  /**
   * Only in a preview on a host without the relay's private key files (a pull
   * request's runner): the key-generation host's digests of them.
   */
  previewRecord?: PreviewRecord;
}

export class FleetError extends Error {
  constructor(readonly problems: string[]) {
    super(`${problems.length} relay problem${problems.length === 1 ? "" : "s"}; nothing was changed:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "FleetError";
  }
}

/**
 * Where each flavour's tor runs, whether its seccomp sandbox is proven there,
 * and where the flavour's package puts the DNS root trust anchor the exits'
 * resolver validates with (Debian: dns-root-data; Alpine: dnssec-root).
 */
export const TOR_RUNTIME: Record<ImageConfig["flavour"], { user: string; sandbox: boolean; dataDirectory: string; rootTrustAnchor: string }> = {
  alpine: { user: "tor", sandbox: false, dataDirectory: TOR_DATA_DIRECTORY, rootTrustAnchor: "/usr/share/dnssec-root/trusted-key.key" },
  debian: { user: "debian-tor", sandbox: true, dataDirectory: TOR_DATA_DIRECTORY, rootTrustAnchor: "/usr/share/dns/root.key" },
};

/**
 * A path as resources see it: relative to the project when given relative.
 * Resource inputs must not depend on where the project is checked out, or a
 * preview elsewhere (a pull request's runner) would show every command as
 * changed.
 */
function relayKeysDir(config: Pick<StackConfig, "keyStore">, relay: RelayConfig, projectDir: string): string {
  return inProject(projectDir, relay.keysDir ?? join(config.keyStore, relay.name));
}

/** Where a family's key lives: in the key store's families/. */
function familyKeyPath(config: Pick<StackConfig, "keyStore">, family: string, projectDir: string): string {
  return join(inProject(projectDir, config.keyStore), "families", `${family}.secret_family_key`);
}

/**
 * Reads every relay's identity and renders its torrc. Returns the plan and
 * the warnings to show; throws a FleetError listing every problem found.
 */
export function planFleet(
  config: StackConfig,
  options: {
    projectDir: string;
    now: Date;
    /** false for a preview, which collects nothing */
    needCollectionKey?: boolean;
    /**
     * true for a preview, which builds nothing: a relay whose private key files
     * are absent is planned from the preview record beside its public ones.
     */
    allowPreviewRecords?: boolean;
    /** Tests and benchmarks that boot the images under QEMU here: test-network addresses pass (lib/plan/publication.ts). */
    localBoot?: boolean;
  },
): { relays: PlannedRelay[]; warnings: string[]; notes: string[]; collectorPublicKey: string; testnet?: TestnetNetwork; brokerCaPem?: string } {
  const problems: string[] = [];
  const warnings: string[] = [];
  const collectorPublicKey = checkCollectionKey(config, options, problems);
  const identities: RelayIdentity[] = [];
  const keysDirs = new Map<string, string>();
  const hostKeys = new Map<string, string>();
  const records = new Map<string, PreviewRecord>();

  config.relays.forEach((relay, i) => {
    const sev = relay.sev;
    if (!sev?.enabled || !sev.ovmf || !sev.ovmfSha256) return;
    const file = inProject(options.projectDir, sev.ovmf);
    if (!existsSync(file)) return void problems.push(`relays[${i}].sev.ovmf: ${file} is missing; the launch measurement of relay ${relay.name} is computed from it`);
    const actual = sha256File(file);
    // A firmware nobody pinned would publish a measurement for a launch nobody reviewed.
    if (actual !== sev.ovmfSha256) problems.push(`relays[${i}].sev.ovmfSha256: ${file} has SHA-256 ${actual}, not the pinned ${sev.ovmfSha256}. If this firmware is the one to launch, pin it: pulumi config set --path ${shellQuote(`relays[${i}].sev.ovmfSha256`)} ${shellQuote(actual)}`);
  });

  config.relays.forEach((relay, index) => {
    const keysDir = relayKeysDir(config, relay, options.projectDir);
    keysDirs.set(relay.name, keysDir);
    // Problems with a relay's key files name the setting that says where they are.
    const field = relay.keysDir !== undefined ? `relays[${index}].keysDir` : "keyStore";
    const problem = (message: string) => problems.push(`${field}: ${message}`);
    let record: PreviewRecord | undefined;
    if (options.allowPreviewRecords && existsSync(join(keysDir, PREVIEW_RECORD_FILE)) && !existsSync(join(keysDir, "secret_id_key"))) {
      try {
        record = readPreviewRecord(relay.name, keysDir);
        records.set(relay.name, record);
      } catch (err) {
        return void problem((err as Error).message);
      }
    }
    // A preview on a host without private keys (a pull request's runner) plans from the record instead.
    const recordHint = ` (A preview on a host without private keys reads ${join(keysDir, PREVIEW_RECORD_FILE)} instead, made by \`npm run --silent keys -- export-shipped\`.)`;
    // A broker-mode image has no SSH server: its private host key stays out. A runner has only the public half.
    const hostKey = checkSshHostKey(relay.name, keysDir, { withPrivate: config.identity.mode === "image" && !record });
    if ("problem" in hostKey) problem(hostKey.problem + (options.allowPreviewRecords && hostKey.missingPrivate ? recordHint : ""));
    else hostKeys.set(relay.name, hostKey.line);
    try {
      const identity = loadRelayIdentity(relay.name, keysDir, relay.nickname, record);
      identities.push(identity);
      const status = checkCertificateWindow(identity, options.now, config.certificate);
      if (status.level === "error") problems.push(status.message);
      if (status.level === "warn") warnings.push(status.message);
    } catch (err) {
      if (!(err instanceof IdentityError)) throw err;
      const runner = options.allowPreviewRecords && !record && !existsSync(err.file);
      problem(runner ? `${err.message}${recordHint}` : err.message);
    }
  });
  problems.push(...findSharedIdentities(identities));

  // The signing keys are needed by the build; a runner previewing from records has none, by design.
  if (config.image.signingKeyFile && records.size === 0) checkImageSigningKey(config.image.signingKeyFile, options.projectDir, problems);
  if (config.image.secureBoot && records.size < config.relays.length) checkSecureBoot(config.image.secureBoot, options.projectDir, problems);

  const familyIds = new Map<string, { file: string; familyId: string }>();
  for (const family of new Set(config.relays.flatMap((r) => (r.family ? [r.family] : [])))) {
    const file = familyKeyPath(config, family, options.projectDir);
    const field = `relays[${config.relays.findIndex((relay) => relay.family === family)}].family`;
    const recorded = config.relays.map((relay) => (relay.family === family ? records.get(relay.name)?.familyId : undefined)).find((id) => id !== undefined);
    const got = readGuardedFile(file, { root: inProject(options.projectDir, config.keyStore), secret: true });
    if ("problem" in got) {
      if (!got.missing) problems.push(`${field}: family ${family}: ${file} ${got.problem}`);
      else if (recorded) familyIds.set(family, { file, familyId: recorded });
      continue;
    }
    try {
      familyIds.set(family, { file, familyId: familyIdFromSecretKey(got.bytes, file) });
    } catch (err) {
      if (err instanceof KeyFileError) problems.push(`${field}: family ${family}: ${err.message}. Re-create it with \`npm run keys -- family init ${shellQuote(family)}\` on the key-generation host`);
      else throw err;
    }
  }

  const testnet = config.testnet ? readTestnet(config.testnet.dir, options.projectDir, problems) : undefined;
  const brokerCaPem = checkBrokerCa(config, options, testnet, problems, warnings);
  if (testnet) {
    const bridge = parsePrefix(`${TESTNET.hostIPv4}/${TESTNET.ipv4Prefix}`)!;
    config.relays.forEach((relay, index) => {
      if (!inSubnet(parseAddress(addressOf(relay.ipv4.address))!, bridge)) {
        problems.push(`relays[${index}].ipv4.address: ${relay.ipv4.address} is not on the testnet's bridge ${TESTNET.hostIPv4}/${TESTNET.ipv4Prefix}; the relay could reach nothing`);
      }
    });
  }

  // Each exit's notice page: the Tor Project's, or the operator's own file, read once here.
  const notices = new Map<string, string>();
  config.relays.forEach((relay, index) => {
    if (!relay.exit.enabled || !relay.exit.notice.enabled) return;
    const own = relay.exit.notice.file;
    // The Tor Project's page is part of this program, wherever the project's config lives.
    const file = own ? inProject(options.projectDir, own) : join(PROGRAM_DIR, EXIT_NOTICE_TEMPLATE);
    const field = `relays[${index}].exit.notice.file`;
    if (!existsSync(file)) return void problems.push(own ? `${field}: ${file} is missing` : `relay ${relay.name}: the Tor Project's exit notice ${file} is missing from this checkout`);
    // The page is served to anyone: a link could publish whatever it points to, a key store's secrets included.
    const got = readGuardedFile(file, { root: dirname(file), secret: false });
    if ("problem" in got) return void problems.push(`${field}: ${file} ${got.problem}`);
    const bytes = got.bytes;
    const problem = exitNoticeFileProblem({ isFile: true, size: bytes.length, bytes });
    if (problem) return void problems.push(`${field}: ${file} ${problem}`);
    const addresses = [addressOf(relay.ipv4.address), ...(relay.ipv6 ? [addressOf(relay.ipv6.address)] : [])];
    notices.set(relay.name, renderExitNotice(bytes!.toString("utf8"), { contactInfo: relay.contactInfo, addresses }));
  });

  if (problems.length > 0) throw new FleetError(problems);

  const byName = new Map(identities.map((identity) => [identity.relay, identity]));
  const { rootTrustAnchor, ...runtime } = TOR_RUNTIME[config.image.flavour];
  const relays = config.relays.map((relay): PlannedRelay => {
    const identity = byName.get(relay.name)!;
    const members = relay.family ? config.relays.filter((other) => other.family === relay.family && other.name !== relay.name) : [];
    const familyKey = relay.family ? familyIds.get(relay.family) : undefined;
    const torrcLines = renderTorrcLines(relay, {
      ...runtime,
      familyFingerprints: members.map((member) => byName.get(member.name)!.rsaFingerprint),
      familyIds: familyKey ? [familyKey.familyId] : [],
      ...(testnet ? { testnet } : {}),
    });
    const torrc = torrcLines.map((line) => line.text).join("\n") + "\n";
    const notice = notices.get(relay.name);
    const { limits } = relay;
    const hardening = renderHardening({
      orPort: relay.orPort,
      exit: relay.exit.enabled,
      conntrackMax: limits.conntrackMax ?? defaultConntrackMax(relay.memoryMiB),
      openFiles: limits.openFiles,
      ...(limits.enabled ? { perSource: { orPort: limits.orPort, ...(notice ? { notice: limits.exitNotice } : {}), ipv6SourcePrefix: limits.ipv6SourcePrefix, exempt: authorityAddresses(testnet ? testnet.authorities : PUBLIC_AUTHORITIES) } } : {}),
    });
    return {
      config: relay,
      keysDir: keysDirs.get(relay.name)!,
      identity,
      torrc,
      torrcLines,
      sshHostPublicKey: hostKeys.get(relay.name)!,
      hardening,
      ...(notice ? { exitNotice: notice } : {}),
      ...(familyKey ? { familyKeyFile: familyKey.file, familyId: familyKey.familyId } : {}),
      ...(records.has(relay.name) ? { previewRecord: records.get(relay.name)! } : {}),
      ...(relay.exit.enabled
        ? { resolverConf: renderUnboundConf({ upstreams: relay.nameservers, rootTrustAnchor, ...(testnet ? { testnet: { zone: testnet.zone, dns: testnet.hostIPv4 } } : {}) }) }
        : {}),
    };
  });
  // tor judges every torrc before anything is registered.
  const refusals = verifyTorrcsWithTor(relays.map((relay, index) => ({ index, relay: relay.config.name, lines: relay.torrcLines })));
  if (refusals.length > 0) throw new FleetError(refusals);
  // Then what the network would see of each: publishable addresses, descriptor size, each exit's effective policy.
  const published = checkPublication(relays.map((relay, index) => ({ index, config: relay.config, torrcLines: relay.torrcLines })), { target: config.target, localBoot: options.localBoot ?? false });
  if (published.problems.length > 0) throw new FleetError(published.problems);
  return {
    relays,
    warnings: [...warnings, ...published.warnings],
    notes: published.notes,
    collectorPublicKey,
    ...(testnet ? { testnet } : {}),
    ...(brokerCaPem !== undefined ? { brokerCaPem } : {}),
  };
}

/**
 * The collection key: its .pub goes into every image-mode image (the
 * authorized_keys line), so it must be one OpenSSH public key and nothing
 * else; the private key, where it is needed or present, must be the .pub's.
 * Returns the public key line ("ssh-ed25519 AAAA…"), or "" after a problem.
 */
function checkCollectionKey(config: StackConfig, options: { projectDir: string; needCollectionKey?: boolean }, problems: string[]): string {
  const field = "stateCollection.privateKeyFile";
  const key = inProject(options.projectDir, config.stateCollection.privateKeyFile);
  const root = dirname(key);
  const makeIt = `Make the collection key with \`ssh-keygen -t ed25519 -N '' -f ${shellQuote(config.stateCollection.privateKeyFile)}\``;
  const refuse = (message: string) => {
    problems.push(`${field}: ${message}`);
    return "";
  };
  const pub = readGuardedFile(`${key}.pub`, { root, secret: false });
  if ("problem" in pub) return refuse(`${key}.pub ${pub.problem}.${pub.missing ? ` ${makeIt}` : ""}`);
  const parsed = parseSshPublicKey(pub.bytes.toString("utf8"), ["ssh-ed25519", "ssh-rsa"]);
  if ("problem" in parsed) return refuse(`${key}.pub ${parsed.problem}; it becomes the relays' authorized_keys line. ${makeIt}`);
  // A preview collects nothing: the private key is checked where it is, and needed only to collect.
  if (!(options.needCollectionKey ?? true) && !existsSync(key)) return parsed.key.line;
  const secret = readGuardedFile(key, { root, secret: true });
  if ("problem" in secret) return refuse(`${key} ${secret.problem}.${secret.missing ? ` ${makeIt}` : ""}`);
  const facts = parseSshPrivateKey(secret.bytes.toString("latin1"));
  if ("problem" in facts) problems.push(`${field}: ${key} ${facts.problem}. ${makeIt}`);
  else if (!facts.facts.publicBlob.equals(parsed.key.blob)) problems.push(`${field}: ${key} is not the private key of ${key}.pub: the relays would refuse the collector. Put the pair back together, or make a new one: ${makeIt}`);
  return parsed.key.line;
}

/**
 * A relay's SSH host key: the .pub is pinned by the build host and ships; in
 * image mode the private key ships too, and must be the .pub's, unencrypted
 * (sshd reads it at boot, with no one to ask for a passphrase).
 */
function checkSshHostKey(relay: string, keysDir: string, options: { withPrivate: boolean }): { line: string } | { problem: string; missingPrivate?: boolean } {
  const makeIt = `the relay's SSH host key is made with its identity by \`npm run keys -- init ${shellQuote(relay)}\``;
  const pubFile = join(keysDir, "ssh_host_ed25519_key.pub");
  const pub = readGuardedFile(pubFile, { root: keysDir, secret: false });
  if ("problem" in pub) return { problem: `relay ${relay}: ${pubFile} ${pub.problem}; ${makeIt}` };
  const parsed = parseSshPublicKey(pub.bytes.toString("utf8"), ["ssh-ed25519"]);
  if ("problem" in parsed) return { problem: `relay ${relay}: ${pubFile} ${parsed.problem}; ${makeIt}` };
  if (!options.withPrivate) return { line: parsed.key.line };
  const file = join(keysDir, "ssh_host_ed25519_key");
  const secret = readGuardedFile(file, { root: keysDir, secret: true });
  if ("problem" in secret) return { problem: `relay ${relay}: ${file} ${secret.problem}; it ships in the relay's image (its SSH server's host key): ${makeIt}`, missingPrivate: secret.missing };
  const facts = parseSshPrivateKey(secret.bytes.toString("latin1"));
  if ("problem" in facts) return { problem: `relay ${relay}: ${file} ${facts.problem}; ${makeIt}` };
  if (facts.facts.encrypted) return { problem: `relay ${relay}: ${file} is encrypted: the relay's sshd reads it at boot, with no one to type a passphrase; ${makeIt}` };
  if (!facts.facts.publicBlob.equals(parsed.key.blob)) return { problem: `relay ${relay}: ${file} is not the private key of ${pubFile}: the build host pins the .pub, and the relay would answer with another key` };
  return { line: parsed.key.line };
}

/** The operator's image signing key (ssh-keygen -Y sign): an OpenSSH private key, private to its owner (ssh-keygen refuses it otherwise). */
function checkImageSigningKey(path: string, projectDir: string, problems: string[]): void {
  const key = inProject(projectDir, path);
  const got = readGuardedFile(key, { root: dirname(key), secret: true });
  const makeIt = `Make it with \`ssh-keygen -t ed25519 -f ${shellQuote(path)}\` and publish its .pub: volunteers check each image's record with it`;
  if ("problem" in got) return void problems.push(`image.signingKeyFile: ${key} ${got.problem}.${got.missing ? ` ${makeIt}` : ""}`);
  const facts = parseSshPrivateKey(got.bytes.toString("latin1"));
  if ("problem" in facts) problems.push(`image.signingKeyFile: ${key} ${facts.problem}. ${makeIt}`);
}

/** The Secure Boot db key and certificate each UKI is signed with (sbsign): a matching pair, the certificate with nothing secret in it. */
function checkSecureBoot(secureBoot: NonNullable<ImageConfig["secureBoot"]>, projectDir: string, problems: string[]): void {
  const keyFile = inProject(projectDir, secureBoot.privateKeyFile);
  const certFile = inProject(projectDir, secureBoot.certificateFile);
  let key: KeyObject | undefined;
  const keyRead = readGuardedFile(keyFile, { root: dirname(keyFile), secret: true });
  if ("problem" in keyRead) problems.push(`image.secureBoot.privateKeyFile: ${keyFile} ${keyRead.problem}; every UKI is signed with it`);
  else {
    const parsed = readSecureBootKey(keyRead.bytes.toString("latin1"));
    if ("problem" in parsed) problems.push(`image.secureBoot.privateKeyFile: ${keyFile} ${parsed.problem}`);
    else key = parsed.key;
  }
  const certRead = readGuardedFile(certFile, { root: dirname(certFile), secret: false });
  if ("problem" in certRead) return void problems.push(`image.secureBoot.certificateFile: ${certFile} ${certRead.problem}; every UKI is signed with it`);
  const certProblem = checkSecureBootCertificate(certRead.bytes.toString("latin1"), key);
  if (certProblem) problems.push(`image.secureBoot.certificateFile: ${certFile} ${certProblem}`);
}

/**
 * Broker mode: the CA every image pins (the config's identity.broker.caFile,
 * or the testnet broker's). Returns its text, which the images carry as it is.
 */
function checkBrokerCa(config: StackConfig, options: { projectDir: string; now: Date }, testnet: TestnetNetwork | undefined, problems: string[], warnings: string[]): string | undefined {
  let broker: ReturnType<typeof resolveBroker>;
  try {
    broker = resolveBroker(config, options.projectDir, testnet);
  } catch {
    // Only a stack without its testnet leaves a field unresolved; that is reported already.
    return undefined;
  }
  if (!broker?.caFile) return undefined;
  const field = config.identity.broker?.caFile ? "identity.broker.caFile" : "testnet.dir (its broker's CA)";
  const got = readGuardedFile(broker.caFile, { root: dirname(broker.caFile), secret: false });
  if ("problem" in got) return void problems.push(`${field}: ${broker.caFile} ${got.problem}; every image pins it as the broker's CA`);
  const text = got.bytes.toString("utf8");
  const checked = checkCaBundle(text, options.now);
  problems.push(...checked.problems.map((problem) => `${field}: ${broker.caFile} ${problem}`));
  warnings.push(...checked.warnings.map((warning) => `${field}: ${broker.caFile} ${warning}`));
  return checked.problems.length === 0 ? text : undefined;
}

/** The local testnet's network.json, as `npm run testnet` wrote it. */
function readTestnet(dir: string, projectDir: string, problems: string[]): TestnetNetwork | undefined {
  const file = join(inProject(projectDir, dir), "network.json");
  if (!existsSync(file)) {
    problems.push(`testnet.dir: ${file} is missing: start the private Tor network first with \`npm run testnet\``);
    return undefined;
  }
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, "utf8"));
  } catch {
    json = undefined;
  }
  const parsed = networkSchema.safeParse(json);
  if (!parsed.success) problems.push(`testnet.dir: ${file} is not a testnet description; run \`npm run testnet -- down\` and \`npm run testnet\` again`);
  return parsed.success ? parsed.data : undefined;
}
