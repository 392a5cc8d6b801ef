/**
 * The shapes that keep a value data wherever it travels, shared by the stack
 * config's schema (lib/config/config.ts) and the step specs (lib/steps/steps.ts), which
 * check them again on the step's side. Pure.
 *
 * - A tool reads an argument that begins with "-" as an option, whatever
 *   argument vector carries it (mmdebstrap takes a release "--setup-hook"
 *   as a hook, and the next argument as the shell command it runs). Names
 *   and paths therefore never begin with "-".
 * - Line-oriented readers (the kernel's command line, tor's torrc, unbound,
 *   the relay's boot scripts) split at bytes the config's own checks never
 *   see: the kernel takes byte 0xA0 (inside U+00A0 and many other UTF-8
 *   characters) for a space. What reaches them is printable ASCII.
 */
import { posix } from "node:path";

/**
 * A relay's name: its Pulumi resource name, its key-store directory, its name
 * at the key broker and in every file and label that carries it. The broker
 * and its agent (Go) get this same pattern as data (lib/image/broker-files.ts).
 */
export const RELAY_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const RELAY_NAME_MESSAGE = "must be lower-case letters, digits and dashes, starting with a letter or digit, at most 63";

/** A Debian suite or an Alpine branch (bookworm, v3.23): what mmdebstrap and alpine-make-rootfs take. */
export const RELEASE = /^[a-z0-9][a-z0-9.-]*$/;

/**
 * A package name (Debian policy 5.6.1: two or more of a-z 0-9 + . -, beginning
 * with a letter or digit), and not ending in "-", which apt reads as "remove".
 */
export const PACKAGE = /^[a-z0-9][a-z0-9+.-]*[a-z0-9+.]$/;

/** A QEMU/Proxmox vCPU model (x86-64-v2-AES, EPYC-v4). */
export const CPU_MODEL = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Space to tilde: every character a line-oriented reader takes for itself and nothing else. */
export const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/** Printable ASCII lines, each ending in a newline: a rendered file for a line-oriented reader. */
export const PRINTABLE_ASCII_LINES = /^([\x20-\x7e]*\n)*$/;

/** The first character outside printable ASCII, as "U+00A0 at character 9"; none when all are printable ASCII. */
export function firstNonAscii(value: string): string | undefined {
  let at = 0;
  for (const char of value) {
    at += 1;
    const code = char.codePointAt(0)!;
    if (code < 0x20 || code > 0x7e) return `U+${code.toString(16).toUpperCase().padStart(4, "0")} at character ${at}`;
  }
  return undefined;
}

/**
 * Whether a path would reach a tool as an option. Paths are handed over
 * relative to the project (join(".", path), which normalises "./-x" to "-x"),
 * so the normalised path is judged, not the text as written.
 */
export function pathLooksLikeOption(path: string): boolean {
  return posix.normalize(path).startsWith("-");
}

export const PATH_OPTION_MESSAGE =
  'must not begin with "-" (./-x counts: it is handed over as -x): a tool would read it as an option; name such a file by its absolute path';

/** Every string in `raw` (a JSON-like value), with its path as formatConfigPath takes it. */
export function stringsIn(raw: unknown, path: (string | number)[] = []): { path: (string | number)[]; value: string }[] {
  if (typeof raw === "string") return [{ path, value: raw }];
  if (Array.isArray(raw)) return raw.flatMap((item, i) => stringsIn(item, [...path, i]));
  if (raw && typeof raw === "object") return Object.entries(raw).flatMap(([key, value]) => stringsIn(value, [...path, key]));
  return [];
}
