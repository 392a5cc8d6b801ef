/**
 * Every path a booted relay's own scripts use, by the name those scripts know
 * it by: defined here once. The base build writes them into the image as
 * GUEST_PATHS_FILE (NAME=/path lines, images/rootfs/install.sh), and every
 * script in images/rootfs/files sources that file first; no script writes a
 * path of this table itself (test/unit/guest-paths.test.ts).
 * The per-relay files come from OVERLAY_FILES, so the build puts each file
 * exactly where the guest looks for it.
 * Pure: paths only.
 */
import { KERNEL_MODULES_DIR, OVERLAY_DIRCACHE_DIR, OVERLAY_FILES, OVERLAY_KEYS_DIR, overlaySshPath } from "./image-layout";

/** Sourced by every guest script; the one path they all write out, which the test above checks against this. */
export const GUEST_PATHS_FILE = "/usr/lib/relay/paths.env";

/** tor's DataDirectory in every flavour's image: relay-boot moves the keys and state into it before tor starts. */
export const TOR_DATA_DIRECTORY = "/var/lib/tor";

const inGuest = (overlayPath: string) => `/${overlayPath}`;
const dirOf = (path: string) => path.slice(0, path.lastIndexOf("/"));

export const GUEST_PATHS = {
  RELAY_TORRC: inGuest(OVERLAY_FILES.torrc.path),
  RELAY_NETWORK_ENV: inGuest(OVERLAY_FILES.networkEnv.path),
  RELAY_IMAGE_LABEL: inGuest(OVERLAY_FILES.imageLabel.path),
  RELAY_AUTHORIZED_KEYS: inGuest(OVERLAY_FILES.authorizedKeys.path),
  RELAY_EXPORT_LIST: inGuest(OVERLAY_FILES.exportList.path),
  /** The build's copies of tor's keys, state and directory documents: moved into RELAY_TOR_DATA at boot, then removed. */
  RELAY_BUILD_KEYS: inGuest(OVERLAY_KEYS_DIR),
  RELAY_BUILD_STATE: inGuest(OVERLAY_FILES.state.path),
  RELAY_BUILD_DIRCACHE: inGuest(OVERLAY_DIRCACHE_DIR),
  RELAY_RESOLVER_CONF: inGuest(OVERLAY_FILES.resolverConf.path),
  RELAY_EXIT_NOTICE_PAGE: inGuest(OVERLAY_FILES.exitNotice.path),
  RELAY_EXIT_NOTICE_DIR: dirOf(inGuest(OVERLAY_FILES.exitNotice.path)),
  RELAY_NFT_RULESET: inGuest(OVERLAY_FILES.nftRuleset.path),
  RELAY_SYSCTLS: inGuest(OVERLAY_FILES.sysctls.path),
  RELAY_OPEN_FILES: inGuest(OVERLAY_FILES.openFiles.path),
  RELAY_AGENT: inGuest(OVERLAY_FILES.agent.path),
  RELAY_BROKER_CONFIG: inGuest(OVERLAY_FILES.agentConfig.path),
  /** Written by the base build (install.sh) from the flavour's tor user (lib/plan/fleet.ts TOR_RUNTIME). */
  RELAY_TOR_USER_FILE: "/etc/relay/tor-user",
  /** A file of the base (images/rootfs/files); relay-sshd hands sshd the two paths below. */
  RELAY_SSHD_CONFIG: "/etc/relay/sshd_config",
  RELAY_SSH_HOST_KEY: inGuest(overlaySshPath("ssh_host_ed25519_key")),
  RELAY_TOR_DATA: TOR_DATA_DIRECTORY,
  /** In RAM, made at boot: tor's and the key agent's logs, which health and the console show. */
  RELAY_RUN: "/run/relay",
  RELAY_TOR_LOG: "/run/relay/tor.log",
  RELAY_AGENT_LOG: "/run/relay/agent.log",
  RELAY_KERNEL_MODULES: KERNEL_MODULES_DIR,
} as const;

export type GuestPathName = keyof typeof GUEST_PATHS;

/** Paths go into the file unquoted: only characters no shell treats specially. */
const PLAIN_PATH = /^\/[A-Za-z0-9._/-]+$/;

/** GUEST_PATHS_FILE's text: NAME=/path lines, sorted. */
export function renderGuestPathsEnv(paths: Record<string, string> = GUEST_PATHS): string {
  return (
    Object.entries(paths)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, path]) => {
        if (!PLAIN_PATH.test(path)) throw new Error(`guest path ${name}: '${path}' must be absolute and plain (letters, digits, . _ - /)`);
        return `${name}=${path}`;
      })
      .join("\n") + "\n"
  );
}
