/**
 * How a message shows a command for the operator to copy into a shell: each
 * value in it (a path, a relay name, a stack) is quoted for POSIX shells, so
 * that whatever the value holds reaches the command as one argument and never
 * as shell syntax (`keys/x; touch y #` stays a file name). Pure.
 */

/** A word no POSIX shell changes when it is left unquoted: shown as it is, so that ordinary hints stay readable. */
const PLAIN_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** `value` as one shell word: itself when nothing in it is special to a shell, else single-quoted. */
export function shellQuote(value: string): string {
  if (PLAIN_WORD.test(value)) return value;
  // Inside single quotes only ' itself is special: end the quote, add an escaped ', open it again.
  return `'${value.replaceAll("'", "'\\''")}'`;
}
