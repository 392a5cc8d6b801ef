/**
 * AMD's SEV-SNP key hierarchy: ARK (root, self-signed) -> ASK -> VCEK (per chip
 * and TCB). The ARKs are pinned by fingerprint because their self-signature
 * proves nothing by itself.
 * Pure: bytes in, values out.
 */
import { constants, KeyObject, verify as verifySignature, X509Certificate } from "node:crypto";
import {
  child,
  children,
  contextTag,
  decodeBitStringBytes,
  decodeOid,
  decodeSmallInteger,
  DER_TAG,
  DerElement,
  readSingle,
} from "./der";

export type TcbComponent = "fmc" | "bootloader" | "tee" | "snp" | "microcode";

export interface AmdProduct {
  name: string;
  /** SHA-256 of the ARK certificate's DER, lower-case hex without separators. */
  arkSha256: string;
  /** Byte index of each security patch level inside a 64-bit TCB_VERSION. */
  tcbLayout: Readonly<Partial<Record<TcbComponent, number>>>;
}

const MILAN_GENOA_TCB_LAYOUT = { bootloader: 0, tee: 1, snp: 6, microcode: 7 } as const;
// Turin (family 1Ah) moved the fields and added the FMC patch level in front.
const TURIN_TCB_LAYOUT = { fmc: 0, bootloader: 1, tee: 2, snp: 3, microcode: 7 } as const;

/**
 * Pinned ARKs, as served by AMD KDS (https://kdsintf.amd.com/vcek/v1/<product>/cert_chain).
 * To support another product, add its ARK fingerprint and TCB layout here.
 */
export const AMD_PRODUCTS: readonly AmdProduct[] = Object.freeze([
  {
    name: "Milan",
    arkSha256: "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    tcbLayout: MILAN_GENOA_TCB_LAYOUT,
  },
  {
    name: "Genoa",
    arkSha256: "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    tcbLayout: MILAN_GENOA_TCB_LAYOUT,
  },
  {
    // ARK-Turin from the KDS cert_chain bundle that google/go-sev-guest ships
    // as verify/trust/ask_ark_turin_vcek.pem (self-signed, valid 2023-05-15..2048-05-15).
    name: "Turin",
    arkSha256: "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
    tcbLayout: TURIN_TCB_LAYOUT,
  },
]);

const OID = {
  rsassaPss: "1.2.840.113549.1.1.10",
  mgf1: "1.2.840.113549.1.1.8",
  sha384: "2.16.840.1.101.3.4.2.2",
  hwId: "1.3.6.1.4.1.3704.1.4",
  productName: "1.3.6.1.4.1.3704.1.2",
} as const;

const VCEK_TCB_OIDS: Readonly<Record<TcbComponent, string>> = {
  bootloader: "1.3.6.1.4.1.3704.1.3.1",
  tee: "1.3.6.1.4.1.3704.1.3.2",
  snp: "1.3.6.1.4.1.3704.1.3.3",
  microcode: "1.3.6.1.4.1.3704.1.3.8",
  fmc: "1.3.6.1.4.1.3704.1.3.9",
};

const PSS_SALT_LENGTH_SHA384 = 48;

export interface AmdCertificate {
  x509: X509Certificate;
  der: Buffer;
  /** The signed part (tbsCertificate) exactly as encoded. */
  tbs: Buffer;
  signatureAlgorithm: DerElement;
  signature: Buffer;
  /** extnValue contents by OID. */
  extensions: Map<string, Buffer>;
  sha256: string;
}

function parseExtensions(tbs: DerElement): Map<string, Buffer> {
  const extensions = new Map<string, Buffer>();
  const wrapper = children(tbs).find((element) => element.tag === contextTag(3));
  if (wrapper === undefined) {
    return extensions;
  }
  for (const extension of children(child(wrapper, 0, DER_TAG.SEQUENCE))) {
    const parts = children(extension);
    const oid = decodeOid(parts[0] as DerElement);
    const value = parts[parts.length - 1];
    if (value === undefined || value.tag !== DER_TAG.OCTET_STRING) {
      throw new Error(`certificate extension ${oid} has no value`);
    }
    if (extensions.has(oid)) {
      throw new Error(`certificate repeats extension ${oid}`);
    }
    extensions.set(oid, Buffer.from(value.content));
  }
  return extensions;
}

export function parseCertificate(input: Uint8Array | string): AmdCertificate {
  const x509 = new X509Certificate(typeof input === "string" ? input : Buffer.from(input));
  const der = Buffer.from(x509.raw);
  const certificate = readSingle(der, DER_TAG.SEQUENCE);
  const tbs = child(certificate, 0, DER_TAG.SEQUENCE);
  const signatureAlgorithm = child(certificate, 1, DER_TAG.SEQUENCE);
  const innerAlgorithm = children(tbs).find((element, index) => index <= 2 && element.tag === DER_TAG.SEQUENCE);
  // X.509 requires both copies of the algorithm to agree; a mismatch means someone edited one.
  if (innerAlgorithm === undefined || !innerAlgorithm.encoded.equals(signatureAlgorithm.encoded)) {
    throw new Error("certificate's inner and outer signature algorithms differ");
  }
  return {
    x509,
    der,
    tbs: Buffer.from(tbs.encoded),
    signatureAlgorithm,
    signature: Buffer.from(decodeBitStringBytes(child(certificate, 2))),
    extensions: parseExtensions(tbs),
    sha256: x509.fingerprint256.replace(/:/g, "").toLowerCase(),
  };
}

/** Splits a PEM bundle (AMD's cert_chain: ASK, then ARK) into certificates. */
export function parseCertificateBundle(pem: string): AmdCertificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((block) => parseCertificate(block));
}

function algorithmOid(algorithm: DerElement): string {
  return decodeOid(child(algorithm, 0));
}

/** Throws unless the signature algorithm is RSASSA-PSS with SHA-384, MGF1-SHA-384 and a 48-byte salt. */
function requirePssSha384(algorithm: DerElement): void {
  if (algorithmOid(algorithm) !== OID.rsassaPss) {
    throw new Error(`signature algorithm ${algorithmOid(algorithm)} is not RSASSA-PSS`);
  }
  const params = child(algorithm, 1, DER_TAG.SEQUENCE);
  let hash: string | undefined;
  let mgf: string | undefined;
  let mgfHash: string | undefined;
  let saltLength: number | undefined;
  let trailer = 1;
  for (const field of children(params)) {
    const inner = child(field, 0);
    switch (field.tag) {
      case contextTag(0):
        hash = algorithmOid(inner);
        break;
      case contextTag(1):
        mgf = algorithmOid(inner);
        mgfHash = algorithmOid(child(inner, 1, DER_TAG.SEQUENCE));
        break;
      case contextTag(2):
        saltLength = decodeSmallInteger(inner);
        break;
      case contextTag(3):
        trailer = decodeSmallInteger(inner);
        break;
      default:
        throw new Error(`unexpected RSASSA-PSS parameter tag 0x${field.tag.toString(16)}`);
    }
  }
  if (hash !== OID.sha384 || mgf !== OID.mgf1 || mgfHash !== OID.sha384) {
    throw new Error("RSASSA-PSS parameters do not name SHA-384 with MGF1-SHA-384");
  }
  if (saltLength !== PSS_SALT_LENGTH_SHA384 || trailer !== 1) {
    throw new Error(`RSASSA-PSS salt length ${saltLength ?? 20} / trailer ${trailer} is not 48 / 1`);
  }
}

/** Throws unless `subject` names `issuer` as its issuer and carries a valid RSA-PSS SHA-384 signature by it. */
export function verifyIssuedBy(subject: AmdCertificate, issuer: AmdCertificate): void {
  if (subject.x509.issuer !== issuer.x509.subject) {
    throw new Error(`issuer "${oneLine(subject.x509.issuer)}" is not "${oneLine(issuer.x509.subject)}"`);
  }
  requirePssSha384(subject.signatureAlgorithm);
  const key = rsaKeyOf(issuer);
  const valid = verifySignature(
    "sha384",
    subject.tbs,
    { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: PSS_SALT_LENGTH_SHA384 },
    subject.signature,
  );
  if (!valid) {
    throw new Error("RSA-PSS SHA-384 signature does not verify");
  }
}

function rsaKeyOf(certificate: AmdCertificate): KeyObject {
  const key = certificate.x509.publicKey;
  if (key.asymmetricKeyType !== "rsa" && key.asymmetricKeyType !== "rsa-pss") {
    throw new Error(`issuer key is ${key.asymmetricKeyType ?? "unknown"}, not RSA`);
  }
  return key;
}

export function oneLine(distinguishedName: string): string {
  return distinguishedName.split("\n").join(", ");
}

export function productForArk(ark: AmdCertificate, products: readonly AmdProduct[] = AMD_PRODUCTS): AmdProduct | undefined {
  return products.find((product) => product.arkSha256.toLowerCase() === ark.sha256);
}

/** Reads a VCEK security-patch-level extension: a DER INTEGER inside extnValue. */
export function vcekPatchLevel(vcek: AmdCertificate, component: TcbComponent): number {
  const value = vcek.extensions.get(VCEK_TCB_OIDS[component]);
  if (value === undefined) {
    throw new Error(`VCEK has no ${component} SPL extension (${VCEK_TCB_OIDS[component]})`);
  }
  const level = decodeSmallInteger(readSingle(value, DER_TAG.INTEGER));
  if (level > 0xff) {
    throw new Error(`VCEK ${component} SPL ${level} does not fit in a byte`);
  }
  return level;
}

/** The raw hwID extension: KDS stores the 64-byte CHIP_ID without an ASN.1 wrapper. */
export function vcekHardwareId(vcek: AmdCertificate): Buffer | undefined {
  return vcek.extensions.get(OID.hwId);
}

export function tcbComponent(tcb: bigint, byteIndex: number): number {
  return Number((tcb >> BigInt(8 * byteIndex)) & 0xffn);
}
