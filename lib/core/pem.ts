/**
 * PEM files judged by what they hold: the broker's CA that every broker-mode
 * image pins, and the Secure Boot key and certificate that sign each UKI. A
 * file that should be public must hold certificates and nothing else, so that
 * no secret ships as "the CA". Pure functions over text (node:crypto parses);
 * messages never quote a file's content.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";

interface PemBlock {
  label: string;
  text: string;
}

/** The PEM blocks of a text, and whether anything but whitespace lies outside them. */
function pemBlocks(text: string): { blocks: PemBlock[]; outside: boolean } {
  const blocks: PemBlock[] = [];
  const rest = text.replace(/-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g, (block: string, label: string) => {
    blocks.push({ label, text: block });
    return "";
  });
  return { blocks, outside: rest.trim() !== "" };
}

const describeBlock = (label: string) =>
  label.includes("PRIVATE KEY") ? `a private key (a PEM "${label}" block)` : `a PEM "${label}" block`;

/** A certificate's subject, on one line, for messages. */
const subjectOf = (cert: X509Certificate) => cert.subject.replace(/\n/g, ", ");

/**
 * The broker's CA bundle: PEM CERTIFICATE blocks only, each a valid X.509
 * certificate, not expired. A certificate that is not a CA is
 * trusted by the relay's agent only as the broker's own certificate, never as
 * the issuer of another, hence a warning.
 */
export function checkCaBundle(text: string, now: Date): { problems: string[]; warnings: string[] } {
  const { blocks, outside } = pemBlocks(text);
  const problems: string[] = [];
  const warnings: string[] = [];
  for (const block of blocks.filter((b) => b.label !== "CERTIFICATE")) {
    problems.push(`holds ${describeBlock(block.label)}: it would ship in every image as the CA. The CA file holds the CA's certificate (-----BEGIN CERTIFICATE-----) and nothing else`);
  }
  const strayKey = !blocks.some((b) => b.label.includes("PRIVATE KEY")) && /PRIVATE KEY/.test(text);
  if (strayKey) problems.push("holds private key material: it would ship in every image as the CA. The CA file holds the CA's certificate (-----BEGIN CERTIFICATE-----) and nothing else");
  else if (blocks.length === 0) problems.push("holds no PEM certificate (-----BEGIN CERTIFICATE-----): name the file of the CA certificate that signed the broker's TLS certificate");
  else if (outside && problems.length === 0) problems.push("holds text outside its PEM blocks; keep only the -----BEGIN CERTIFICATE----- blocks, so that nothing else ships in every image as the CA");
  blocks
    .filter((b) => b.label === "CERTIFICATE")
    .forEach((block, i) => {
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(block.text);
      } catch {
        return void problems.push(`holds a certificate (the ${ordinal(i)}) that is not a valid X.509 certificate`);
      }
      if (new Date(cert.validTo).getTime() <= now.getTime()) problems.push(`holds a certificate (${subjectOf(cert)}) that expired at ${new Date(cert.validTo).toISOString()}: relays would refuse the broker`);
      if (!cert.ca) warnings.push(`holds a certificate (${subjectOf(cert)}) that is not a CA (basicConstraints CA:TRUE): relays trust it only as the broker's own certificate, not as the issuer of one`);
    });
  return { problems, warnings };
}

const ordinal = (i: number) => ["first", "second", "third"][i] ?? `${i + 1}th`;

/** A Secure Boot signing key: one unencrypted PEM private key. */
export function readSecureBootKey(text: string): { key: KeyObject } | { problem: string } {
  const { blocks } = pemBlocks(text);
  const keys = blocks.filter((b) => b.label.endsWith("PRIVATE KEY"));
  // PKCS#8 says so in its label, the older PEM forms in a Proc-Type header.
  if (keys.some((b) => b.label === "ENCRYPTED PRIVATE KEY" || /^Proc-Type: 4,ENCRYPTED$/m.test(b.text))) return { problem: "is an encrypted private key: sbsign cannot ask for its passphrase; give it the unencrypted key (on the build host only)" };
  if (keys.length !== 1) return { problem: `holds ${keys.length} PEM private keys; it must hold the db key alone (one PEM "PRIVATE KEY" block)` };
  try {
    return { key: createPrivateKey({ key: keys[0]!.text, format: "pem" }) };
  } catch {
    return { problem: "holds a PEM private key that does not parse" };
  }
}

/**
 * A Secure Boot certificate: one PEM certificate and nothing secret (sbsign
 * embeds the certificate in each signature), matching the signing key.
 */
export function checkSecureBootCertificate(text: string, key: KeyObject | undefined): string | undefined {
  const { blocks } = pemBlocks(text);
  const other = blocks.find((b) => b.label !== "CERTIFICATE");
  if (other) return `holds ${describeBlock(other.label)}; the certificate file holds the db certificate (-----BEGIN CERTIFICATE-----) alone`;
  if (blocks.length !== 1) return `holds ${blocks.length} PEM certificates; it must hold the db certificate alone`;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(blocks[0]!.text);
  } catch {
    return "holds a certificate that is not a valid X.509 certificate";
  }
  if (key && !cert.checkPrivateKey(key)) return `is not the certificate of image.secureBoot.privateKeyFile's key (${subjectOf(cert)}): firmware that trusts this certificate would refuse every image signed with that key`;
  return undefined;
}
