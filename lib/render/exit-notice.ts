/**
 * The exit notice: the page an exit serves on port 80 of its addresses, so
 * that whoever looks up the address behind an abuse report learns it is a
 * Tor exit and whom to write to (ansible-relayor serves it by default on
 * exits). The page is the Tor Project's (tor's
 * contrib/operator-tools/tor-exit-notice.html, BSD-licensed like tor; the
 * copy in images/exit-notice/ is the one Debian's tor 0.4.9 package ships as
 * /usr/share/doc/tor/tor-exit-notice.html), or the operator's own file, with
 * its placeholders filled from the relay's config: every inserted value is
 * HTML-escaped. Pure: the caller reads the files (lib/plan/fleet.ts).
 *
 * Served by busybox httpd (images/rootfs/files/usr/local/sbin/relay-notice),
 * not by tor's DirPortFrontPage: a DirPort is deprecated for relays since tor
 * 0.4.6.5, and tor 0.4.9's DirPort still serves the directory protocol beside
 * the front page (tried here: /tor/server/authority answers 200 with the
 * relay's own descriptor), so port 80 would become a tor directory port,
 * gone whenever tor restarts.
 */

/** Where the Tor Project's notice lives in this repository. */
export const EXIT_NOTICE_TEMPLATE = "images/exit-notice/tor-exit-notice.html";
/**
 * An operator's notice may be at most this large (the Tor Project's is 32 KiB):
 * the image build gets its recipe, the page included, in one environment
 * variable (lib/steps/steps.ts), and Linux caps one at 128 KiB (MAX_ARG_STRLEN).
 */
export const MAX_EXIT_NOTICE_BYTES = 64 * 1024;

/** The template's placeholders, and what fills them. */
export const EXIT_NOTICE_PLACEHOLDERS = {
  /** In `<a href="mailto:FIXME_YOUR_EMAIL_ADDRESS">maintainer</a>`. */
  email: "FIXME_YOUR_EMAIL_ADDRESS",
  /** "traffic with an originating IP address of FIXME_DNS_NAME". */
  address: "FIXME_DNS_NAME",
} as const;

const HTML_ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Text made safe for HTML, in element content and in quoted attribute values alike. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => HTML_ESCAPES[char]!);
}

/**
 * The e-mail address in a ContactInfo (plain, or in the ContactInfo
 * Information Sharing Specification's `email:user[]example.net` form), if
 * it has one.
 */
export function contactEmail(contactInfo: string): string | undefined {
  const ciiss = /(?:^|\s)email:([^\s@[\]]+)\[\]([^\s[\]]+)/.exec(contactInfo);
  if (ciiss) return `${ciiss[1]}@${ciiss[2]}`;
  return /[^\s<>"'(),;:]+@[^\s<>"'(),;:]+\.[^\s<>"'(),;:]+/.exec(contactInfo)?.[0];
}

export interface NoticeValues {
  /** The relay's ContactInfo. */
  contactInfo: string;
  /** The relay's public addresses (IPv4, then IPv6). */
  addresses: string[];
}

/**
 * The page with its placeholders filled: the e-mail address (or, when the
 * ContactInfo has none, the whole ContactInfo) and the relay's addresses.
 * The Tor Project's page links to the maintainer by e-mail only; the whole
 * ContactInfo is added beside that link, so a contact without an address
 * still shows.
 */
export function renderExitNotice(template: string, values: NoticeValues): string {
  const email = contactEmail(values.contactInfo);
  const contact = escapeHtml(values.contactInfo);
  const link = `<a href="mailto:${EXIT_NOTICE_PLACEHOLDERS.email}">maintainer</a>`;
  const filledLink = email ? `<a href="mailto:${escapeHtml(email)}">maintainer</a> (${contact})` : `maintainer (${contact})`;
  return template
    .split(link)
    .join(filledLink)
    .split(EXIT_NOTICE_PLACEHOLDERS.email)
    .join(email ? escapeHtml(email) : contact)
    .split(EXIT_NOTICE_PLACEHOLDERS.address)
    .join(escapeHtml(values.addresses.join(" or ")));
}

/** Why an operator's notice file cannot be served, or undefined: a regular file, not too large, UTF-8. */
export function exitNoticeFileProblem(file: { isFile: boolean; size: number; bytes?: Buffer }): string | undefined {
  if (!file.isFile) return "is not a regular file";
  if (file.size === 0) return "is empty";
  if (file.size > MAX_EXIT_NOTICE_BYTES) return `is ${file.size} bytes; an exit notice may be at most ${MAX_EXIT_NOTICE_BYTES} bytes (it is carried in RAM by every image of the relay)`;
  if (file.bytes) {
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(file.bytes);
    } catch {
      return "is not UTF-8 text: the page must be UTF-8, as the Tor Project's notice declares itself";
    }
    // The page is served to anyone who asks: a key pasted into it, or a key file named by mistake, would be published.
    if (/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----|== (ed25519v1-secret|c25519v1|curve25519v1)/.test(text)) {
      return "holds a private key: the notice is served to anyone on port 80. Name the HTML page meant for the public";
    }
  }
  return undefined;
}
