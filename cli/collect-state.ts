/**
 * Collects a running relay's onion keys and tor state over SSH, before its
 * image is rebuilt. Run by the StateCollection component:
 *   tsx cli/collect-state.ts --relay NAME --host H --port P --user U --key FILE
 *     --host-key FILE.pub --out DIR [--connect-timeout S] [--allow-fresh-onion-keys]
 * The relay's host key is pinned (it was made with the relay's identity), so
 * there is no trust on first use. Prints a summary only: never key bytes.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { validateCollectedState } from "../lib/collected-state";

const { values } = parseArgs({
  options: {
    relay: { type: "string" },
    host: { type: "string" },
    port: { type: "string", default: "22" },
    user: { type: "string", default: "root" },
    key: { type: "string" },
    "host-key": { type: "string" },
    out: { type: "string" },
    "connect-timeout": { type: "string", default: "15" },
    "allow-fresh-onion-keys": { type: "boolean", default: false },
  },
});

function fail(message: string): never {
  console.error(`relay ${values.relay}: ${message}`);
  process.exit(1);
}

for (const required of ["relay", "host", "key", "host-key", "out"] as const) {
  if (!values[required]) fail(`collect-state needs --${required}`);
}
const out = values.out!;
mkdirSync(dirname(out), { recursive: true, mode: 0o700 });
const work = mkdtempSync(`${out}.tmp-`);
chmodSync(work, 0o700);

try {
  const hostKey = readFileSync(values["host-key"]!, "utf8").trim().split(/\s+/).slice(0, 2).join(" ");
  const hostPattern = values.port === "22" ? values.host! : `[${values.host}]:${values.port}`;
  writeFileSync(join(work, "known_hosts"), `${hostPattern} ${hostKey}\n`, { mode: 0o600 });
  const ssh = spawnSync(
    "ssh",
    [
      "-o", "BatchMode=yes",
      "-o", "StrictHostKeyChecking=yes",
      "-o", `UserKnownHostsFile=${join(work, "known_hosts")}`,
      "-o", "GlobalKnownHostsFile=/dev/null",
      "-o", "IdentitiesOnly=yes",
      "-o", `ConnectTimeout=${values["connect-timeout"]}`,
      "-o", "ServerAliveInterval=5",
      "-o", "ServerAliveCountMax=3",
      "-o", "LogLevel=ERROR",
      "-i", values.key!,
      "-p", values.port!,
      `${values.user}@${values.host}`,
    ],
    { encoding: "buffer", maxBuffer: 64 * 1024 * 1024, stdio: ["ignore", "pipe", "pipe"] },
  );
  if (ssh.status !== 0 || ssh.stdout.length === 0) {
    const reason = ssh.stderr.toString("utf8").trim() || `ssh exited with ${ssh.status}`;
    if (values["allow-fresh-onion-keys"]) {
      console.error(
        `WARNING relay ${values.relay}: could not collect onion keys and state from ${values.host}:${values.port} (${reason}).\n` +
          `WARNING allowFreshOnionKeys is set: the new image gets FRESH onion keys. The relay will fail circuits for hours\n` +
          `WARNING until clients fetch a consensus with its new keys, and it loses its bandwidth history.`,
      );
      rmSync(out, { recursive: true, force: true });
      mkdirSync(out, { mode: 0o700 });
      console.log(`relay ${values.relay}: nothing collected (allowFreshOnionKeys)`);
      process.exit(0);
    }
    fail(
      `cannot collect onion keys and state over SSH from ${values.host}:${values.port}: ${reason}\n` +
        `Nothing was changed and the running relay was left alone. Make its SSH server reachable and run again; ` +
        `to redeploy anyway with fresh onion keys (circuits fail for hours), set allowFreshOnionKeys: true on this relay.`,
    );
  }
  const extracted = join(work, "collected");
  mkdirSync(extracted, { mode: 0o700 });
  const tar = spawnSync("tar", ["-x", "--no-same-owner", "-C", extracted], { input: ssh.stdout });
  if (tar.status !== 0) fail(`the relay's state export is not a tar archive: ${tar.stderr.toString().trim()}`);
  const summary = (() => {
    try {
      return validateCollectedState(extracted);
    } catch (err) {
      return fail((err as Error).message);
    }
  })();
  rmSync(out, { recursive: true, force: true });
  renameSync(extracted, out);
  console.log(
    `relay ${values.relay}: collected ${summary.files.join(", ")}` +
      (summary.lastRotatedOnionKey ? ` (onion key last rotated ${summary.lastRotatedOnionKey})` : ""),
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
