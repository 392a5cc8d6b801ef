/**
 * Where a relay's own files sit in its image (the overlay on the shared
 * base), with their modes: defined once here and handed to the build as
 * data. Directories the base already has keep the base's mode (0755): the
 * kernel applies the overlay's mode to /etc when it unpacks it, so a private
 * /etc would lock tor, after it drops root, out of /etc/resolv.conf.
 * Pure: paths and modes only.
 */

/** The relay's SSH host key, made with its identity on the key-generation host. */
export const SSH_HOST_KEY_FILES = ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"] as const;

/** The build's copies of tor's keys and directory documents; relay-boot moves them into tor's DataDirectory. */
export const OVERLAY_KEYS_DIR = "etc/relay/keys";
export const OVERLAY_DIRCACHE_DIR = "etc/relay/dircache";

export const OVERLAY_DIRS: readonly { path: string; mode: number }[] = [
  { path: "etc", mode: 0o755 },
  { path: "etc/tor", mode: 0o755 },
  { path: "etc/relay", mode: 0o755 },
  { path: OVERLAY_KEYS_DIR, mode: 0o700 },
  { path: "etc/ssh", mode: 0o755 },
  { path: OVERLAY_DIRCACHE_DIR, mode: 0o755 },
  /** An exit's notice, served by an unprivileged busybox httpd: world-readable. */
  { path: "etc/relay/exit-notice", mode: 0o755 },
  { path: "usr", mode: 0o755 },
  { path: "usr/local", mode: 0o755 },
  { path: "usr/local/sbin", mode: 0o755 },
];

export const OVERLAY_FILES = {
  torrc: { path: "etc/tor/torrc", mode: 0o644 },
  networkEnv: { path: "etc/relay/network.env", mode: 0o644 },
  /** Which image this is (digest and nickname): what the relay reports when asked. */
  imageLabel: { path: "etc/relay/image", mode: 0o644 },
  authorizedKeys: { path: "etc/relay/authorized_keys", mode: 0o600 },
  /** The files the state export hands over, one per line, relative to tor's DataDirectory. */
  exportList: { path: "etc/relay/export.list", mode: 0o644 },
  state: { path: "etc/relay/state", mode: 0o600 },
  /** An exit's resolver configuration: readable by the unbound user. */
  resolverConf: { path: "etc/relay/unbound.conf", mode: 0o644 },
  /** An exit's notice page (relay-notice serves the directory as user nobody). */
  exitNotice: { path: "etc/relay/exit-notice/index.html", mode: 0o644 },
  /** The per-source connection limits (nft -f), the kernel settings ("key value") and tor's open-file limit: relay-hardening applies them. */
  nftRuleset: { path: "etc/relay/nftables.conf", mode: 0o644 },
  sysctls: { path: "etc/relay/sysctl.conf", mode: 0o644 },
  openFiles: { path: "etc/relay/open-files", mode: 0o644 },
  /** Broker mode: the agent that fetches the keys into RAM, its configuration (public facts) and the broker's CA. */
  agent: { path: "usr/local/sbin/relay-agent", mode: 0o755 },
  agentConfig: { path: "etc/relay/broker.json", mode: 0o644 },
  brokerCa: { path: "etc/relay/broker-ca.pem", mode: 0o644 },
  /** attestation "none": the image's single-use boot token, for root only. */
  bootToken: { path: "etc/relay/boot-token", mode: 0o600 },
} as const;

/** Directory documents carried from the running relay land here and move into tor's DataDirectory at boot. */
export const overlayDirectoryCachePath = (file: string) => `${OVERLAY_DIRCACHE_DIR}/${file}`;
export const DIRECTORY_CACHE_FILE_MODE = 0o644;

/** Key files land in etc/relay/keys and are moved into tor's KeyDirectory at boot. */
export const overlayKeyPath = (file: string) => `${OVERLAY_KEYS_DIR}/${file}`;
export const KEY_FILE_MODE = 0o600;
export const overlaySshPath = (file: (typeof SSH_HOST_KEY_FILES)[number]) => `etc/ssh/${file}`;
export const sshFileMode = (file: string) => (file.endsWith(".pub") ? 0o644 : 0o600);

/** The public metadata file at the root of every relay ISO: which relay and image it holds. */
export const ISO_LABEL_FILE = "relay.json";

/** Content-addressed: Proxmox cannot see a content change, and the onion keys inside change between builds of one recipe. */
export function isoFileName(nickname: string, imageDigest: string, isoSha256: string): string {
  return `relay-${nickname}-${imageDigest.slice(0, 12)}-${isoSha256.slice(0, 8)}.iso`;
}

/** All ISOs of one relay start with this; pruning works on it. */
export const isoPrefix = (nickname: string) => `relay-${nickname}-`;

/**
 * The kernel modules a relay loads; everything else a relay VM uses is built
 * into the kernel. At boot (relay-boot): the virtio PCI transport, NIC,
 * console and RNG, and the ACPI power button with the event device busybox
 * acpid reads it from (relay-acpid). For the connection limits
 * (relay-hardening): conntrack and the nftables expressions they use (ct,
 * limit, ct count, objref for named counters, reject_inet for the stale
 * peer's reset; sets, counters and payload matches are part of nf_tables).
 * The base's RAM root keeps exactly these and their dependencies
 * (images/rootfs/pack-initrd.sh, handed them by the build-base step) and
 * lists them under KERNEL_MODULES_DIR, one per line, for the scripts that load them.
 */
export const KERNEL_MODULES = {
  boot: ["virtio_pci", "virtio_net", "virtio_console", "virtio_rng", "button", "evdev"],
  hardening: ["nf_conntrack", "nf_tables", "nft_ct", "nft_limit", "nft_connlimit", "nft_objref", "nft_reject_inet"],
} as const;
/** In the guest: the lists, as files boot and hardening. */
export const KERNEL_MODULES_DIR = "/usr/lib/relay/kernel-modules";

