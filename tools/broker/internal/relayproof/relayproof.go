// Package relayproof is a relay's public attestation: the evidence a relay
// gives anyone who sends it a nonce, made inside the guest (Make), and the
// checks a volunteer runs on it (Check), one verdict each.
//
// The evidence binds three things together. The SEV-SNP report's
// REPORT_DATA (protocol.PublicReportData) binds the caller's nonce, the
// relay's ed25519 master identity and RSA fingerprint, and the image digest:
// the guest that made the report claims to be that relay running that
// image. The relay's current tor signing key, certified by its master
// identity (ed25519_signing_cert), signs the nonce and the report
// (protocol.PublicSignedMessage): the holder of the relay's keys is the one
// answering with this report. A genuine image booted elsewhere, without the
// key broker's release, holds no signing key and cannot sign; a copy of the
// keys outside the guest cannot get a report that binds them.
//
// What Check does not do: the report's signature and AMD chain, the guest
// policy and the TCB (internal/snpcheck, fed by SNPInputs), and the
// measurement against the published log. cmd/verify-relay adds those
// verdicts.
//
// endpoint.go is the one definition of the wire: POST AttestationPath with
// a Request, answered with the Evidence; Handler serves it on the relay,
// Fetch asks it from the verifier.
package relayproof

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/uuid"

	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/torid"
)

// Limits of an evidence document.
const (
	// MaxVCEKSize bounds a DER VCEK certificate (AMD's are about 1.4 KiB).
	MaxVCEKSize = 16 << 10
	// MaxBuildRecordSize bounds the build record's location.
	MaxBuildRecordSize = 2048
	// MaxEvidenceSize bounds the JSON document: the certificate table at its
	// limit in base64, and room for everything else.
	MaxEvidenceSize = protocol.MaxCertTableSize/3*4 + 32<<10
	// SignatureSize is an ed25519 signature's.
	SignatureSize = ed25519.SignatureSize
)

// Evidence is a relay's answer. []byte fields are standard base64 in JSON.
type Evidence struct {
	// Nonce is the caller's, echoed: 32 bytes.
	Nonce []byte `json:"nonce"`
	// Report is the SEV-SNP ATTESTATION_REPORT (1184 bytes) whose
	// REPORT_DATA is protocol.PublicReportData.
	Report []byte `json:"report"`
	// Certs is the extended report's certificate table (ARK, ASK, VCEK), or
	// VCEK the DER VCEK certificate alone; at most one of them, or neither
	// (the verifier then fetches the VCEK from AMD's KDS).
	Certs []byte `json:"certs,omitempty"`
	VCEK  []byte `json:"vcek,omitempty"`
	// SigningCert is the relay's ed25519_signing_cert without its file
	// header: the certificate as server descriptors carry it.
	SigningCert []byte `json:"signingCert"`
	// Signature is the certified signing key's ed25519 signature of
	// protocol.PublicSignedMessage(Nonce, Report).
	Signature []byte `json:"signature"`
	// What the relay says it is and runs. The verifier checks the report
	// against what it expects (the consensus, the log), not against these.
	RSAFingerprint string `json:"rsaFingerprint"` // 40 upper-case hex digits
	Ed25519ID      string `json:"ed25519Id"`      // base64 without padding, as in microdescriptors
	ImageDigest    string `json:"imageDigest"`    // 64 lowercase hex digits
	// Relay is the relay's name as the published measurement log lists it
	// (protocol.ValidRelay): the verifier's key into the log. It is not in
	// REPORT_DATA: the log entry is found by the report's measurement, which
	// the hardware signs, and must hold the image digest REPORT_DATA binds,
	// so a false name can only select an entry of the same image.
	Relay string `json:"relay"`
	// BuildRecord says where the image's signed build record is (a URL or
	// a name in the published log); printable ASCII, optional.
	BuildRecord string `json:"buildRecord,omitempty"`
}

// Validate checks every field's form and size; it checks no signature.
func (e *Evidence) Validate() error {
	switch {
	case len(e.Nonce) != protocol.NonceSize:
		return fmt.Errorf("evidence: nonce is %d bytes, want %d", len(e.Nonce), protocol.NonceSize)
	case len(e.Report) != protocol.SNPReportSize:
		return fmt.Errorf("evidence: report is %d bytes, want %d", len(e.Report), protocol.SNPReportSize)
	case len(e.Certs) > protocol.MaxCertTableSize:
		return fmt.Errorf("evidence: certs is %d bytes, limit %d", len(e.Certs), protocol.MaxCertTableSize)
	case len(e.VCEK) > MaxVCEKSize:
		return fmt.Errorf("evidence: vcek is %d bytes, limit %d", len(e.VCEK), MaxVCEKSize)
	case len(e.Certs) > 0 && len(e.VCEK) > 0:
		return errors.New("evidence: both certs and vcek: send the certificate table or the VCEK, not both")
	case len(e.Signature) != SignatureSize:
		return fmt.Errorf("evidence: signature is %d bytes, want %d", len(e.Signature), SignatureSize)
	case !torid.ValidRSAFingerprint(e.RSAFingerprint):
		return fmt.Errorf("evidence: rsaFingerprint %q is not 40 upper-case hex digits", clip(e.RSAFingerprint))
	case !protocol.ValidImageDigest(e.ImageDigest):
		return fmt.Errorf("evidence: imageDigest %q is not 64 lowercase hex digits", clip(e.ImageDigest))
	case !protocol.ValidRelay(e.Relay):
		return fmt.Errorf("evidence: relay %q is not a relay name (%s)", clip(e.Relay), protocol.RelayNamePattern)
	case len(e.BuildRecord) > MaxBuildRecordSize:
		return fmt.Errorf("evidence: buildRecord is %d bytes, limit %d", len(e.BuildRecord), MaxBuildRecordSize)
	case strings.IndexFunc(e.BuildRecord, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0:
		return fmt.Errorf("evidence: buildRecord %q holds a character other than printable ASCII", clip(e.BuildRecord))
	}
	if _, err := torid.ParseEd25519ID(e.Ed25519ID); err != nil {
		return fmt.Errorf("evidence: ed25519Id: %v", err)
	}
	if _, err := torid.ParseCert(e.SigningCert); err != nil {
		return fmt.Errorf("evidence: signingCert: %v", err)
	}
	return nil
}

// clip shortens a hostile value before it goes into an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// fieldNames are Evidence's JSON names, exactly as spelled.
var fieldNames = func() map[string]bool {
	names := map[string]bool{}
	t := reflect.TypeOf(Evidence{})
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		names[name] = true
	}
	return names
}()

// Decode reads an evidence document strictly: at most MaxEvidenceSize
// bytes, one JSON object, every name exactly one of Evidence's (encoding/json
// alone would take "NONCE" for "nonce") and none twice, nothing after it,
// and every field valid (Validate).
func Decode(data []byte) (*Evidence, error) {
	if len(data) > MaxEvidenceSize {
		return nil, fmt.Errorf("evidence: %d bytes, limit %d", len(data), MaxEvidenceSize)
	}
	if err := checkNames(data); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var e Evidence
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("evidence: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("evidence: data after the JSON object")
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// checkNames walks the top-level object's names.
func checkNames(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("evidence: not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("evidence: %v", err)
		}
		name, _ := tok.(string)
		if !fieldNames[name] {
			return fmt.Errorf("evidence: unknown field %q", clip(name))
		}
		if seen[name] {
			return fmt.Errorf("evidence: field %q twice", name)
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return fmt.Errorf("evidence: field %q: %v", name, err)
		}
	}
	return nil
}

// Marshal encodes the evidence as the JSON Decode reads.
func (e *Evidence) Marshal() ([]byte, error) { return json.Marshal(e) }

// CertTable is the certificate table for the SNP checks: Certs as sent, or
// a table holding only the VCEK, or nothing.
func (e *Evidence) CertTable() []byte {
	if len(e.VCEK) == 0 {
		return bytes.Clone(e.Certs)
	}
	table := abi.CertTable{Entries: []abi.CertTableEntry{{GUID: uuid.MustParse(abi.VcekGUID), RawCert: bytes.Clone(e.VCEK)}}}
	return table.Marshal()
}

// ReportFunc asks the secure processor for a report carrying reportData and
// returns it with the certificate table (possibly empty): the shape of the
// relay agent's report sources (agent.ReportSource.GetReport).
type ReportFunc func(ctx context.Context, reportData [protocol.ReportDataSize]byte) (report, certs []byte, err error)

// Image is what the relay runs, as the published measurement log names it.
type Image struct {
	// Relay is the relay's name in the log (protocol.ValidRelay).
	Relay string
	// Digest is the image's SHA-256, 64 lowercase hex digits.
	Digest string
	// BuildRecord says where its signed build record is (optional).
	BuildRecord string
}

// Make answers a caller's nonce, inside the guest: a fresh report binding
// the nonce, the relay's identities and the image digest, signed with the
// relay's current signing key. keys come from torid.LoadRelayKeys, which
// has checked that they belong together.
func Make(ctx context.Context, getReport ReportFunc, keys *torid.RelayKeys, nonce []byte, img Image) (*Evidence, error) {
	imageDigest := img.Digest
	if len(nonce) != protocol.NonceSize {
		return nil, fmt.Errorf("nonce is %d bytes, want %d", len(nonce), protocol.NonceSize)
	}
	if !protocol.ValidRelay(img.Relay) {
		return nil, fmt.Errorf("relay name %q is not one (%s)", clip(img.Relay), protocol.RelayNamePattern)
	}
	if !protocol.ValidImageDigest(imageDigest) {
		return nil, fmt.Errorf("image digest %q is not 64 lowercase hex digits", clip(imageDigest))
	}
	if !bytes.Equal(keys.Cert.CertifiedKey, keys.SigningKey.Public()) {
		return nil, fmt.Errorf("%s certifies another key than %s holds", torid.SigningCertFile, torid.SigningSecretKeyFile)
	}
	rsaID, err := hex.DecodeString(keys.RSAFingerprint)
	if err != nil || !torid.ValidRSAFingerprint(keys.RSAFingerprint) {
		return nil, fmt.Errorf("RSA fingerprint %q is not 40 upper-case hex digits", clip(keys.RSAFingerprint))
	}
	want := protocol.PublicReportData(nonce, keys.Master, rsaID, imageDigest)
	report, certs, err := getReport(ctx, want)
	if err != nil {
		return nil, fmt.Errorf("SNP report: %w", err)
	}
	got, err := reportData(report)
	if err != nil {
		return nil, fmt.Errorf("SNP report: %v", err)
	}
	if got != want {
		return nil, fmt.Errorf("SNP report: it carries REPORT_DATA %x, not the %x asked for: the report source answered another request", got[:8], want[:8])
	}
	e := &Evidence{
		Nonce:          bytes.Clone(nonce),
		Report:         report,
		Certs:          certs,
		SigningCert:    bytes.Clone(keys.Cert.Raw),
		Signature:      keys.SigningKey.Sign(protocol.PublicSignedMessage(nonce, report)),
		RSAFingerprint: keys.RSAFingerprint,
		Ed25519ID:      torid.Ed25519ID(keys.Master),
		ImageDigest:    imageDigest,
		Relay:          img.Relay,
		BuildRecord:    img.BuildRecord,
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return e, nil
}

// reportData reads a report's REPORT_DATA.
func reportData(report []byte) ([protocol.ReportDataSize]byte, error) {
	var out [protocol.ReportDataSize]byte
	if len(report) != protocol.SNPReportSize {
		return out, fmt.Errorf("report is %d bytes, want %d", len(report), protocol.SNPReportSize)
	}
	rep, err := abi.ReportToProto(report)
	if err != nil {
		return out, fmt.Errorf("unreadable report: %v", err)
	}
	copy(out[:], rep.GetReportData())
	return out, nil
}

// Expected is what the verifier knows from elsewhere: its own nonce, the
// relay's identities from the consensus, the image from the published log.
type Expected struct {
	// Nonce is the one the caller sent.
	Nonce []byte
	// RSAFingerprint is the relay asked about: 40 upper-case hex digits.
	RSAFingerprint string
	// Ed25519Master is the master identity the consensus or the relay's
	// microdescriptor lists for that fingerprint.
	Ed25519Master ed25519.PublicKey
	// ImageDigest is the image the published log lists for the relay.
	ImageDigest string
	// Now is when the signing certificate must be valid.
	Now time.Time
}

func (x Expected) validate() error {
	switch {
	case len(x.Nonce) != protocol.NonceSize:
		return fmt.Errorf("expected nonce is %d bytes, want %d", len(x.Nonce), protocol.NonceSize)
	case !torid.ValidRSAFingerprint(x.RSAFingerprint):
		return fmt.Errorf("expected RSA fingerprint %q is not 40 upper-case hex digits", clip(x.RSAFingerprint))
	case len(x.Ed25519Master) != ed25519.PublicKeySize:
		return fmt.Errorf("expected ed25519 master identity is %d bytes, want %d", len(x.Ed25519Master), ed25519.PublicKeySize)
	case !protocol.ValidImageDigest(x.ImageDigest):
		return fmt.Errorf("expected image digest %q is not 64 lowercase hex digits", clip(x.ImageDigest))
	case x.Now.IsZero():
		return errors.New("expected: no time to check the signing certificate at")
	}
	return nil
}

// wantReportData is the REPORT_DATA a report must carry for this evidence's
// nonce and the verifier's relay and image.
func (x Expected) wantReportData(nonce []byte) [protocol.ReportDataSize]byte {
	rsaID, _ := hex.DecodeString(x.RSAFingerprint)
	return protocol.PublicReportData(nonce, x.Ed25519Master, rsaID, x.ImageDigest)
}

// SNPInputs are what the SNP chain, policy and TCB checks (snpcheck) take
// from an answer: the report, its certificate table, and the REPORT_DATA
// the report must carry for the verifier's nonce, relay and image.
func SNPInputs(e *Evidence, x Expected) (report, certTable []byte, wantReportData [protocol.ReportDataSize]byte, err error) {
	if err := x.validate(); err != nil {
		return nil, nil, wantReportData, err
	}
	if err := e.Validate(); err != nil {
		return nil, nil, wantReportData, err
	}
	return bytes.Clone(e.Report), e.CertTable(), x.wantReportData(x.Nonce), nil
}

// Names of Check's verdicts, in the order it gives them.
const (
	CheckFreshness   = "freshness"
	CheckReportData  = "report_data"
	CheckSigningCert = "signing_cert"
	CheckSignature   = "signature"
)

// Verdict is one check's outcome.
type Verdict struct {
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// String is the verdict as verify-relay prints it: one line.
func (v Verdict) String() string {
	word := "FAIL"
	if v.OK {
		word = "ok  "
	}
	return fmt.Sprintf("%s %-13s %s", word, v.Check, v.Detail)
}

// Verdicts are a run of checks.
type Verdicts []Verdict

// OK reports whether every check passed (and there was at least one).
func (vs Verdicts) OK() bool {
	for _, v := range vs {
		if !v.OK {
			return false
		}
	}
	return len(vs) > 0
}

// Failed names the checks that failed.
func (vs Verdicts) Failed() []string {
	var names []string
	for _, v := range vs {
		if !v.OK {
			names = append(names, v.Check)
		}
	}
	return names
}

// Check decides, one verdict per check, whether e is the answer of the
// relay x names, running the image x names, to x's nonce:
//
//   - freshness: the answer echoes the caller's nonce;
//   - report_data: the report binds that nonce, the relay's identities as
//     the consensus lists them and the image the log lists;
//   - signing_cert: the signing certificate is issued by the master identity
//     the consensus lists, and valid at x.Now;
//   - signature: the certified key signed the nonce and the report.
//
// Each check stands alone (report_data and signature use the nonce the
// answer carries, freshness ties it to the caller's), so that an answer
// wrong in one respect fails exactly that line. A pass needs every line,
// and the SNP checks (SNPInputs) besides. The error is for an incomplete x
// or a malformed e; a well-formed answer always gets its four verdicts.
func Check(e *Evidence, x Expected) (Verdicts, error) {
	if err := x.validate(); err != nil {
		return nil, err
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	relay := "$" + x.RSAFingerprint
	vs := make(Verdicts, 0, 4)
	add := func(check string, ok bool, format string, args ...any) {
		vs = append(vs, Verdict{Check: check, OK: ok, Detail: fmt.Sprintf(format, args...)})
	}

	if bytes.Equal(e.Nonce, x.Nonce) {
		add(CheckFreshness, true, "the answer is to this request's nonce")
	} else {
		add(CheckFreshness, false, "the answer is to another nonce (%x…), not this request's: a replayed or stale answer", e.Nonce[:8])
	}

	got, err := reportData(e.Report)
	switch {
	case err != nil:
		add(CheckReportData, false, "%v", err)
	case got == x.wantReportData(e.Nonce):
		add(CheckReportData, true, "the report binds relay %s, ed25519 %s and image %s", relay, torid.Ed25519ID(x.Ed25519Master), x.ImageDigest)
	default:
		add(CheckReportData, false, "the report does not bind relay %s (ed25519 %s) running image %s: %s", relay, torid.Ed25519ID(x.Ed25519Master), x.ImageDigest, whyReportData(e, x, got))
	}

	cert, err := torid.ParseCert(e.SigningCert)
	if err == nil {
		err = cert.CheckSigningCert(x.Ed25519Master, x.Now)
	}
	if err != nil {
		add(CheckSigningCert, false, "signing certificate: %v", err)
	} else {
		add(CheckSigningCert, true, "the signing key is certified by ed25519 %s until %s", torid.Ed25519ID(x.Ed25519Master), cert.Expires.Format(time.RFC3339))
	}

	if cert == nil {
		add(CheckSignature, false, "no signing key: the certificate is unreadable")
	} else if ed25519.Verify(cert.SigningKey(), protocol.PublicSignedMessage(e.Nonce, e.Report), e.Signature) {
		add(CheckSignature, true, "the key the certificate certifies signed the nonce and the report")
	} else {
		add(CheckSignature, false, "the signature over the nonce and the report is not by the key the certificate certifies: whoever answered does not hold that signing key")
	}
	return vs, nil
}

// whyReportData says what the report binds instead, as far as the answer's
// own claims tell.
func whyReportData(e *Evidence, x Expected, got [protocol.ReportDataSize]byte) string {
	claimedMaster, err := torid.ParseEd25519ID(e.Ed25519ID)
	claimedRSA, err2 := hex.DecodeString(e.RSAFingerprint)
	if err != nil || err2 != nil || got != protocol.PublicReportData(e.Nonce, claimedMaster, claimedRSA, e.ImageDigest) {
		return "it binds none of what the answer claims either (another relay's report, or made for another request)"
	}
	var diffs []string
	if e.RSAFingerprint != x.RSAFingerprint {
		diffs = append(diffs, "relay $"+e.RSAFingerprint)
	}
	if !bytes.Equal(claimedMaster, x.Ed25519Master) {
		diffs = append(diffs, "ed25519 "+e.Ed25519ID)
	}
	if e.ImageDigest != x.ImageDigest {
		diffs = append(diffs, "image "+e.ImageDigest)
	}
	return "it binds " + strings.Join(diffs, ", ") + ", as the answer says"
}
