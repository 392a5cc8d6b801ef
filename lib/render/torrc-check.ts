/**
 * tor is the judge of every torrc: each rendered torrc is run through the
 * build host's `tor --verify-config` before anything is registered, and a
 * refusal is reported against the config field behind the line tor names.
 * I/O: runs tor, writes each torrc to a private temporary file.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TorrcLine } from "./torrc";

export interface TorrcToCheck {
  /** Position in relays[], for the error's path. */
  index: number;
  relay: string;
  lines: TorrcLine[];
}

/** tor's warnings and errors for a refused config, without the generic closing line. */
function refusalMessages(output: string): string[] {
  return output
    .split("\n")
    .map((line) => /\[(?:warn|err)\] (.*)$/.exec(line)?.[1]?.trim())
    .filter((message): message is string => !!message && !/^Reading config failed/.test(message));
}

/**
 * The config fields tor's messages point at: a line whose value tor quotes
 * (e.g. "Malformed policy 'accept *:99999'"), else the lines of the option tor
 * names first (e.g. "RelayBandwidthBurst must be at least … RelayBandwidthRate").
 */
export function fieldsNamedBy(messages: string[], lines: TorrcLine[]): string[] {
  const text = messages.join("\n");
  const lower = text.toLowerCase();
  const withField = lines.filter((line): line is Required<TorrcLine> => line.field !== undefined);
  const byValue = withField.filter((line) => {
    const value = line.text.slice(line.text.indexOf(" ") + 1);
    return value.length > 2 && text.includes(value);
  });
  if (byValue.length > 0) return [...new Set(byValue.map((line) => line.field))];
  const optionAt = (line: TorrcLine) => lower.search(new RegExp(`\\b${line.text.split(" ")[0]!.toLowerCase()}\\b`));
  const named = withField.filter((line) => optionAt(line) >= 0);
  const first = Math.min(...named.map(optionAt));
  return [...new Set(named.filter((line) => optionAt(line) === first).map((line) => line.field))];
}

/** Whether a user exists on this host (tor checks its User option against the host's users). */
function hostHasUser(user: string): boolean {
  return spawnSync("getent", ["passwd", user], { stdio: "ignore" }).status === 0;
}

/**
 * Runs `tor --verify-config` on each torrc; returns one problem per refused
 * relay, naming `relays[i].<field>`, the relay and tor's own words.
 */
export function verifyTorrcsWithTor(torrcs: TorrcToCheck[], torBinary = "tor"): string[] {
  const dir = mkdtempSync(join(tmpdir(), "diskless-relays-torrc-"));
  try {
    const problems: string[] = [];
    for (const torrc of torrcs) {
      // tor resolves its User option on the host that verifies. The user is
      // fixed per image flavour (not operator input); when the build host
      // lacks it (alpine's "tor" on a Debian host), that one line is left out.
      const lines = torrc.lines.filter((line) => !line.text.startsWith("User ") || hostHasUser(line.text.slice(5)));
      const file = join(dir, `${torrc.index}.torrc`);
      writeFileSync(file, lines.map((line) => line.text).join("\n") + "\n", { mode: 0o600 });
      const result = spawnSync(torBinary, ["--verify-config", "-f", file, "--defaults-torrc", "/dev/null", "--hush"], { encoding: "utf8" });
      if (result.error) {
        throw new Error(`cannot run ${torBinary} to check the relays' torrc (${result.error.message}); install tor on this build host with the set-up command`);
      }
      if (result.status === 0) continue;
      const messages = refusalMessages(`${result.stdout}\n${result.stderr}`);
      const fields = fieldsNamedBy(messages, lines);
      const where = fields.length > 0 ? fields.map((field) => `relays[${torrc.index}].${field}`).join(", ") : `relays[${torrc.index}]`;
      problems.push(`${where} (relay ${torrc.relay}): tor ${torVersion(torBinary)} refuses this relay's torrc: ${messages.join(" ") || `exit status ${result.status}`}`);
    }
    return problems;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let cachedVersion: string | undefined;
function torVersion(torBinary: string): string {
  cachedVersion ??= /Tor version (\S+?)\.?$/m.exec(spawnSync(torBinary, ["--version"], { encoding: "utf8" }).stdout ?? "")?.[1] ?? "";
  return cachedVersion;
}
