package relayproof_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/verify/trust"

	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/relayproof"
	"diskless-relays/tools/broker/internal/snpcheck"
	"diskless-relays/tools/broker/internal/snpsim"
	"diskless-relays/tools/broker/internal/torid"
	"diskless-relays/tools/broker/internal/torid/toridtest"
)

// The relays' keys are tor's (made for each run by tor itself:
// internal/torid/toridtest/make-fixtures.sh);
// the reports come from the SNP simulator. What a verifier expects is taken
// from tor's own output about those keys, standing in for the consensus.

var keysDir string

var (
	simDir      string
	sim         *snpsim.Simulator
	measurement = bytes.Repeat([]byte{0x42}, 48)
	imageDigest = strings.Repeat("ab", 32)
	otherImage  = strings.Repeat("cd", 32)
)

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "relayproof-sim-")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		keys, cleanup, err := toridtest.Make("../torid/toridtest/make-fixtures.sh")
		if err != nil {
			panic(err)
		}
		defer cleanup()
		keysDir = keys
		simDir = filepath.Join(dir, "sim")
		// 2048-bit test roots: the chain's shape, not AMD's key size, is
		// what the checks exercise, and they are made in a second.
		if err := snpsim.Init(simDir, snpsim.InitOptions{RSABits: 2048}); err != nil {
			panic(err)
		}
		if sim, err = snpsim.Load(simDir, snpsim.Options{Measurement: measurement}); err != nil {
			panic(err)
		}
		return m.Run()
	}()
	os.Exit(code)
}

func getReport(_ context.Context, rd [protocol.ReportDataSize]byte) ([]byte, []byte, error) {
	return sim.Report(rd)
}

// torSays is the value on the one "NICKNAME VALUE" line tor printed into a
// fixture file, without the spaces tor puts into RSA fingerprints.
func torSays(t testing.TB, relay, file string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(keysDir, relay, file))
	if err != nil {
		t.Fatal(err)
	}
	_, value, ok := strings.Cut(strings.TrimSpace(string(data)), " ")
	if !ok {
		t.Fatalf("%s/%s: not a \"NICKNAME VALUE\" line", relay, file)
	}
	return strings.ReplaceAll(value, " ", "")
}

// expected is what a verifier knows about a relay from the directory (here:
// from tor's own fingerprints), with its nonce and the image it expects.
func expected(t testing.TB, relay string, nonce []byte, image string) relayproof.Expected {
	t.Helper()
	master, err := base64.RawStdEncoding.DecodeString(torSays(t, relay, "tor-list-fingerprint-ed25519.txt"))
	if err != nil || len(master) != 32 {
		t.Fatalf("tor's ed25519 identity: %v", err)
	}
	expiry, err := os.ReadFile(filepath.Join(keysDir, relay, "tor-key-expiration.txt"))
	if err != nil {
		t.Fatal(err)
	}
	// A fixed time an hour before tor's expiry of the relay's certificate,
	// so that the test means the same thing on any day.
	until, err := time.Parse("signing-cert-expiry: 2006-01-02 15:04:05", strings.TrimSpace(string(expiry)))
	if err != nil {
		t.Fatal(err)
	}
	return relayproof.Expected{
		Nonce:          nonce,
		RSAFingerprint: torSays(t, relay, "tor-list-fingerprint-rsa.txt"),
		Ed25519Master:  ed25519.PublicKey(master),
		ImageDigest:    image,
		Now:            until.Add(-time.Hour),
	}
}

func loadKeys(t *testing.T, relay string) *torid.RelayKeys {
	t.Helper()
	k, err := torid.LoadRelayKeys(filepath.Join(keysDir, relay))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newNonce() []byte {
	n := make([]byte, protocol.NonceSize)
	rand.Read(n)
	return n
}

func answer(t *testing.T, keys *torid.RelayKeys, nonce []byte, image string) *relayproof.Evidence {
	t.Helper()
	e, err := relayproof.Make(context.Background(), getReport, keys, nonce, relayproof.Image{Relay: "relay-a", Digest: image, BuildRecord: "https://example.org/builds/" + image + ".json"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func check(t *testing.T, e *relayproof.Evidence, x relayproof.Expected) relayproof.Verdicts {
	t.Helper()
	vs, err := relayproof.Check(e, x)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, v := range vs {
		names = append(names, v.Check)
	}
	want := []string{relayproof.CheckFreshness, relayproof.CheckReportData, relayproof.CheckSigningCert, relayproof.CheckSignature}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("verdicts %v, want %v", names, want)
	}
	for _, v := range vs {
		if strings.Contains(v.String(), "\n") {
			t.Fatalf("verdict line with a newline: %q", v.String())
		}
	}
	return vs
}

// A genuine answer passes every check; and the parts a verifier checks with
// other tools hold independently of Check: the signature verifies with
// crypto/ed25519 under the key tor certified, and snpcheck (the broker's SNP
// checks, with the simulator's roots) accepts the report for the REPORT_DATA
// SNPInputs names.
func TestGenuineAnswerPasses(t *testing.T) {
	keys, nonce := loadKeys(t, "relay-a"), newNonce()
	e := answer(t, keys, nonce, imageDigest)
	x := expected(t, "relay-a", nonce, imageDigest)
	vs := check(t, e, x)
	if !vs.OK() {
		t.Fatalf("genuine answer failed %v:\n%v", vs.Failed(), vs)
	}
	t.Logf("a genuine answer:\n%s", lines(vs))
	if e.Ed25519ID != torSays(t, "relay-a", "tor-list-fingerprint-ed25519.txt") || e.RSAFingerprint != x.RSAFingerprint {
		t.Errorf("the answer names %s %s", e.Ed25519ID, e.RSAFingerprint)
	}
	certFile, err := os.ReadFile(filepath.Join(keysDir, "relay-a", torid.SigningCertFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.SigningCert, certFile[32:]) {
		t.Error("the answer's certificate is not tor's ed25519_signing_cert body")
	}
	// The certified key sits at bytes 7..39 of the certificate (cert-spec.txt).
	if !ed25519.Verify(ed25519.PublicKey(certFile[32+7:32+39]), protocol.PublicSignedMessage(nonce, e.Report), e.Signature) {
		t.Error("the signature does not verify with crypto/ed25519 under the key tor certified")
	}

	report, certs, want, err := relayproof.SNPInputs(e, x)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := os.ReadFile(filepath.Join(simDir, snpsim.ArkAskFile))
	if err != nil {
		t.Fatal(err)
	}
	line, roots, err := snpcheck.ParseRootsPEM(chain)
	if err != nil {
		t.Fatal(err)
	}
	policy := &snpcheck.Policy{SimulatedRoots: map[string][]*trust.AMDRootCerts{line: {roots}}, AllowSMT: true}
	if _, ref := policy.Check(report, certs, want, [][]byte{measurement}); ref != nil {
		t.Fatalf("snpcheck refused the genuine answer's report: %v", ref)
	}
	// The same seam refuses the report for another nonce.
	_, _, stale, err := relayproof.SNPInputs(e, expected(t, "relay-a", newNonce(), imageDigest))
	if err != nil {
		t.Fatal(err)
	}
	if _, ref := policy.Check(report, certs, stale, [][]byte{measurement}); ref == nil || ref.Code != snpcheck.CodeReportData {
		t.Fatalf("snpcheck with another nonce: %v", ref)
	}
}

// assertOnlyFails checks that exactly the named verdict failed.
func assertOnlyFails(t *testing.T, vs relayproof.Verdicts, check string) {
	t.Helper()
	if failed := vs.Failed(); !reflect.DeepEqual(failed, []string{check}) {
		t.Fatalf("failed %v, want only %s:\n%s", failed, check, lines(vs))
	}
	if vs.OK() {
		t.Fatal("OK with a failed check")
	}
}

func lines(vs relayproof.Verdicts) string {
	var b strings.Builder
	for _, v := range vs {
		fmt.Fprintln(&b, v)
	}
	return b.String()
}

// Each kind of wrong answer fails on its own line and no other.
func TestEachWrongAnswerFailsItsOwnCheck(t *testing.T) {
	a, b := loadKeys(t, "relay-a"), loadKeys(t, "relay-b")
	nonce := newNonce()
	xA := expected(t, "relay-a", nonce, imageDigest)

	t.Run("a replayed answer to an old nonce", func(t *testing.T) {
		old := answer(t, a, newNonce(), imageDigest)
		assertOnlyFails(t, check(t, old, xA), relayproof.CheckFreshness)
	})

	t.Run("another relay's report, signed with this relay's keys", func(t *testing.T) {
		// Relay A's keys copied out of its guest, answering with a genuine
		// report from relay B's guest made for this nonce.
		other := answer(t, b, nonce, imageDigest)
		e := answer(t, a, nonce, imageDigest)
		e.Report, e.Certs = other.Report, other.Certs
		e.Signature = a.SigningKey.Sign(protocol.PublicSignedMessage(nonce, e.Report))
		assertOnlyFails(t, check(t, e, xA), relayproof.CheckReportData)
	})

	t.Run("a signature by another relay's signing key", func(t *testing.T) {
		e := answer(t, a, nonce, imageDigest)
		e.Signature = b.SigningKey.Sign(protocol.PublicSignedMessage(nonce, e.Report))
		assertOnlyFails(t, check(t, e, xA), relayproof.CheckSignature)
	})

	t.Run("a certificate for another master identity", func(t *testing.T) {
		// Relay B's certificate, and its key's signature, in relay A's answer.
		e := answer(t, a, nonce, imageDigest)
		e.SigningCert = b.Cert.Raw
		e.Signature = b.SigningKey.Sign(protocol.PublicSignedMessage(nonce, e.Report))
		assertOnlyFails(t, check(t, e, xA), relayproof.CheckSigningCert)
	})

	t.Run("an expired certificate", func(t *testing.T) {
		expired := loadExpired(t, a)
		e := answer(t, expired, nonce, imageDigest)
		vs := check(t, e, xA)
		assertOnlyFails(t, vs, relayproof.CheckSigningCert)
		if !strings.Contains(vs[2].Detail, "expired") {
			t.Fatalf("signing_cert: %s", vs[2].Detail)
		}
	})

	t.Run("REPORT_DATA over another image digest", func(t *testing.T) {
		e := answer(t, a, nonce, otherImage)
		vs := check(t, e, xA)
		assertOnlyFails(t, vs, relayproof.CheckReportData)
		if !strings.Contains(vs[1].Detail, "image "+otherImage) {
			t.Fatalf("report_data does not name the image the report binds: %s", vs[1].Detail)
		}
	})

	// The whole answer of relay B, checked as relay A's: B's report and B's
	// certificate both give it away.
	t.Run("another relay's whole answer", func(t *testing.T) {
		e := answer(t, b, nonce, imageDigest)
		vs := check(t, e, xA)
		if failed := vs.Failed(); !reflect.DeepEqual(failed, []string{relayproof.CheckReportData, relayproof.CheckSigningCert}) {
			t.Fatalf("failed %v:\n%s", failed, lines(vs))
		}
		t.Logf("relay B's answer checked as relay A's:\n%s", lines(vs))
	})
}

// loadExpired is relay A with the signing key and certificate tor issued on
// a fake clock in 2024 (relay-a-expired, made by make-fixtures.sh).
func loadExpired(t *testing.T, a *torid.RelayKeys) *torid.RelayKeys {
	t.Helper()
	dir := filepath.Join(keysDir, "relay-a-expired")
	certFile, err := os.ReadFile(filepath.Join(dir, torid.SigningCertFile))
	if err != nil {
		t.Fatal(err)
	}
	keyFile, err := os.ReadFile(filepath.Join(dir, torid.SigningSecretKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := torid.ParseSigningCertFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := torid.ParseSigningSecretKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &torid.RelayKeys{Master: a.Master, RSAFingerprint: a.RSAFingerprint, Cert: cert, SigningKey: key}
}

func TestMakeRefuses(t *testing.T) {
	a, b := loadKeys(t, "relay-a"), loadKeys(t, "relay-b")
	ctx := context.Background()
	if _, err := relayproof.Make(ctx, getReport, a, make([]byte, 31), relayproof.Image{Relay: "relay-a", Digest: imageDigest}); err == nil {
		t.Error("a 31-byte nonce")
	}
	if _, err := relayproof.Make(ctx, getReport, a, newNonce(), relayproof.Image{Relay: "relay-a", Digest: strings.ToUpper(imageDigest)}); err == nil {
		t.Error("an upper-case image digest")
	}
	mixed := *a
	mixed.SigningKey = b.SigningKey
	if _, err := relayproof.Make(ctx, getReport, &mixed, newNonce(), relayproof.Image{Relay: "relay-a", Digest: imageDigest}); err == nil {
		t.Error("a signing key the certificate does not certify")
	}
	// A secure processor that ignores the REPORT_DATA it is given.
	ignoring := func(ctx context.Context, _ [protocol.ReportDataSize]byte) ([]byte, []byte, error) {
		return getReport(ctx, [protocol.ReportDataSize]byte{1})
	}
	if _, err := relayproof.Make(ctx, ignoring, a, newNonce(), relayproof.Image{Relay: "relay-a", Digest: imageDigest}); err == nil {
		t.Error("a report without the requested REPORT_DATA")
	}
	if _, err := relayproof.Make(ctx, getReport, a, newNonce(), relayproof.Image{Relay: "relay-a", Digest: imageDigest, BuildRecord: "two words"}); err == nil {
		t.Error("a build record with a space")
	}
	if _, err := relayproof.Make(ctx, getReport, a, newNonce(), relayproof.Image{Relay: "Relay A", Digest: imageDigest}); err == nil {
		t.Error("a relay name the log could not hold")
	}
}

func TestCheckRefusesAnIncompleteExpectation(t *testing.T) {
	a, nonce := loadKeys(t, "relay-a"), newNonce()
	e := answer(t, a, nonce, imageDigest)
	good := expected(t, "relay-a", nonce, imageDigest)
	for name, change := range map[string]func(*relayproof.Expected){
		"no nonce":           func(x *relayproof.Expected) { x.Nonce = nil },
		"no master identity": func(x *relayproof.Expected) { x.Ed25519Master = nil },
		"lower-case RSA":     func(x *relayproof.Expected) { x.RSAFingerprint = strings.ToLower(x.RSAFingerprint) },
		"no image":           func(x *relayproof.Expected) { x.ImageDigest = "" },
		"no time":            func(x *relayproof.Expected) { x.Now = time.Time{} },
	} {
		x := good
		change(&x)
		if vs, err := relayproof.Check(e, x); err == nil {
			t.Errorf("%s: checked (%v)", name, vs)
		}
	}
}

func TestEvidenceJSON(t *testing.T) {
	a, nonce := loadKeys(t, "relay-a"), newNonce()
	e := answer(t, a, nonce, imageDigest)
	data, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := relayproof.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, e) {
		t.Fatal("the evidence changed on its way through JSON")
	}
	if !check(t, back, expected(t, "relay-a", nonce, imageDigest)).OK() {
		t.Fatal("the decoded evidence fails")
	}

	var fields map[string]any
	if err := json.Unmarshal(data, &fields); err != nil {
		t.Fatal(err)
	}
	encode := func(change func(map[string]any)) []byte {
		m := map[string]any{}
		for k, v := range fields {
			m[k] = v
		}
		change(m)
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	bad := map[string][]byte{
		"unknown field":      encode(func(m map[string]any) { m["extra"] = 1 }),
		"field in capitals":  encode(func(m map[string]any) { m["NONCE"] = m["nonce"]; delete(m, "nonce") }),
		"nonce of 31 bytes":  encode(func(m map[string]any) { m["nonce"] = b64(31) }),
		"no nonce":           encode(func(m map[string]any) { delete(m, "nonce") }),
		"null report":        encode(func(m map[string]any) { m["report"] = nil }),
		"report of 1183":     encode(func(m map[string]any) { m["report"] = b64(1183) }),
		"certs over 64 KiB":  encode(func(m map[string]any) { m["certs"] = b64(protocol.MaxCertTableSize + 1) }),
		"certs and vcek":     encode(func(m map[string]any) { m["vcek"] = b64(100) }),
		"vcek over 16 KiB":   encode(func(m map[string]any) { delete(m, "certs"); m["vcek"] = b64(relayproof.MaxVCEKSize + 1) }),
		"signature of 63":    encode(func(m map[string]any) { m["signature"] = b64(63) }),
		"garbage cert":       encode(func(m map[string]any) { m["signingCert"] = b64(140) }),
		"spaced fingerprint": encode(func(m map[string]any) { m["rsaFingerprint"] = "BC4C 3069" }),
		"padded ed25519 id":  encode(func(m map[string]any) { m["ed25519Id"] = m["ed25519Id"].(string) + "=" }),
		"short image digest": encode(func(m map[string]any) { m["imageDigest"] = "abcd" }),
		"newline in record":  encode(func(m map[string]any) { m["buildRecord"] = "https://x\nFAIL" }),
		"no relay name":      encode(func(m map[string]any) { delete(m, "relay") }),
		"relay in capitals":  encode(func(m map[string]any) { m["relay"] = "RELAY-A" }),
		"long build record":  encode(func(m map[string]any) { m["buildRecord"] = strings.Repeat("a", relayproof.MaxBuildRecordSize+1) }),
		"base64url nonce": encode(func(m map[string]any) {
			m["nonce"] = strings.TrimRight(base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 32)), "=")
		}),
		"trailing data": append(bytes.Clone(data), []byte(" {}")...),
		"an array":      []byte("[" + string(data) + "]"),
		"oversized":     append(bytes.Clone(data), bytes.Repeat([]byte(" "), relayproof.MaxEvidenceSize)...),
	}
	// A field twice: the decoder must not let the last one win silently.
	bad["duplicate field"] = bytes.Replace(data, []byte(`{"nonce":`), []byte(`{"nonce":"`+b64(32)+`","nonce":`), 1)
	if !bytes.HasPrefix(data, []byte(`{"nonce":`)) {
		t.Fatal("the encoding no longer starts with the nonce: fix this test's duplicate")
	}
	for name, doc := range bad {
		if _, err := relayproof.Decode(doc); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}

	// The VCEK alone reaches the SNP checks as a one-entry certificate table.
	withVCEK := *e
	withVCEK.Certs, withVCEK.VCEK = nil, []byte("vcek der")
	if err := withVCEK.Validate(); err != nil {
		t.Fatal(err)
	}
	if table := withVCEK.CertTable(); !bytes.Contains(table, []byte("vcek der")) {
		t.Fatal("the VCEK is not in the certificate table")
	}
}
