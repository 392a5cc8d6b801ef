// Package protocol defines what the key broker and the in-guest relay agent
// must agree on byte for byte: the REPORT_DATA binding, the signed response
// digests, the JSON messages, the names of the files a key bundle may hold
// and the size limits.
//
// Every hash input is a fixed sequence of length-prefixed fields (4-byte
// big-endian length, then the bytes), the first field being a domain string
// naming what is hashed and the version. Two different field sequences can
// therefore never encode to the same bytes, and a digest made for one purpose
// can never be mistaken for another.
package protocol

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Domain strings. Changing any of them is a protocol version change.
const (
	AttestationDomain  = "diskless-relays attestation v1"
	BootResponseDomain = "diskless-relays boot response v1"
	PushAckDomain      = "diskless-relays push ack v1"
	// PublicAttestationDomain starts the REPORT_DATA of a relay's answer to
	// anyone who asks it to prove what it runs (PublicReportData).
	PublicAttestationDomain = "diskless-relays public attestation v1"
	// PublicSignatureDomain starts the message a relay's tor signing key
	// signs in that answer (PublicSignedMessage).
	PublicSignatureDomain = "diskless-relays public attestation signature v1"
)

// Purposes of a challenge.
const (
	PurposeBoot = "boot"
	PurposePush = "push"
)

// Evidence kinds, and attestation kinds of a registered image.
const (
	EvidenceSNP   = "snp"
	EvidenceToken = "token"

	AttestationSNP  = "snp"
	AttestationNone = "none"
)

// Sizes and limits.
const (
	NonceSize         = 32
	ReportDataSize    = 64
	SNPReportSize     = 0x4A0 // 1184, the ATTESTATION_REPORT structure
	MeasurementSize   = 48
	MaxCertTableSize  = 64 << 10
	MaxTokenSize      = 256
	MinTokenSize      = 16
	MaxFileSize       = 64 << 10 // any one key file, family key or state of a bundle
	ChallengeLifetime = 60 * time.Second
	// keyRoom bounds the keys, family keys and state of a bundle together.
	keyRoom = 1 << 20
)

// The file set and the relay-name rule, as lib/image/broker-files.ts renders them: the one list of each kind
// lives in the TypeScript that also builds the images, and reaches the
// broker and the agent as this data.
//
//go:embed files.json
var fileSetJSON []byte

// DirectoryDocument is a public directory document tor keeps in its
// DataDirectory (a consensus, the authorities' certificates). A relay pushes
// its current ones so that its next boot knows the network at once.
type DirectoryDocument struct {
	Name      string `json:"name"`
	FirstLine string `json:"firstLine"`
}

var (
	// IdentityFiles: shipped by the operator through the admin upload,
	// never accepted from a push, and all required in a boot release.
	IdentityFiles []string
	// MutableFiles: the onion keys, tor's state file and the directory
	// documents, which a relay may push.
	MutableFiles []string
	// DirectoryDocuments: the mutable files that are directory documents.
	DirectoryDocuments []DirectoryDocument
	// MaxDirectoryFileSize bounds one directory document.
	MaxDirectoryFileSize int
	// MaxBundleSize bounds all files of a bundle together: room for the
	// keys and state, and for every directory document at its bound.
	MaxBundleSize int
	// MaxPayloadSize bounds the age ciphertext of a pushed bundle (its JSON
	// carries the files in base64: 4/3 of their size).
	MaxPayloadSize int
	// MaxRequestSize bounds any JSON request or answer body (the payload or
	// bundle ciphertext in base64 again).
	MaxRequestSize int64
)

func init() {
	var set struct {
		Source                    string              `json:"source"`
		Identity                  []string            `json:"identity"`
		Mutable                   []string            `json:"mutable"`
		DirectoryDocuments        []DirectoryDocument `json:"directoryDocuments"`
		MaxDirectoryDocumentBytes int                 `json:"maxDirectoryDocumentBytes"`
		RelayName                 string              `json:"relayName"`
		CPUModel                  string              `json:"cpuModel"`
		PublicAttestationPort     int                 `json:"publicAttestationPort"`
	}
	dec := json.NewDecoder(bytes.NewReader(fileSetJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&set); err != nil || len(set.Identity) == 0 || len(set.Mutable) == 0 || set.MaxDirectoryDocumentBytes <= 0 || set.RelayName == "" || set.CPUModel == "" || set.PublicAttestationPort < 1 || set.PublicAttestationPort > 65535 {
		panic(fmt.Sprintf("protocol: files.json is not a file set (%v)", err))
	}
	for _, d := range set.DirectoryDocuments {
		if !contains(set.Mutable, d.Name) || d.FirstLine == "" {
			panic(fmt.Sprintf("protocol: files.json: directory document %q is not a mutable file with a first line", d.Name))
		}
	}
	IdentityFiles, MutableFiles, DirectoryDocuments = set.Identity, set.Mutable, set.DirectoryDocuments
	RelayNamePattern = set.RelayName
	relayRe = regexp.MustCompile(RelayNamePattern)
	cpuModelRe = regexp.MustCompile(set.CPUModel)
	PublicAttestationPort = set.PublicAttestationPort
	MaxDirectoryFileSize = set.MaxDirectoryDocumentBytes
	MaxBundleSize = keyRoom + len(DirectoryDocuments)*MaxDirectoryFileSize
	MaxPayloadSize = MaxBundleSize/3*4 + 64<<10
	MaxRequestSize = int64(MaxPayloadSize/3*4 + 64<<10)
}

// A family key (tor 0.4.9's FamilyId): tor finds every *.secret_family_key in
// its KeyDirectory. Shipped by the operator like the identity files, never
// pushed, and optional.
var familyKeyRe = regexp.MustCompile(`^keys/[A-Za-z0-9_-]{1,64}\.secret_family_key$`)

// PublicAttestationPort is where an SNP relay answers volunteers by
// default, as the program's TypeScript defines it (files.json).
var PublicAttestationPort int

var (
	// RelayNamePattern is the relay-name rule, as the program's TypeScript
	// defines it (files.json); relayRe is it compiled.
	RelayNamePattern string
	relayRe          *regexp.Regexp
	// cpuModelRe is the vCPU model rule (a QEMU CPU model name), as the
	// program's TypeScript defines it (files.json).
	cpuModelRe *regexp.Regexp
	digestRe   = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ValidRelay reports whether name is an acceptable relay name.
func ValidRelay(name string) bool { return relayRe.MatchString(name) }

// ValidCPUModel reports whether s is an acceptable vCPU model name.
func ValidCPUModel(s string) bool { return cpuModelRe.MatchString(s) }

// ValidImageDigest reports whether d is a lowercase hex SHA-256 digest.
func ValidImageDigest(d string) bool { return digestRe.MatchString(d) }

// ParseMeasurement decodes a 96-hex-digit (48-byte) SNP launch measurement.
func ParseMeasurement(s string) ([]byte, error) {
	s = strings.ToLower(strings.TrimPrefix(s, "0x"))
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != MeasurementSize {
		return nil, fmt.Errorf("measurement must be %d hex digits", 2*MeasurementSize)
	}
	return b, nil
}

// IsIdentityFile reports whether name is one of IdentityFiles.
func IsIdentityFile(name string) bool { return contains(IdentityFiles, name) }

// IsFamilyKeyFile reports whether name is a family key in the key directory.
func IsFamilyKeyFile(name string) bool { return familyKeyRe.MatchString(name) }

// IsShippedFile reports whether name comes only from the operator's upload:
// an identity file or a family key.
func IsShippedFile(name string) bool { return IsIdentityFile(name) || IsFamilyKeyFile(name) }

// IsMutableFile reports whether name is one of MutableFiles.
func IsMutableFile(name string) bool { return contains(MutableFiles, name) }

// directoryDocument returns the directory document called name, if it is one.
func directoryDocument(name string) (DirectoryDocument, bool) {
	for _, d := range DirectoryDocuments {
		if d.Name == name {
			return d, true
		}
	}
	return DirectoryDocument{}, false
}

// IsDirectoryDocument reports whether name is one of DirectoryDocuments.
func IsDirectoryDocument(name string) bool {
	_, ok := directoryDocument(name)
	return ok
}

// MaxSizeOf is the most a bundle file called name may be.
func MaxSizeOf(name string) int {
	if IsDirectoryDocument(name) {
		return MaxDirectoryFileSize
	}
	return MaxFileSize
}

// IsBundleFile reports whether name may appear in a bundle at all. The check
// is an exact match against a fixed list, so "../x", "keys/../state",
// "/state" or "keys//secret_id_key" are all refused.
func IsBundleFile(name string) bool { return IsShippedFile(name) || IsMutableFile(name) }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Files maps bundle file names to their contents. JSON encodes the contents
// as standard base64.
type Files map[string][]byte

// Names returns the file names, sorted.
func (f Files) Names() []string {
	names := make([]string, 0, len(f))
	for n := range f {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ErrTooLarge is wrapped by CheckFiles when a size limit is exceeded.
var ErrTooLarge = errors.New("too large")

// CheckFiles checks every name against the allowed list (and, if allowed is
// non-nil, against that narrower predicate), the size limits, and that each
// directory document starts as its kind does.
func CheckFiles(f Files, allowed func(string) bool) error {
	total := 0
	for _, name := range f.Names() {
		if !IsBundleFile(name) {
			return fmt.Errorf("file name %q is not allowed in a bundle", name)
		}
		if allowed != nil && !allowed(name) {
			return fmt.Errorf("file %q may not be set this way", name)
		}
		if limit := MaxSizeOf(name); len(f[name]) > limit {
			return fmt.Errorf("file %q: %w (%d bytes, limit %d)", name, ErrTooLarge, len(f[name]), limit)
		}
		if d, ok := directoryDocument(name); ok && !startsWithLine(f[name], d.FirstLine) {
			return fmt.Errorf("file %q does not start with %q: not a tor directory document", name, d.FirstLine)
		}
		total += len(f[name])
	}
	if total > MaxBundleSize {
		return fmt.Errorf("bundle: %w (%d bytes, limit %d)", ErrTooLarge, total, MaxBundleSize)
	}
	return nil
}

// startsWithLine reports whether data's first line is line, or line followed
// by a space and more (tor's keyword lines take arguments).
func startsWithLine(data []byte, line string) bool {
	first, _, _ := bytes.Cut(data, []byte("\n"))
	return string(first) == line || bytes.HasPrefix(first, []byte(line+" "))
}

// MissingIdentityFiles returns the identity files absent from f.
func MissingIdentityFiles(f Files) []string {
	var missing []string
	for _, n := range IdentityFiles {
		if _, ok := f[n]; !ok {
			missing = append(missing, n)
		}
	}
	return missing
}

// writeFields writes (into a hash, mostly) each field as a 4-byte
// big-endian length then its bytes.
func writeFields(w io.Writer, fields ...[]byte) {
	var l [4]byte
	for _, f := range fields {
		binary.BigEndian.PutUint32(l[:], uint32(len(f)))
		w.Write(l[:])
		w.Write(f)
	}
}

// ReportData is the 64-byte REPORT_DATA an attestation report must carry:
//
//	SHA-512( lp("diskless-relays attestation v1") || lp(relay) ||
//	         lp(imageDigest) || lp(purpose) || lp(nonce) ||
//	         lp(recipient) || lp(payloadSHA256) )
//
// where lp(x) is x's length as a 4-byte big-endian integer followed by x;
// relay, imageDigest (64 lowercase hex digits), purpose ("boot"/"push") and
// recipient (the agent's ephemeral "age1…" string, empty for a push) are
// their ASCII bytes; nonce is the 32 raw challenge bytes; payloadSHA256 is
// the SHA-256 of the pushed age ciphertext for a push and empty for a boot.
func ReportData(relay, imageDigest, purpose string, nonce []byte, recipient string, payloadSHA256 []byte) [ReportDataSize]byte {
	h := sha512.New()
	writeFields(h, []byte(AttestationDomain), []byte(relay), []byte(imageDigest),
		[]byte(purpose), nonce, []byte(recipient), payloadSHA256)
	var out [ReportDataSize]byte
	copy(out[:], h.Sum(nil))
	return out
}

// BootResponseDigest is what the broker signs (ed25519) for a boot release:
// SHA-512 over lp(domain) || lp(relay) || lp(imageDigest) || lp(nonce) ||
// lp(bundle ciphertext).
func BootResponseDigest(relay, imageDigest string, nonce, ciphertext []byte) []byte {
	h := sha512.New()
	writeFields(h, []byte(BootResponseDomain), []byte(relay), []byte(imageDigest), nonce, ciphertext)
	return h.Sum(nil)
}

// PushAckDigest is what the broker signs (ed25519) to acknowledge a push:
// SHA-512 over lp(domain) || lp(relay) || lp(imageDigest) || lp(nonce) ||
// lp(SHA-256 of the payload ciphertext).
func PushAckDigest(relay, imageDigest string, nonce, payloadSHA256 []byte) []byte {
	h := sha512.New()
	writeFields(h, []byte(PushAckDomain), []byte(relay), []byte(imageDigest), nonce, payloadSHA256)
	return h.Sum(nil)
}

// PublicReportData is the 64-byte REPORT_DATA of a relay's public
// attestation, the answer it gives anyone who sends it a nonce:
//
//	SHA-512( lp("diskless-relays public attestation v1") || lp(nonce) ||
//	         lp(ed25519Master) || lp(rsaIdentity) || lp(imageDigest) )
//
// nonce is the caller's 32 raw bytes; ed25519Master the relay's 32-byte
// ed25519 master identity key and rsaIdentity the 20-byte SHA-1 its RSA
// fingerprint spells in hex, both raw so that no spelling (base64 padding,
// hex case, spaces) can make two encodings of one relay; imageDigest the
// image's 64 lowercase hex digits as ASCII, as in ReportData.
func PublicReportData(nonce, ed25519Master, rsaIdentity []byte, imageDigest string) [ReportDataSize]byte {
	h := sha512.New()
	writeFields(h, []byte(PublicAttestationDomain), nonce, ed25519Master, rsaIdentity, []byte(imageDigest))
	var out [ReportDataSize]byte
	copy(out[:], h.Sum(nil))
	return out
}

// PublicSignedMessage is what a relay's tor ed25519 signing key signs in
// its public attestation: lp("diskless-relays public attestation
// signature v1") || lp(nonce) || lp(report). It is signed as it is, not
// hashed first: tor signs its descriptors' 32-byte digests and its
// certificates (first byte 1) with the same key, and this message, whose
// first byte is 0 and which is far longer than 32 bytes, can be neither.
func PublicSignedMessage(nonce, report []byte) []byte {
	var b bytes.Buffer
	writeFields(&b, []byte(PublicSignatureDomain), nonce, report)
	return b.Bytes()
}

// PayloadSHA256 hashes a push payload (the age ciphertext).
func PayloadSHA256(payload []byte) []byte {
	s := sha256.Sum256(payload)
	return s[:]
}

// Verify checks an ed25519 signature over a digest from this package.
func Verify(pub ed25519.PublicKey, digest, sig []byte) bool {
	return len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, digest, sig)
}

// ChallengeRequest is the body of POST /v1/relays/{relay}/challenge.
type ChallengeRequest struct {
	ImageDigest string `json:"imageDigest"`
	Purpose     string `json:"purpose"`
}

// ChallengeResponse answers a ChallengeRequest.
type ChallengeResponse struct {
	Session   string    `json:"session"`
	Nonce     []byte    `json:"nonce"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// Evidence is either an SNP report (with the extended report's certificate
// table, possibly empty) or a token (the boot token for a boot, the per-boot
// push secret for a push).
type Evidence struct {
	Kind   string `json:"kind"`
	Report []byte `json:"report,omitempty"`
	Certs  []byte `json:"certs,omitempty"`
	Token  []byte `json:"token,omitempty"`
}

// AttestRequest is the body of POST /v1/relays/{relay}/attest.
type AttestRequest struct {
	Session   string   `json:"session"`
	Recipient string   `json:"recipient"`
	Evidence  Evidence `json:"evidence"`
	Payload   []byte   `json:"payload,omitempty"`
}

// BootResponse answers a successful boot attestation. Bundle is age
// ciphertext (to the request's recipient) of a BundlePlaintext.
type BootResponse struct {
	Bundle    []byte `json:"bundle"`
	Signature []byte `json:"signature"`
}

// PushResponse answers a successful push.
type PushResponse struct {
	StoredAt  time.Time `json:"storedAt"`
	Signature []byte    `json:"signature"`
}

// BundlePlaintext is what a boot release decrypts to. PushSecret is set only
// for token-mode relays: the bearer secret that authenticates this boot's
// pushes.
type BundlePlaintext struct {
	Relay      string `json:"relay"`
	Files      Files  `json:"files"`
	PushSecret []byte `json:"pushSecret,omitempty"`
}

// PushPlaintext is what a push payload decrypts to.
type PushPlaintext struct {
	Relay string `json:"relay"`
	Files Files  `json:"files"`
	// Health is the relay's own health report (relay-health's "key value"
	// lines: image, clock, tor's pid and fingerprints, listening ports, the
	// last lines of tor's log). Public facts; bound to the attested push
	// like the files, so the rollout gate can trust it without SSH.
	Health string `json:"health,omitempty"`
}

// MaxHealthSize caps a push's health report.
const MaxHealthSize = 32 << 10

// ErrorBody is the body of every non-2xx answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail carries a stable machine-readable code and a short message.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// SerialRequest is one line (JSON, then "\n") the agent writes to a
// simulated secure processor over a character device (virtio-serial).
type SerialRequest struct {
	ReportData []byte `json:"reportData"`
}

// SerialResponse is the one-line answer: a signed report and the
// certificate table, or an error.
type SerialResponse struct {
	Report []byte `json:"report,omitempty"`
	Certs  []byte `json:"certs,omitempty"`
	Error  string `json:"error,omitempty"`
}

// MaxSerialLine bounds one line of the serial protocol.
const MaxSerialLine = 256 << 10

// ReadSerialLine reads one line of the serial protocol, both sides of it:
// up to "\n" (dropped), refusing a line over MaxSerialLine bytes; a last
// line without "\n" before EOF counts.
func ReadSerialLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > MaxSerialLine {
			return nil, errors.New("line too long")
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && len(line) > 0:
			return line, nil
		default:
			return nil, err
		}
	}
}
