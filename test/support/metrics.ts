/**
 * Scraping a MetricsPort as Prometheus does: an HTTP GET of /metrics, the
 * answer read as Prometheus's text exposition format (version 0.0.4:
 * `name{label="value",…} value [timestamp]`, with \\, \" and \n escaped in
 * label values; # lines are comments, HELP and TYPE). For any tor: one on
 * this host, or a relay VM reached through its network.
 */
import { spawn } from "node:child_process";
import { request } from "node:http";

export interface Sample {
  labels: Record<string, string>;
  value: number;
}

export interface ScrapeOptions {
  /** The address the request comes from (what MetricsPortPolicy judges). */
  localAddress?: string;
  timeoutMs?: number;
}

/** The body of GET url; rejects on a refused or closed connection, a timeout, or a status other than 200. */
export function fetchMetricsText(url: string, options: ScrapeOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: "GET", ...(options.localAddress ? { localAddress: options.localAddress } : {}), timeout: options.timeoutMs ?? 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("error", reject);
      res.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        if (res.statusCode !== 200) reject(new Error(`GET ${url}: HTTP ${res.statusCode}: ${body.slice(0, 200)}`));
        else resolve(body);
      });
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url}: no answer within ${options.timeoutMs ?? 10_000} ms`)));
    req.on("error", reject);
    req.end();
  });
}

/**
 * A GET from inside a network namespace (the testnet host's, where
 * Prometheus would run), by node itself: unlike busybox wget, it says why a
 * connection failed (refused, timed out) instead of crashing. The script is
 * constant; the URL travels as an argument.
 */
const GET_SCRIPT = `
const url = process.argv[1];
const req = require("node:http").get(url, { timeout: Number(process.argv[2]) }, (res) => {
  if (res.statusCode !== 200) { process.stderr.write("HTTP " + res.statusCode); process.exitCode = 1; }
  res.pipe(process.stdout);
});
req.on("timeout", () => req.destroy(new Error("no answer within " + process.argv[2] + " ms")));
req.on("error", (error) => { process.stderr.write(error.code ? error.code + ": " + error.message : error.message); process.exitCode = 1; });
`;

export function fetchMetricsTextInNetns(netns: string, url: string, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("ip", ["netns", "exec", netns, process.execPath, "-e", GET_SCRIPT, url, String(timeoutMs)], { stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
    child.on("error", reject);
    child.on("close", (status, signal) => {
      if (status === 0) resolve(Buffer.concat(out).toString("utf8"));
      else reject(new Error(`GET ${url} in network namespace ${netns}: ${Buffer.concat(err).toString("utf8").trim() || `exit ${status ?? signal}`}`));
    });
  });
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;

function parseValue(text: string, line: string): number {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  const value = Number(text);
  if (text === "" || Number.isNaN(value)) throw new Error(`not a sample value: "${text}" in line: ${line}`);
  return value;
}

/** Reads the text format; throws naming the line it cannot read. */
export function parseMetricsText(text: string): Map<string, Sample[]> {
  const series = new Map<string, Sample[]>();
  for (const line of text.split("\n")) {
    if (line.trim() === "" || line.startsWith("#")) continue;
    const name = NAME.exec(line)?.[0];
    if (!name) throw new Error(`no metric name at the start of line: ${line}`);
    let at = name.length;
    const labels: Record<string, string> = {};
    if (line[at] === "{") {
      at++;
      while (line[at] !== "}") {
        const label = /^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"/.exec(line.slice(at));
        if (!label) throw new Error(`malformed label at column ${at} of line: ${line}`);
        at += label[0].length;
        let value = "";
        for (;;) {
          const char = line[at++];
          if (char === undefined) throw new Error(`unterminated label value in line: ${line}`);
          if (char === '"') break;
          if (char === "\\") {
            const escaped = line[at++];
            value += escaped === "n" ? "\n" : escaped;
          } else value += char;
        }
        labels[label[1]!] = value;
        const rest = /^\s*,?\s*/.exec(line.slice(at))![0];
        at += rest.length;
        if (at >= line.length) throw new Error(`unterminated label set in line: ${line}`);
      }
      at++;
    }
    const [valueText, timestamp, ...extra] = line.slice(at).trim().split(/\s+/);
    if (extra.length > 0 || (timestamp !== undefined && !/^-?\d+$/.test(timestamp))) throw new Error(`trailing text in line: ${line}`);
    const samples = series.get(name) ?? [];
    samples.push({ labels, value: parseValue(valueText ?? "", line) });
    series.set(name, samples);
  }
  return series;
}

/** One scrape: every series by name, each with its samples. */
export async function scrapeMetrics(url: string, options: ScrapeOptions = {}): Promise<Map<string, Sample[]>> {
  return parseMetricsText(await fetchMetricsText(url, options));
}
