/**
 * Reading a file that enters an image (or signs one) only when it is what
 * its path says: a regular file, not a symbolic link (a link in a key store
 * would ship whatever it points to), inside the directory it belongs to, and,
 * for a secret, private to its owner (OpenSSH's own rule for private keys:
 * no group or other permission bits). I/O: lstat, realpath and read.
 */
import { lstatSync, readFileSync, readlinkSync, realpathSync } from "node:fs";
import { isAbsolute, relative } from "node:path";

export type GuardedRead = { bytes: Buffer } | { problem: string; missing: boolean };

/**
 * Reads `file`, which must lie in `root` (its key directory, or the
 * directory the config names it in). Returns the problem instead of
 * throwing; `missing` tells a file that is not there from a wrong one.
 */
export function readGuardedFile(file: string, options: { root: string; secret: boolean }): GuardedRead {
  let stat;
  try {
    stat = lstatSync(file);
  } catch {
    return { problem: "is missing", missing: true };
  }
  if (stat.isSymbolicLink()) {
    let pointsTo = "";
    try {
      pointsTo = ` (to ${readlinkSync(file)})`;
    } catch {
      // A link that cannot be read is refused all the same.
    }
    return {
      problem: `is a symbolic link${pointsTo}: a file that enters an image must be the file itself, in its own directory, or the link would ship whatever it points to. Put the real file there, if it really is this one`,
      missing: false,
    };
  }
  if (!stat.isFile()) return { problem: "is not a regular file", missing: false };
  // The file is no link; a link among its parent directories could still lead it out of its root.
  const where = relative(realpathSync(options.root), realpathSync(file));
  if (where.startsWith("..") || isAbsolute(where)) {
    return { problem: `lies outside ${options.root} once its directories' links are followed: a file that enters an image must be in its own directory`, missing: false };
  }
  if (options.secret && (stat.mode & 0o077) !== 0) {
    return {
      problem: `is secret, but others may read or write it (mode ${(stat.mode & 0o777).toString(8).padStart(4, "0")}): make it private to its owner (chmod 600), and ask who may have read it`,
      missing: false,
    };
  }
  return { bytes: readFileSync(file) };
}
