// Package torid reads a tor relay's identity as tor 0.4.9 stores it in its
// KeyDirectory, checks the relay's ed25519 signing certificate against the
// master identity the directory lists for it, and signs with the signing key.
//
// Formats (torspec cert-spec.txt "Ed25519 certificates"; tor's key files):
// every ed25519 key file starts with a 32-byte header "== TYPE: TAG ==",
// padded with NUL bytes, then the body:
//
//	ed25519_master_id_public_key  "ed25519v1-public: type0"  32-byte public key
//	ed25519_signing_secret_key    "ed25519v1-secret: type4"  64-byte expanded secret key
//	ed25519_signing_cert          "ed25519v1-cert: type4"    the certificate
//
// tor keeps secret keys expanded (the scalar, then the nonce prefix: the two
// halves of SHA-512(seed), never the seed), so signing is done here with
// scalar arithmetic (filippo.io/edwards25519), not with crypto/ed25519, which
// wants the seed. Signatures are ordinary RFC 8032 ed25519 signatures:
// crypto/ed25519.Verify checks them.
//
// Nothing in this package prints or returns secret key bytes.
package torid

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha1"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"filippo.io/edwards25519"

	"diskless-relays/tools/broker/internal/fsutil"
)

// The key files of a relay's KeyDirectory this package reads.
const (
	MasterPublicKeyFile  = "ed25519_master_id_public_key"
	SigningCertFile      = "ed25519_signing_cert"
	SigningSecretKeyFile = "ed25519_signing_secret_key"
	SecretIDKeyFile      = "secret_id_key"
)

// Certificate and key types of cert-spec.txt that a signing certificate uses.
const (
	CertVersion              = 1
	CertTypeSigningKey       = 4 // master identity key certifies the medium-term signing key
	KeyTypeEd25519           = 1
	ExtSignedWithEd25519     = 4 // extension: the ed25519 key that signed the certificate
	ExtFlagAffectsValidation = 1 // an extension a verifier must understand or refuse
)

const (
	headerSize = 32
	// certFixedSize: version, type, expiry, key type, certified key,
	// number of extensions.
	certFixedSize = 1 + 1 + 4 + 1 + 32 + 1
	// MaxCertSize bounds a certificate this package parses. tor's signing
	// certificates are 140 bytes (one 36-byte extension); the bound leaves
	// room for extensions tor may add and keeps a hostile one small.
	MaxCertSize = 2048
	// maxKeyFileSize bounds any key file read from disk.
	maxKeyFileSize = 64 << 10
)

// Reasons a certificate check fails; errors from CheckSigningCert wrap one.
var (
	ErrMalformed       = errors.New("not a well-formed tor ed25519 certificate")
	ErrNotSigningCert  = errors.New("not a signing-key certificate")
	ErrOtherMaster     = errors.New("issued by another master identity")
	ErrBadSignature    = errors.New("signature does not verify under the master identity")
	ErrExpired         = errors.New("expired")
	errNotEd25519Key   = errors.New("not an ed25519 key")
	errUnknownCritical = errors.New("unknown extension that affects validation")
)

// readTagged returns the body of a tor key file whose header must be
// "== typ: tag ==" padded with NUL bytes to 32 bytes.
func readTagged(file string, data []byte, typ, tag string) ([]byte, error) {
	if len(data) < headerSize {
		return nil, fmt.Errorf("%s: %d bytes, too short for a tor key file (a %d-byte header comes first): truncated, or not tor's file", file, len(data), headerSize)
	}
	want := make([]byte, headerSize)
	copy(want, "== "+typ+": "+tag+" ==")
	if !bytes.Equal(data[:headerSize], want) {
		got := strings.TrimRight(string(data[:headerSize]), "\x00")
		return nil, fmt.Errorf("%s: header %q, want %q: this is not a tor %s file (use the file of that name from the relay's KeyDirectory)", file, got, "== "+typ+": "+tag+" ==", file)
	}
	return data[headerSize:], nil
}

// ParseMasterPublicKey reads ed25519_master_id_public_key: the relay's
// ed25519 master identity.
func ParseMasterPublicKey(data []byte) (ed25519.PublicKey, error) {
	body, err := readTagged(MasterPublicKeyFile, data, "ed25519v1-public", "type0")
	if err != nil {
		return nil, err
	}
	if len(body) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%s: the key is %d bytes, want %d: truncated or corrupt", MasterPublicKeyFile, len(body), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(bytes.Clone(body)), nil
}

// Ed25519ID is the master identity as the consensus, microdescriptors
// ("id ed25519 …") and tor --list-fingerprint write it: standard base64
// without padding (43 characters).
func Ed25519ID(master ed25519.PublicKey) string {
	return base64.RawStdEncoding.EncodeToString(master)
}

// ParseEd25519ID reads an identity in the form Ed25519ID writes, and only
// that form (no padding, no other alphabet, no non-zero trailing bits), so
// that one identity has one spelling.
func ParseEd25519ID(s string) (ed25519.PublicKey, error) {
	if len(s) != 43 {
		return nil, fmt.Errorf("ed25519 identity %q: %d characters, want 43 (base64 without padding, as in a microdescriptor's \"id ed25519\" line)", s, len(s))
	}
	key, err := base64.RawStdEncoding.Strict().DecodeString(s)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("ed25519 identity %q is not 32 bytes in base64 without padding (as in a microdescriptor's \"id ed25519\" line)", s)
	}
	return ed25519.PublicKey(key), nil
}

// Extension is one certificate extension.
type Extension struct {
	Type  uint8
	Flags uint8
	Data  []byte
}

// Cert is a parsed ed25519 certificate (cert-spec.txt section 2.1).
type Cert struct {
	// Raw is the whole encoded certificate, signature included.
	Raw     []byte
	Version uint8
	Type    uint8
	// Expires: the certificate is valid up to and including this second
	// (tor refuses it when now > Expires). The encoding counts hours.
	Expires      time.Time
	KeyType      uint8
	CertifiedKey []byte
	Extensions   []Extension
	// SignedWith is the signed-with-ed25519-key extension's key, nil when
	// the certificate does not carry one.
	SignedWith ed25519.PublicKey
	Signature  []byte
}

// ParseCert parses an encoded certificate (no file header): what a server
// descriptor's identity-ed25519 object and the body of ed25519_signing_cert
// hold. Like tor, it refuses trailing bytes, a signed-with-key extension
// that is not exactly 32 bytes or appears twice, and any unknown extension
// flagged as affecting validation.
func ParseCert(raw []byte) (*Cert, error) {
	if len(raw) > MaxCertSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(raw), MaxCertSize)
	}
	if len(raw) < certFixedSize+ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: %d bytes, shorter than any certificate (%d)", ErrMalformed, len(raw), certFixedSize+ed25519.SignatureSize)
	}
	c := &Cert{
		Raw:          bytes.Clone(raw),
		Version:      raw[0],
		Type:         raw[1],
		Expires:      time.Unix(int64(binary.BigEndian.Uint32(raw[2:6]))*3600, 0).UTC(),
		KeyType:      raw[6],
		CertifiedKey: bytes.Clone(raw[7:39]),
	}
	if c.Version != CertVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrMalformed, c.Version, CertVersion)
	}
	n := int(raw[39])
	rest := raw[certFixedSize:]
	for i := 0; i < n; i++ {
		if len(rest) < 4 {
			return nil, fmt.Errorf("%w: extension %d is cut off", ErrMalformed, i)
		}
		length := int(binary.BigEndian.Uint16(rest[0:2]))
		ext := Extension{Type: rest[2], Flags: rest[3]}
		rest = rest[4:]
		if len(rest) < length {
			return nil, fmt.Errorf("%w: extension %d claims %d bytes, %d left", ErrMalformed, i, length, len(rest))
		}
		ext.Data = bytes.Clone(rest[:length])
		rest = rest[length:]
		switch {
		case ext.Type == ExtSignedWithEd25519:
			if length != ed25519.PublicKeySize {
				return nil, fmt.Errorf("%w: signed-with-ed25519-key extension of %d bytes, want %d", ErrMalformed, length, ed25519.PublicKeySize)
			}
			if c.SignedWith != nil {
				return nil, fmt.Errorf("%w: two signed-with-ed25519-key extensions", ErrMalformed)
			}
			c.SignedWith = ed25519.PublicKey(bytes.Clone(ext.Data))
		case ext.Flags&ExtFlagAffectsValidation != 0:
			return nil, fmt.Errorf("%w: %w (type %d)", ErrMalformed, errUnknownCritical, ext.Type)
		}
		c.Extensions = append(c.Extensions, ext)
	}
	if len(rest) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: %d bytes after the extensions, want the %d-byte signature", ErrMalformed, len(rest), ed25519.SignatureSize)
	}
	c.Signature = bytes.Clone(rest)
	return c, nil
}

// ParseSigningCertFile reads ed25519_signing_cert (header, then the
// certificate).
func ParseSigningCertFile(data []byte) (*Cert, error) {
	body, err := readTagged(SigningCertFile, data, "ed25519v1-cert", "type4")
	if err != nil {
		return nil, err
	}
	c, err := ParseCert(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", SigningCertFile, err)
	}
	return c, nil
}

// SigningKey is the certified medium-term key, as an ed25519 public key.
// Only a certificate that CheckSigningCert accepted says it belongs to a
// relay.
func (c *Cert) SigningKey() ed25519.PublicKey { return ed25519.PublicKey(bytes.Clone(c.CertifiedKey)) }

// CheckSigningCert decides whether c certifies a signing key for master at
// time now: version 1, type 4 (signing key), key type 1 (ed25519), the
// signed-with-key extension (when present) naming master, the signature by
// master over the certificate, and not expired (tor's rule: valid while
// now <= Expires). The error wraps ErrNotSigningCert, ErrOtherMaster,
// ErrBadSignature or ErrExpired.
func (c *Cert) CheckSigningCert(master ed25519.PublicKey, now time.Time) error {
	if len(master) != ed25519.PublicKeySize {
		return fmt.Errorf("master identity: %w (%d bytes)", errNotEd25519Key, len(master))
	}
	if c.Type != CertTypeSigningKey {
		return fmt.Errorf("%w: certificate type %d, want %d", ErrNotSigningCert, c.Type, CertTypeSigningKey)
	}
	if c.KeyType != KeyTypeEd25519 {
		return fmt.Errorf("%w: certifies a key of type %d, want %d (ed25519)", ErrNotSigningCert, c.KeyType, KeyTypeEd25519)
	}
	if c.SignedWith != nil && !bytes.Equal(c.SignedWith, master) {
		return fmt.Errorf("%w: the certificate names %s, the directory lists %s", ErrOtherMaster, Ed25519ID(c.SignedWith), Ed25519ID(master))
	}
	signed := c.Raw[:len(c.Raw)-ed25519.SignatureSize]
	if !ed25519.Verify(master, signed, c.Signature) {
		return fmt.Errorf("%w %s: tampered, or issued by another key", ErrBadSignature, Ed25519ID(master))
	}
	if now.After(c.Expires) {
		return fmt.Errorf("%w at %s (checked at %s): the relay must renew its signing key (tor --keygen)", ErrExpired, c.Expires.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// SigningKey is ed25519_signing_secret_key: tor's expanded ed25519 secret.
// Its String and GoString print only the public key.
type SigningKey struct {
	scalar *edwards25519.Scalar
	prefix [32]byte
	public ed25519.PublicKey
}

// ParseSigningSecretKey reads ed25519_signing_secret_key.
func ParseSigningSecretKey(data []byte) (*SigningKey, error) {
	body, err := readTagged(SigningSecretKeyFile, data, "ed25519v1-secret", "type4")
	if err != nil {
		return nil, err
	}
	if len(body) != 64 {
		return nil, fmt.Errorf("%s: the key is %d bytes, want 64 (tor's expanded secret key): truncated or corrupt", SigningSecretKeyFile, len(body))
	}
	// The scalar is reduced modulo the group order as stored, without
	// clamping it again: tor (ed25519-donna) derives the public key and
	// signs with exactly this value, so this key signs as tor's would.
	var wide [64]byte
	copy(wide[:32], body[:32])
	s, err := edwards25519.NewScalar().SetUniformBytes(wide[:])
	if err != nil {
		return nil, fmt.Errorf("%s: %v", SigningSecretKeyFile, err)
	}
	if s.Equal(edwards25519.NewScalar()) == 1 {
		return nil, fmt.Errorf("%s: the secret scalar is zero: the file is corrupt", SigningSecretKeyFile)
	}
	k := &SigningKey{scalar: s}
	copy(k.prefix[:], body[32:])
	k.public = ed25519.PublicKey(new(edwards25519.Point).ScalarBaseMult(s).Bytes())
	return k, nil
}

// Public is the key's public half, as a signing certificate certifies it.
func (k *SigningKey) Public() ed25519.PublicKey { return bytes.Clone(k.public) }

// Sign makes an RFC 8032 ed25519 signature of message (pure ed25519, no
// pre-hash): r = H(prefix || M), R = rB, S = r + H(R || A || M)·a.
func (k *SigningKey) Sign(message []byte) []byte {
	h := sha512.New()
	h.Write(k.prefix[:])
	h.Write(message)
	r, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	if err != nil {
		panic(err) // SHA-512 output is always 64 bytes
	}
	R := new(edwards25519.Point).ScalarBaseMult(r).Bytes()
	h.Reset()
	h.Write(R)
	h.Write(k.public)
	h.Write(message)
	c, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	if err != nil {
		panic(err)
	}
	S := edwards25519.NewScalar().MultiplyAdd(c, k.scalar, r)
	return append(R, S.Bytes()...)
}

// String names the key by its public half; the secret never reaches a log.
func (k SigningKey) String() string { return "torid.SigningKey(" + Ed25519ID(k.public) + ")" }

// GoString is String, so that %#v prints no secret either.
func (k SigningKey) GoString() string { return k.String() }

var rsaFingerprintRe = regexp.MustCompile(`^[0-9A-F]{40}$`)

// ValidRSAFingerprint reports whether s is an RSA identity fingerprint in
// the one spelling used here: 40 upper-case hex digits, no spaces (the
// consensus, tor's fingerprint file and Relay Search all print it so).
func ValidRSAFingerprint(s string) bool { return rsaFingerprintRe.MatchString(s) }

// ParseRSAFingerprint reads a fingerprint as people paste it: with or
// without a leading "$" (Relay Search, torrc), in either case, in tor
// --list-fingerprint's groups of four; it returns the one spelling
// ValidRSAFingerprint accepts.
func ParseRSAFingerprint(s string) (string, error) {
	canonical := strings.ToUpper(strings.ReplaceAll(strings.TrimPrefix(strings.TrimSpace(s), "$"), " ", ""))
	if !ValidRSAFingerprint(canonical) {
		return "", fmt.Errorf("fingerprint %q is not 40 hex digits (a relay's RSA identity fingerprint, as in the consensus or Relay Search)", s)
	}
	return canonical, nil
}

// RSAFingerprint is the relay's legacy identity from secret_id_key: the
// SHA-1 of its PKCS#1 DER public key, in upper-case hex.
func RSAFingerprint(secretIDKey []byte) (string, error) {
	blk, _ := pem.Decode(secretIDKey)
	if blk == nil || blk.Type != "RSA PRIVATE KEY" {
		return "", fmt.Errorf("%s: not a PEM RSA private key: use the file of that name from the relay's KeyDirectory", SecretIDKeyFile)
	}
	key, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	if err != nil {
		return "", fmt.Errorf("%s: corrupt RSA key: %v", SecretIDKeyFile, err)
	}
	sum := sha1.Sum(x509.MarshalPKCS1PublicKey(&key.PublicKey))
	return strings.ToUpper(hex.EncodeToString(sum[:])), nil
}

// RelayKeys is what a relay proves its identity with: the public master
// identity and RSA fingerprint, the signing certificate, the signing key.
type RelayKeys struct {
	Master         ed25519.PublicKey
	RSAFingerprint string
	Cert           *Cert
	SigningKey     *SigningKey
}

// LoadRelayKeys reads a relay's KeyDirectory and checks that its files
// belong together: the certificate is signed by the master key and
// certifies the signing key. It does not check the expiry (a verifier does,
// at its own time) and does not check the directory's permissions.
// secret_id_key is read only to derive the RSA fingerprint; only the
// fingerprint is kept. The files are small: read them again for each use,
// so that a renewed signing key (tor --keygen, then a redeploy or a key
// push) is the one used.
func LoadRelayKeys(keyDir string) (*RelayKeys, error) {
	read := func(name string) ([]byte, error) {
		data, err := fsutil.ReadBounded(filepath.Join(keyDir, name), maxKeyFileSize)
		if err != nil {
			return nil, fmt.Errorf("%s: %v (the relay's tor KeyDirectory must hold it)", filepath.Join(keyDir, name), err)
		}
		return data, nil
	}
	var k RelayKeys
	data, err := read(MasterPublicKeyFile)
	if err != nil {
		return nil, err
	}
	if k.Master, err = ParseMasterPublicKey(data); err != nil {
		return nil, fmt.Errorf("%s: %w", keyDir, err)
	}
	if data, err = read(SigningCertFile); err != nil {
		return nil, err
	}
	if k.Cert, err = ParseSigningCertFile(data); err != nil {
		return nil, fmt.Errorf("%s: %w", keyDir, err)
	}
	if data, err = read(SigningSecretKeyFile); err != nil {
		return nil, err
	}
	if k.SigningKey, err = ParseSigningSecretKey(data); err != nil {
		return nil, fmt.Errorf("%s: %w", keyDir, err)
	}
	if data, err = read(SecretIDKeyFile); err != nil {
		return nil, err
	}
	if k.RSAFingerprint, err = RSAFingerprint(data); err != nil {
		return nil, fmt.Errorf("%s: %w", keyDir, err)
	}
	// At the zero time no certificate has expired yet: everything but the
	// expiry is checked.
	if err := k.Cert.CheckSigningCert(k.Master, time.Time{}); err != nil {
		return nil, fmt.Errorf("%s: %s does not belong to %s: %w", keyDir, SigningCertFile, MasterPublicKeyFile, err)
	}
	if !bytes.Equal(k.Cert.CertifiedKey, k.SigningKey.Public()) {
		return nil, fmt.Errorf("%s: %s certifies another key than %s holds: copy both from the same tor --keygen", keyDir, SigningCertFile, SigningSecretKeyFile)
	}
	return &k, nil
}
