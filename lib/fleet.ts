/**
 * Everything the program must know about the fleet before it registers a
 * single resource: each relay's identity, the checks on it, and its torrc.
 * A problem with any relay stops the whole run here, so nothing changes.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import type { ImageConfig, RelayConfig, StackConfig } from "./config";
import { IdentityError, checkCertificateWindow, findSharedIdentities, loadRelayIdentity, type RelayIdentity } from "./identity";
import { familyIdFromSecretKey, KeyFileError } from "./tor-keys";
import { PREVIEW_RECORD_FILE, readPreviewRecord, type PreviewRecord } from "./preview-record";
import { addressOf, inSubnet, parseAddress, parsePrefix } from "./addresses";
import { TESTNET, networkSchema, type TestnetNetwork } from "./testnet";
import { renderTorrcLines, type TorrcLine } from "./torrc";
import { renderUnboundConf } from "./unbound";
import { EXIT_NOTICE_TEMPLATE, exitNoticeFileProblem, MAX_EXIT_NOTICE_BYTES, renderExitNotice } from "./exit-notice";
import { defaultConntrackMax, renderHardening, type Hardening } from "./hardening";
import { verifyTorrcsWithTor } from "./torrc-check";

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
  /** For an exit that serves its notice: the page, filled in (lib/exit-notice.ts). */
  exitNotice?: string;
  /** Its connection limits, kernel settings and open-file limit (lib/hardening.ts). */
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
  alpine: { user: "tor", sandbox: false, dataDirectory: "/var/lib/tor", rootTrustAnchor: "/usr/share/dnssec-root/trusted-key.key" },
  debian: { user: "debian-tor", sandbox: true, dataDirectory: "/var/lib/tor", rootTrustAnchor: "/usr/share/dns/root.key" },
};

/**
 * A path as resources see it: relative to the project when given relative.
 * Resource inputs must not depend on where the project is checked out, or a
 * preview elsewhere (a pull request's runner) would show every command as
 * changed.
 */
export function inProject(projectDir: string, path: string): string {
  return isAbsolute(path) ? path : join(projectDir, path);
}

/** The stack's private build root on the build host; holds key material, outside the state. */
export function stackBuildRoot(config: Pick<StackConfig, "buildDir">, project: string, stack: string, projectDir: string): string {
  return join(inProject(projectDir, config.buildDir), `${project}-${stack}`);
}

/** A relay's private directory in it: its rollout records (lib/rollout-records.ts), collected state and rollback image. */
export const relayBuildDir = (buildRoot: string, relay: string) => join(buildRoot, "relays", relay);

export function relayKeysDir(config: Pick<StackConfig, "keyStore">, relay: RelayConfig, projectDir: string): string {
  return inProject(projectDir, relay.keysDir ?? join(config.keyStore, relay.name));
}

/** Where a family's key lives: in the key store's families/. */
export function familyKeyPath(config: Pick<StackConfig, "keyStore">, family: string, projectDir: string): string {
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
  },
): { relays: PlannedRelay[]; warnings: string[]; collectorPublicKey: string; testnet?: TestnetNetwork } {
  const problems: string[] = [];
  const collectorKey = inProject(options.projectDir, config.stateCollection.privateKeyFile);
  const makeIt = `Make the collection key with \`ssh-keygen -t ed25519 -N "" -f ${config.stateCollection.privateKeyFile}\``;
  let collectorPublicKey = "";
  if (!existsSync(`${collectorKey}.pub`)) problems.push(`stateCollection.privateKeyFile: ${collectorKey}.pub is missing. ${makeIt}`);
  else collectorPublicKey = readFileSync(`${collectorKey}.pub`, "utf8").trim();
  if ((options.needCollectionKey ?? true) && !existsSync(collectorKey)) problems.push(`stateCollection.privateKeyFile: ${collectorKey} is missing. ${makeIt}`);
  const warnings: string[] = [];
  const identities: RelayIdentity[] = [];
  const keysDirs = new Map<string, string>();
  const hostKeys = new Map<string, string>();
  const records = new Map<string, PreviewRecord>();

  config.relays.forEach((relay, i) => {
    const sev = relay.sev;
    if (!sev?.enabled || !sev.ovmf || !sev.ovmfSha256) return;
    const file = inProject(options.projectDir, sev.ovmf);
    if (!existsSync(file)) return void problems.push(`relays[${i}].sev.ovmf: ${file} is missing; the launch measurement of relay ${relay.name} is computed from it`);
    const actual = createHash("sha256").update(readFileSync(file)).digest("hex");
    // A firmware nobody pinned would publish a measurement for a launch nobody reviewed.
    if (actual !== sev.ovmfSha256) problems.push(`relays[${i}].sev.ovmfSha256: ${file} has SHA-256 ${actual}, not the pinned ${sev.ovmfSha256}. If this firmware is the one to launch, pin it: pulumi config set --path 'relays[${i}].sev.ovmfSha256' ${actual}`);
  });

  for (const relay of config.relays) {
    const keysDir = relayKeysDir(config, relay, options.projectDir);
    keysDirs.set(relay.name, keysDir);
    const hostKeyFile = join(keysDir, "ssh_host_ed25519_key.pub");
    const hostKey = existsSync(hostKeyFile) ? readFileSync(hostKeyFile, "utf8").trim().split(/\s+/).slice(0, 2).join(" ") : "";
    if (!/^ssh-ed25519 [A-Za-z0-9+/=]+$/.test(hostKey)) {
      problems.push(`relay ${relay.name}: ${hostKeyFile} is missing or not an ed25519 public key; the relay's SSH host key is made with its identity by \`npm run keys -- init ${relay.name}\``);
    } else hostKeys.set(relay.name, hostKey);
    let record: PreviewRecord | undefined;
    if (options.allowPreviewRecords && existsSync(join(keysDir, PREVIEW_RECORD_FILE)) && !existsSync(join(keysDir, "secret_id_key"))) {
      try {
        record = readPreviewRecord(relay.name, keysDir);
        records.set(relay.name, record);
      } catch (err) {
        problems.push((err as Error).message);
        continue;
      }
    }
    try {
      const identity = loadRelayIdentity(relay.name, keysDir, relay.nickname, record);
      identities.push(identity);
      const status = checkCertificateWindow(identity, options.now, config.certificate);
      if (status.level === "error") problems.push(status.message);
      if (status.level === "warn") warnings.push(status.message);
    } catch (err) {
      if (!(err instanceof IdentityError)) throw err;
      const runner = options.allowPreviewRecords && !record && !existsSync(err.file);
      problems.push(runner ? `${err.message} (A preview on a host without private keys reads ${join(keysDir, PREVIEW_RECORD_FILE)} instead, made by \`npm run --silent keys -- export-shipped\`.)` : err.message);
    }
  }
  problems.push(...findSharedIdentities(identities));

  // The signing key is needed by the build; a runner previewing from records has none, by design.
  if (config.image.signingKeyFile && records.size === 0) {
    const key = inProject(options.projectDir, config.image.signingKeyFile);
    if (!existsSync(key)) problems.push(`image.signingKeyFile: ${key} is missing. Make it with \`ssh-keygen -t ed25519 -f ${config.image.signingKeyFile}\` and publish its .pub: volunteers check each image's record with it`);
  }

  const familyIds = new Map<string, { file: string; familyId: string }>();
  for (const family of new Set(config.relays.flatMap((r) => (r.family ? [r.family] : [])))) {
    const file = familyKeyPath(config, family, options.projectDir);
    const recorded = config.relays.map((relay) => (relay.family === family ? records.get(relay.name)?.familyId : undefined)).find((id) => id !== undefined);
    if (!existsSync(file)) {
      if (recorded) familyIds.set(family, { file, familyId: recorded });
      continue;
    }
    try {
      familyIds.set(family, { file, familyId: familyIdFromSecretKey(readFileSync(file), file) });
    } catch (err) {
      if (err instanceof KeyFileError) problems.push(`family ${family}: ${err.message}. Re-create it with \`npm run keys -- family init ${family}\` on the key-generation host`);
      else throw err;
    }
  }

  const testnet = config.testnet ? readTestnet(config.testnet.dir, options.projectDir, problems) : undefined;
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
    const file = own ? inProject(options.projectDir, own) : join(__dirname, "..", EXIT_NOTICE_TEMPLATE);
    const field = `relays[${index}].exit.notice.file`;
    if (!existsSync(file)) return void problems.push(own ? `${field}: ${file} is missing` : `relay ${relay.name}: the Tor Project's exit notice ${file} is missing from this checkout`);
    const stat = statSync(file);
    const bytes = stat.isFile() && stat.size <= MAX_EXIT_NOTICE_BYTES ? readFileSync(file) : undefined;
    const problem = exitNoticeFileProblem({ isFile: stat.isFile(), size: stat.size, ...(bytes ? { bytes } : {}) });
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
      ...(limits.enabled ? { perSource: { orPort: limits.orPort, ...(notice ? { notice: limits.exitNotice } : {}), ipv6SourcePrefix: limits.ipv6SourcePrefix } } : {}),
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
  return { relays, warnings, collectorPublicKey, ...(testnet ? { testnet } : {}) };
}

/** The local testnet's network.json, as `npm run testnet` wrote it. */
function readTestnet(dir: string, projectDir: string, problems: string[]): TestnetNetwork | undefined {
  const file = join(inProject(projectDir, dir), "network.json");
  if (!existsSync(file)) {
    problems.push(`testnet.dir: ${file} is missing: start the private Tor network first with \`npm run testnet\``);
    return undefined;
  }
  const parsed = networkSchema.safeParse(JSON.parse(readFileSync(file, "utf8")));
  if (!parsed.success) problems.push(`testnet.dir: ${file} is not a testnet description; run \`npm run testnet -- down\` and \`npm run testnet\` again`);
  return parsed.success ? parsed.data : undefined;
}
