/**
 * The exit notice (lib/render/exit-notice.ts): the page in this repository is the
 * one Debian's tor package ships, its placeholders are filled with the
 * relay's contact and addresses, every inserted value is HTML-escaped, and
 * an operator's own file is checked before it goes into an image.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initRelayKeys } from "../../lib/tor/key-store";
import { describe, expect, it } from "vitest";
import { contactEmail, escapeHtml, EXIT_NOTICE_PLACEHOLDERS, EXIT_NOTICE_TEMPLATE, exitNoticeFileProblem, MAX_EXIT_NOTICE_BYTES, renderExitNotice } from "../../lib/render/exit-notice";
import { repoRoot } from "../support/pulumi";

const template = readFileSync(join(repoRoot, EXIT_NOTICE_TEMPLATE), "utf8");
const DEBIAN_NOTICE = "/usr/share/doc/tor/tor-exit-notice.html";

describe("the exit notice", () => {
  it("is the Tor Project's page as this machine's tor package ships it, with the placeholders it fills", () => {
    expect(existsSync(DEBIAN_NOTICE), `${DEBIAN_NOTICE} comes with Debian's tor package`).toBe(true);
    expect(template).toBe(readFileSync(DEBIAN_NOTICE, "utf8"));
    expect(template).toContain(`<a href="mailto:${EXIT_NOTICE_PLACEHOLDERS.email}">maintainer</a>`);
    expect(template).toContain(EXIT_NOTICE_PLACEHOLDERS.address);
  });

  it("escapes the five characters that matter in HTML text and quoted attributes", () => {
    expect(escapeHtml(`<script>alert("x")</script> & 'y'`)).toBe("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;");
    expect(escapeHtml("plain text, é ü")).toBe("plain text, é ü");
  });

  it("finds the e-mail address in a plain ContactInfo and in the ContactInfo sharing specification's form", () => {
    expect(contactEmail("Jane Doe <abuse@example.net>")).toBe("abuse@example.net");
    expect(contactEmail("email:abuse[]example.net url:https://example.net ciissversion:2")).toBe("abuse@example.net");
    expect(contactEmail("https://example.net/contact")).toBeUndefined();
  });

  it("fills in the relay's contact and addresses, and nothing of the placeholders is left", () => {
    const page = renderExitNotice(template, { contactInfo: "Ops Team <abuse@example.net>", addresses: ["198.51.100.10", "2001:db8::10"] });
    expect(page).toContain('<a href="mailto:abuse@example.net">maintainer</a> (Ops Team &lt;abuse@example.net&gt;)');
    expect(page).toContain("originating IP address of\n198.51.100.10 or 2001:db8::10 should not");
    expect(page).not.toContain("FIXME_");
    expect(page).toContain("<h1>This is a Tor Exit Router</h1>");
  });

  it("inserts a hostile ContactInfo as text: no element, no attribute breaks out", () => {
    const contactInfo = `x@example.net"><script>alert(1)</script><a href='javascript:1'>`;
    const page = renderExitNotice(template, { contactInfo, addresses: ["198.51.100.10"] });
    expect(page).not.toContain("<script>alert");
    expect(page).not.toContain("href='javascript");
    expect(page.match(/<script/g)).toBeNull();
    expect(page).toContain("&lt;script&gt;alert(1)&lt;/script&gt;");
    // A ContactInfo without an e-mail address is shown as text where the link was.
    const noEmail = renderExitNotice(template, { contactInfo: "https://example.net/<b>", addresses: ["198.51.100.10"] });
    expect(noEmail).toContain("email the maintainer (https://example.net/&lt;b&gt;)");
    expect(noEmail).not.toContain("mailto:");
  });

  it("fills the same placeholders in an operator's own page", () => {
    const own = `<p>Write to <a href="mailto:${EXIT_NOTICE_PLACEHOLDERS.email}">${EXIT_NOTICE_PLACEHOLDERS.email}</a> about ${EXIT_NOTICE_PLACEHOLDERS.address}.</p>`;
    expect(renderExitNotice(own, { contactInfo: "a&b@example.net", addresses: ["198.51.100.10"] })).toBe(
      '<p>Write to <a href="mailto:a&amp;b@example.net">a&amp;b@example.net</a> about 198.51.100.10.</p>',
    );
  });

  it("takes an operator's file only when it is a regular, non-empty UTF-8 file of at most 64 KiB", () => {
    expect(exitNoticeFileProblem({ isFile: true, size: 5, bytes: Buffer.from("<p>x</p>") })).toBeUndefined();
    expect(exitNoticeFileProblem({ isFile: false, size: 4096 })).toBe("is not a regular file");
    expect(exitNoticeFileProblem({ isFile: true, size: 0, bytes: Buffer.alloc(0) })).toBe("is empty");
    expect(exitNoticeFileProblem({ isFile: true, size: MAX_EXIT_NOTICE_BYTES + 1 })).toMatch(/at most 65536 bytes/);
    expect(exitNoticeFileProblem({ isFile: true, size: 3, bytes: Buffer.from([0x3c, 0xff, 0x3e]) })).toMatch(/not UTF-8/);
  });

  it("refuses a page that holds a private key: an OpenSSH or PEM key, or one of tor's secret key files", () => {
    const dir = mkdtempSync(join(tmpdir(), "notice-keys-"));
    try {
      // The keys are made by the tools themselves, not written here.
      execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "ssh")]);
      execFileSync("openssl", ["genpkey", "-algorithm", "ed25519", "-out", join(dir, "pem")]);
      initRelayKeys(join(dir, "keys"), "notice", { nickname: "NoticeKeys" });
      const relayKeys = join(dir, "keys", "notice");
      for (const file of [join(dir, "ssh"), join(dir, "pem"), join(relayKeys, "secret_id_key"), join(relayKeys, "ed25519_signing_secret_key")]) {
        const bytes = Buffer.concat([Buffer.from("<html><body>\n"), readFileSync(file)]);
        // A binary key may fail the UTF-8 check first; either way it is refused.
        expect(exitNoticeFileProblem({ isFile: true, size: bytes.length, bytes }), file).toMatch(/private key|not UTF-8/);
      }
      const ssh = readFileSync(join(dir, "ssh"));
      expect(exitNoticeFileProblem({ isFile: true, size: ssh.length, bytes: ssh })).toMatch(/holds a private key/);
      expect(exitNoticeFileProblem({ isFile: true, size: 12, bytes: readFileSync(join(dir, "ssh.pub")) })).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
