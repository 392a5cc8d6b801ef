/**
 * What a Prometheus server needs to watch the fleet: the relays it scrapes
 * (each with its name, nickname, fingerprint, node and role as labels), a
 * configuration that scrapes them, and alert rules over the series tor's
 * MetricsPort exports. Pure: the files as text, written by the
 * write-monitoring step (cli/steps/monitoring.ts). Every file is JSON,
 * which YAML (and so Prometheus) reads as it is: values are serialised,
 * never pasted into YAML text.
 */
import { z } from "zod";
import { addressOf, canonicalAddress, parseAddress } from "../tor/addresses";
import type { RelayConfig } from "../config/config";
import { parseMetricsSource } from "../tor/tor-values";
import { RELAY_NAME } from "../core/plain-values";

/** Where the files go: artifacts/monitoring/<stack>/, these names. */
export const MONITORING_FILES = { config: "prometheus.yml", targets: "targets.json", rules: "rules.yml" } as const;

/** Pulumi's stack names: letters, digits, -, _ and . (so a job name and a PromQL string need no escaping). */
const STACK = /^[A-Za-z0-9_.-]{1,100}$/;

/** One relay as Prometheus scrapes it. */
const monitoringTargetSchema = z
  .object({
    relay: z.string().regex(RELAY_NAME),
    nickname: z.string().regex(/^[A-Za-z0-9]{1,19}$/),
    fingerprint: z.string().regex(/^[0-9A-F]{40}$/),
    node: z.string().regex(/^[A-Za-z0-9.-]{1,253}$/),
    exit: z.boolean(),
    /** The address of the relay's MetricsPort the scraper reaches: IPv4, or IPv6 when only IPv6 sources may scrape. */
    host: z.string().refine((value) => parseAddress(value) !== undefined, "must be an IP address"),
    port: z.number().int().min(1).max(65535),
  })
  .strict();
export type MonitoringTarget = z.infer<typeof monitoringTargetSchema>;

export const monitoringSpecSchema = z
  .object({
    stack: z.string().regex(STACK, "must be a Pulumi stack name"),
    targets: z.array(monitoringTargetSchema),
  })
  .strict();
export type MonitoringSpec = z.infer<typeof monitoringSpecSchema>;

/**
 * The relays with a MetricsPort, one target each: on the relay's IPv4
 * address when an IPv4 source may scrape it, else on its IPv6 address (one
 * target per relay, so that every alert fires once per relay).
 */
export function monitoringTargets(relays: { config: RelayConfig; identity: { rsaFingerprint: string } }[]): MonitoringTarget[] {
  return relays.flatMap(({ config, identity }) => {
    if (!config.metrics) return [];
    const families = config.metrics.allowFrom.map((source) => {
      const parsed = parseMetricsSource(source);
      return "source" in parsed ? parsed.source.family : undefined;
    });
    const address = families.includes(4) ? config.ipv4.address : config.ipv6?.address;
    if (!address) return [];
    return [
      {
        relay: config.name,
        nickname: config.nickname,
        fingerprint: identity.rsaFingerprint.toUpperCase(),
        node: config.node,
        exit: config.exit.enabled,
        host: canonicalAddress(parseAddress(addressOf(address))!),
        port: config.metrics.port,
      },
    ];
  });
}

/** The scrape job of a stack; the rules select its series by it. */
export function prometheusJob(stack: string): string {
  if (!STACK.test(stack)) throw new Error(`"${stack}" is not a Pulumi stack name`);
  return `diskless-relays-${stack}`;
}

const header = (stack: string, what: string) =>
  `# ${what} for the relays of stack ${stack}, written by diskless-relays on every pulumi up; edit the stack config, not this file.\n`;

/** Prometheus's file_sd format: one group per relay, its labels with it. Prometheus re-reads the file when it changes. */
export function renderScrapeTargets(spec: MonitoringSpec): string {
  const { targets } = monitoringSpecSchema.parse(spec);
  const groups = targets.map((target) => ({
    targets: [parseAddress(target.host)!.family === 6 ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`],
    labels: { relay: target.relay, nickname: target.nickname, fingerprint: target.fingerprint, node: target.node, exit: String(target.exit) },
  }));
  return JSON.stringify(groups, null, 2) + "\n";
}

/**
 * A whole Prometheus configuration: the stack's scrape job, reading its
 * targets from targets.json, and its alert rules (paths beside this file,
 * as Prometheus resolves them). Run it as it is, or copy the job and the
 * rule file into your own server's configuration.
 */
export function renderPrometheusConfig(spec: MonitoringSpec): string {
  const { stack } = monitoringSpecSchema.parse(spec);
  const config = {
    global: { scrape_interval: "60s", evaluation_interval: "60s" },
    rule_files: [MONITORING_FILES.rules],
    scrape_configs: [
      {
        job_name: prometheusJob(stack),
        metrics_path: "/metrics",
        scheme: "http",
        file_sd_configs: [{ files: [MONITORING_FILES.targets] }],
      },
    ],
  };
  return header(stack, "Prometheus configuration") + JSON.stringify(config, null, 2) + "\n";
}

/**
 * The series of tor's MetricsPort the rules read (tor 0.4.9,
 * src/feature/relay/relay_metrics.c). test/unit/metrics-scrape.test.ts checks
 * each against a real tor's scrape.
 */
export const TOR_SERIES = {
  /** Only with OfflineMasterKey 1, which every relay here runs with. */
  signingCertExpiry: "tor_relay_signing_cert_expiry_timestamp",
  dnsQueries: "tor_relay_exit_dns_query_total",
  /** Labelled reason= success, format, serverfailed, notexist, notimpl, refused, truncated, unknown, tor_timeout, shutdown, cancel, nodata. */
  dnsErrors: "tor_relay_exit_dns_error_total",
  /** Labelled type= tap, fast, ntor, ntor_v3 and action= processed, dropped. */
  onionskins: "tor_relay_load_onionskins_total",
  /** Labelled type= a consensus flag; 1 when this relay's entry in the consensus has it, 0 otherwise (also when it is not in it). */
  flags: "tor_relay_flag",
} as const;

/** DNS errors (reason=) that say the exit's resolver is failing its users, rather than that a name does not exist (notexist, nodata). */
export const RESOLVER_FAILURE_REASONS = ["serverfailed", "refused", "format", "notimpl", "truncated", "unknown"] as const;
/** The DNS error (reason=) of a query tor gave up waiting for. */
export const DNS_TIMEOUT_REASON = "tor_timeout";
/** The consensus flags (type=) a healthy relay keeps once it has them (Authority is not ours, Sybil is not wanted). */
export const KEPT_FLAGS = ["Running", "Fast", "Stable", "Guard", "Exit", "HSDir", "V2Dir"] as const;

export interface AlertRule {
  alert: string;
  expr: string;
  /** How long the condition must hold; none: at once. */
  for?: string;
  labels: { severity: "warning" | "critical" };
  annotations: { summary: string; description: string };
}

/** The alert rules of a stack, as data; rules.yml is this, serialised. */
export function alertRules(stack: string): AlertRule[] {
  // PromQL string literals take JSON's escapes; the job name needs none, but is quoted as data all the same.
  const job = `job=${JSON.stringify(prometheusJob(stack))}`;
  const exit = `${job},exit="true"`;
  const who = "{{ $labels.nickname }} ({{ $labels.relay }} on {{ $labels.node }}, {{ $labels.fingerprint }})";
  const expiry = `${TOR_SERIES.signingCertExpiry}{${job}} - time()`;
  return [
    {
      alert: "TorRelayDown",
      expr: `up{${job}} == 0`,
      for: "5m",
      labels: { severity: "critical" },
      annotations: { summary: `${who} does not answer on its MetricsPort`, description: "Prometheus has not scraped the relay for 5 minutes: its VM, tor or the network to it is down, or its MetricsPortPolicy does not accept this Prometheus server." },
    },
    {
      alert: "TorCertificateExpiryUnder15Days",
      expr: `${expiry} < 15 * 86400`,
      for: "10m",
      labels: { severity: "warning" },
      annotations: { summary: `${who}: its signing certificate expires in {{ $value | humanizeDuration }}`, description: "Renew it on the key-generation host (npm run keys -- renew) and redeploy with pulumi up." },
    },
    {
      alert: "TorCertificateExpiryUnder1Day",
      expr: `${expiry} < 86400`,
      for: "5m",
      labels: { severity: "critical" },
      annotations: { summary: `${who}: its signing certificate expires in {{ $value | humanizeDuration }}`, description: "With an offline master key tor cannot renew it: once it expires the relay drops out of the network. Renew it now (npm run keys -- renew) and redeploy." },
    },
    {
      alert: "TorExitDNSTimeouts",
      expr: `sum without (reason) (rate(${TOR_SERIES.dnsErrors}{${exit},reason="${DNS_TIMEOUT_REASON}"}[15m])) / rate(${TOR_SERIES.dnsQueries}{${exit}}[15m]) > 0.01`,
      for: "15m",
      labels: { severity: "warning" },
      annotations: { summary: `${who}: {{ $value | humanizePercentage }} of its DNS queries time out`, description: "The exit's resolver (unbound on the relay) does not answer in time: its users' streams fail. Check its upstreams (relays[].nameservers) and the exit's network." },
    },
    {
      alert: "TorExitDNSErrors",
      expr: `sum without (reason) (rate(${TOR_SERIES.dnsErrors}{${exit},reason=~"${RESOLVER_FAILURE_REASONS.join("|")}"}[15m])) / rate(${TOR_SERIES.dnsQueries}{${exit}}[15m]) > 0.05`,
      for: "15m",
      labels: { severity: "warning" },
      annotations: { summary: `${who}: {{ $value | humanizePercentage }} of its DNS queries fail`, description: "The exit's resolver answers with server failures, refusals or malformed replies (names that do not exist are not counted): its users' streams fail." },
    },
    {
      alert: "TorRelayOnionskinsDropped",
      expr: `sum without (type) (increase(${TOR_SERIES.onionskins}{${job},action="dropped"}[30m])) > 0`,
      labels: { severity: "warning" },
      annotations: { summary: `${who} dropped {{ $value | humanize }} onionskins in 30 minutes`, description: "The relay could not answer circuit handshakes in time: it is overloaded (CPU), and tor reports it as overloaded in its descriptor." },
    },
    {
      alert: "TorRelayFlagLost",
      expr: `${TOR_SERIES.flags}{${job},type=~"${KEPT_FLAGS.join("|")}"} == 0 and max_over_time(${TOR_SERIES.flags}{${job},type=~"${KEPT_FLAGS.join("|")}"}[1d]) == 1`,
      for: "1h",
      labels: { severity: "warning" },
      annotations: { summary: `${who} lost its {{ $labels.type }} flag`, description: "The relay had the flag in a consensus of the last day and has not had it for an hour (a relay missing from the consensus has lost them all)." },
    },
  ];
}

/** rules.yml: the stack's one rule group. */
export function renderAlertRules(spec: MonitoringSpec): string {
  const { stack } = monitoringSpecSchema.parse(spec);
  return header(stack, "Prometheus alert rules") + JSON.stringify({ groups: [{ name: prometheusJob(stack), rules: alertRules(stack) }] }, null, 2) + "\n";
}
