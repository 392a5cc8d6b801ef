/**
 * Scraping a MetricsPort as Prometheus does: an HTTP GET of /metrics, the
 * answer read as Prometheus's text exposition format (version 0.0.4:
 * `name{label="value",…} value [timestamp]`, with \\, \" and \n escaped in
 * label values; # lines are comments, HELP and TYPE). For any tor: one on
 * this host, or a relay VM reached through its network.
 */
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
