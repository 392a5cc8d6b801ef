package torid_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"diskless-relays/tools/broker/internal/torid"
	"diskless-relays/tools/broker/internal/torid/toridtest"
)

// The fixtures are tor's own files, made afresh for each run by real tor
// (toridtest/make-fixtures.sh says how); every expected value below comes
// from what tor printed about them, never from this package.
var keysDir string

func TestMain(m *testing.M) {
	dir, cleanup, err := toridtest.Make("toridtest/make-fixtures.sh")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	keysDir = dir
	code := m.Run()
	cleanup()
	os.Exit(code)
}

func fixture(t *testing.T, relay, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(keysDir, relay, file))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// torSays returns the second field of the one line tor printed into file
// ("NICKNAME VALUE…"), with the spaces tor puts into RSA fingerprints removed.
func torSays(t *testing.T, relay, file string) string {
	t.Helper()
	line := strings.TrimSpace(string(fixture(t, relay, file)))
	_, value, ok := strings.Cut(line, " ")
	if !ok || strings.Contains(line, "\n") {
		t.Fatalf("%s/%s: not one \"NICKNAME VALUE\" line: %q", relay, file, line)
	}
	return strings.ReplaceAll(value, " ", "")
}

// torExpiry is the signing certificate's expiry as tor --key-expiration
// printed it.
func torExpiry(t *testing.T, relay string) time.Time {
	t.Helper()
	line := strings.TrimSpace(string(fixture(t, relay, "tor-key-expiration.txt")))
	at, err := time.Parse("signing-cert-expiry: 2006-01-02 15:04:05", line)
	if err != nil {
		t.Fatalf("%s: %v", relay, err)
	}
	return at
}

func master(t *testing.T, relay string) ed25519.PublicKey {
	t.Helper()
	m, err := torid.ParseMasterPublicKey(fixture(t, relay, torid.MasterPublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func cert(t *testing.T, relay string) *torid.Cert {
	t.Helper()
	c, err := torid.ParseSigningCertFile(fixture(t, relay, torid.SigningCertFile))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func signingKey(t *testing.T, relay string) *torid.SigningKey {
	t.Helper()
	k, err := torid.ParseSigningSecretKey(fixture(t, relay, torid.SigningSecretKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The master identity in microdescriptor form is what tor --list-fingerprint
// ed25519 prints, and reads back to the same key.
func TestMasterIdentityIsTorsFingerprint(t *testing.T) {
	ids := map[string]bool{}
	for _, relay := range []string{"relay-a", "relay-b"} {
		want := torSays(t, relay, "tor-list-fingerprint-ed25519.txt")
		m := master(t, relay)
		if got := torid.Ed25519ID(m); got != want {
			t.Errorf("%s: identity %s, tor says %s", relay, got, want)
		}
		back, err := torid.ParseEd25519ID(want)
		if err != nil || !bytes.Equal(back, m) {
			t.Errorf("%s: ParseEd25519ID(%s) = %x, %v", relay, want, back, err)
		}
		ids[want] = true
	}
	if len(ids) != 2 {
		t.Fatal("the two fixture relays share an identity: remake the fixtures")
	}
}

func TestParseEd25519IDRefusesOtherSpellings(t *testing.T) {
	id := torSays(t, "relay-a", "tor-list-fingerprint-ed25519.txt")
	raw, _ := base64.RawStdEncoding.DecodeString(id)
	urlForm := base64.RawURLEncoding.EncodeToString(raw)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for name, s := range map[string]string{
		"padded": id + "=",
		"short":  id[:42],
		"space":  " " + id[1:],
		"hex":    hex.EncodeToString(raw),
		// The last character carries 2 bits beyond the 256: set one.
		"trailing-bits": id[:42] + string(alphabet[strings.IndexByte(alphabet, id[42])|1]),
	} {
		if _, err := torid.ParseEd25519ID(s); err == nil {
			t.Errorf("%s: %q accepted", name, s)
		}
	}
	// The URL alphabet is refused only when it differs from the standard one.
	if urlForm != id {
		if _, err := torid.ParseEd25519ID(urlForm); err == nil {
			t.Errorf("URL-safe base64 %q accepted", urlForm)
		}
	}
}

func TestRSAFingerprintIsTors(t *testing.T) {
	for _, relay := range []string{"relay-a", "relay-b"} {
		want := torSays(t, relay, "tor-list-fingerprint-rsa.txt")
		got, err := torid.RSAFingerprint(fixture(t, relay, torid.SecretIDKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		if got != want || !torid.ValidRSAFingerprint(got) {
			t.Errorf("%s: fingerprint %s, tor says %s", relay, got, want)
		}
	}
	// tor --list-fingerprint prints it in groups of four; people paste it
	// with a "$" and in lower case.
	spaced := strings.TrimSpace(strings.SplitN(string(fixture(t, "relay-a", "tor-list-fingerprint-rsa.txt")), " ", 2)[1])
	want := torSays(t, "relay-a", "tor-list-fingerprint-rsa.txt")
	for _, pasted := range []string{spaced, "$" + want, strings.ToLower(want), " " + want + "\n"} {
		if got, err := torid.ParseRSAFingerprint(pasted); err != nil || got != want {
			t.Errorf("ParseRSAFingerprint(%q) = %q, %v; want %s", pasted, got, err, want)
		}
	}
	for _, bad := range []string{want[:39], want + "0", "$$" + want, strings.Replace(want, want[:1], "G", 1), ""} {
		if _, err := torid.ParseRSAFingerprint(bad); err == nil {
			t.Errorf("ParseRSAFingerprint(%q) accepted", bad)
		}
	}
	if _, err := torid.RSAFingerprint(fixture(t, "relay-a", torid.SigningSecretKeyFile)); err == nil {
		t.Error("an ed25519 key file read as secret_id_key")
	}
	for _, bad := range []string{"bc4c30698bb6d6b22e4c037bf769c7b9365e1b01", "BC4C 3069 8BB6 D6B2 2E4C 037B F769 C7B9 365E 1B01", "BC4C30698BB6D6B22E4C037BF769C7B9365E1B0", "$BC4C30698BB6D6B22E4C037BF769C7B9365E1B01"} {
		if torid.ValidRSAFingerprint(bad) {
			t.Errorf("%q valid", bad)
		}
	}
}

// tor's certificate is valid up to the second tor --key-expiration names and
// expired one second later; it certifies the key in tor's secret key file.
func TestSigningCertAsTorSeesIt(t *testing.T) {
	for _, relay := range []string{"relay-a", "relay-b"} {
		c, m, expiry := cert(t, relay), master(t, relay), torExpiry(t, relay)
		if !c.Expires.Equal(expiry) {
			t.Errorf("%s: expires %s, tor says %s", relay, c.Expires, expiry)
		}
		if c.Version != 1 || c.Type != 4 || c.KeyType != 1 || !bytes.Equal(c.SignedWith, m) {
			t.Errorf("%s: version %d type %d key type %d signed with %x", relay, c.Version, c.Type, c.KeyType, c.SignedWith)
		}
		for _, at := range []time.Time{expiry.Add(-30 * 24 * time.Hour), expiry.Add(-time.Second), expiry} {
			if err := c.CheckSigningCert(m, at); err != nil {
				t.Errorf("%s at %s: %v", relay, at, err)
			}
		}
		if err := c.CheckSigningCert(m, expiry.Add(time.Second)); !errors.Is(err, torid.ErrExpired) {
			t.Errorf("%s one second after expiry: %v", relay, err)
		}
		if !bytes.Equal(c.SigningKey(), signingKey(t, relay).Public()) {
			t.Errorf("%s: the secret key's public half is not the key tor certified", relay)
		}
	}
}

// A certificate tor issued on a fake clock in 2024 is expired now (tor said
// so on the real clock), and was good before its expiry: only the time fails.
func TestExpiredCertificate(t *testing.T) {
	if got := strings.TrimSpace(string(fixture(t, "relay-a-expired", "tor-verdict-today.txt"))); !strings.Contains(got, "expired") {
		t.Fatalf("tor did not call the fixture expired: %q", got)
	}
	c, m, expiry := cert(t, "relay-a-expired"), master(t, "relay-a"), torExpiry(t, "relay-a-expired")
	if !c.Expires.Equal(expiry) {
		t.Fatalf("expires %s, tor says %s", c.Expires, expiry)
	}
	if err := c.CheckSigningCert(m, time.Now()); !errors.Is(err, torid.ErrExpired) {
		t.Errorf("now: %v", err)
	}
	if err := c.CheckSigningCert(m, expiry.Add(-time.Hour)); err != nil {
		t.Errorf("before its expiry: %v", err)
	}
}

func TestCertificateForAnotherMaster(t *testing.T) {
	c := cert(t, "relay-b")
	err := c.CheckSigningCert(master(t, "relay-a"), torExpiry(t, "relay-b").Add(-time.Hour))
	if !errors.Is(err, torid.ErrOtherMaster) {
		t.Fatalf("relay B's certificate against relay A's identity: %v", err)
	}
	// Without the extension naming its issuer, the signature gives it away.
	c.SignedWith = nil
	err = c.CheckSigningCert(master(t, "relay-a"), torExpiry(t, "relay-b").Add(-time.Hour))
	if !errors.Is(err, torid.ErrBadSignature) {
		t.Fatalf("relay B's certificate without its extension, against relay A's identity: %v", err)
	}
}

// Every single-bit change anywhere in tor's certificate is refused, by the
// parser or by the check; no change passes.
func TestTamperedCertificate(t *testing.T) {
	raw := cert(t, "relay-a").Raw
	m, at := master(t, "relay-a"), torExpiry(t, "relay-a").Add(-time.Hour)
	for i := range raw {
		for bit := 0; bit < 8; bit++ {
			changed := bytes.Clone(raw)
			changed[i] ^= 1 << bit
			c, err := torid.ParseCert(changed)
			if err == nil {
				err = c.CheckSigningCert(m, at)
			}
			if err == nil {
				t.Fatalf("byte %d bit %d changed: accepted", i, bit)
			}
		}
	}
	// A change in the certified key is a signature failure, not a parse error.
	changed := bytes.Clone(raw)
	changed[10] ^= 0x80
	c, err := torid.ParseCert(changed)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckSigningCert(m, at); !errors.Is(err, torid.ErrBadSignature) {
		t.Fatalf("changed certified key: %v", err)
	}
}

// The oracle for the signing arithmetic is crypto/ed25519: a key tor would
// store for the seed crypto/ed25519 uses (SHA-512 of the seed, scalar
// clamped) signs exactly as crypto/ed25519 signs with that seed.
func TestSignEqualsCryptoEd25519(t *testing.T) {
	for i := 0; i < 20; i++ {
		seed := make([]byte, ed25519.SeedSize)
		rand.Read(seed)
		std := ed25519.NewKeyFromSeed(seed)
		expanded := sha512.Sum512(seed)
		expanded[0] &= 248
		expanded[31] &= 127
		expanded[31] |= 64
		file := append(header("ed25519v1-secret: type4"), expanded[:]...)
		k, err := torid.ParseSigningSecretKey(file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(k.Public(), std.Public().(ed25519.PublicKey)) {
			t.Fatalf("public key %x, crypto/ed25519 says %x", k.Public(), std.Public())
		}
		msg := make([]byte, i*97)
		rand.Read(msg)
		if got, want := k.Sign(msg), ed25519.Sign(std, msg); !bytes.Equal(got, want) {
			t.Fatalf("message of %d bytes: signature %x, crypto/ed25519 signs %x", len(msg), got, want)
		}
	}
}

// Signatures by tor's signing keys verify, with crypto/ed25519, under the
// key tor's certificate certifies, and under no other.
func TestSignWithTorsKey(t *testing.T) {
	a, b := signingKey(t, "relay-a"), signingKey(t, "relay-b")
	certA, certB := cert(t, "relay-a"), cert(t, "relay-b")
	for _, msg := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("relay"), 3000)} {
		sig := a.Sign(msg)
		if !ed25519.Verify(certA.SigningKey(), msg, sig) {
			t.Fatalf("relay A's signature of %d bytes does not verify under its certified key", len(msg))
		}
		if ed25519.Verify(certB.SigningKey(), msg, sig) {
			t.Fatal("relay A's signature verifies under relay B's key")
		}
		if ed25519.Verify(certA.SigningKey(), append(bytes.Clone(msg), 0), sig) {
			t.Fatal("a signature verifies for another message")
		}
		if !ed25519.Verify(certB.SigningKey(), msg, b.Sign(msg)) {
			t.Fatal("relay B's signature does not verify")
		}
	}
}

// The secret never shows in anything fmt prints about the key.
func TestSigningKeyPrintsNoSecret(t *testing.T) {
	body := fixture(t, "relay-a", torid.SigningSecretKeyFile)[32:]
	k := signingKey(t, "relay-a")
	printed := fmt.Sprintf("%v %+v %#v %s %v %+v %#v", k, k, k, k, *k, *k, *k)
	for _, half := range [][]byte{body[:32], body[32:]} {
		for _, form := range []string{string(half[:8]), hex.EncodeToString(half[:8]), fmt.Sprint(half[:8])[1:12], base64.StdEncoding.EncodeToString(half[:9])} {
			if strings.Contains(printed, form) {
				t.Fatalf("the printed key contains secret bytes (%q)", form)
			}
		}
	}
	if !strings.Contains(printed, torid.Ed25519ID(k.Public())) {
		t.Fatalf("the printed key does not name its public half: %s", printed)
	}
}

// header is a tor key file's 32-byte header.
func header(s string) []byte {
	h := make([]byte, 32)
	copy(h, "== "+s+" ==")
	return h
}

// makeCert encodes a certificate and signs it with signer, for the rules of
// cert-spec.txt that tor's own files do not exercise.
func makeCert(signer ed25519.PrivateKey, certType, keyType byte, expiresHours uint32, certified []byte, exts []torid.Extension, trailing []byte) []byte {
	var b []byte
	b = append(b, 1, certType)
	b = binary.BigEndian.AppendUint32(b, expiresHours)
	b = append(b, keyType)
	b = append(b, certified...)
	b = append(b, byte(len(exts)))
	for _, e := range exts {
		b = binary.BigEndian.AppendUint16(b, uint16(len(e.Data)))
		b = append(b, e.Type, e.Flags)
		b = append(b, e.Data...)
	}
	b = append(b, ed25519.Sign(signer, b)...)
	return append(b, trailing...)
}

func TestCertificateRules(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	certified := make([]byte, 32)
	rand.Read(certified)
	hours := uint32(time.Now().Add(48*time.Hour).Unix() / 3600)
	now := time.Now()
	withKey := torid.Extension{Type: 4, Data: pub}
	cases := []struct {
		name      string
		raw       []byte
		parseFail bool
		checkErr  error
	}{
		{"tor's layout", makeCert(priv, 4, 1, hours, certified, []torid.Extension{withKey}, nil), false, nil},
		{"no signed-with-key extension", makeCert(priv, 4, 1, hours, certified, nil, nil), false, nil},
		{"unknown extension, not affecting validation", makeCert(priv, 4, 1, hours, certified, []torid.Extension{withKey, {Type: 9, Data: []byte("later")}}, nil), false, nil},
		{"unknown extension affecting validation", makeCert(priv, 4, 1, hours, certified, []torid.Extension{withKey, {Type: 9, Flags: 1, Data: []byte("later")}}, nil), true, nil},
		{"signed-with-key extension of 31 bytes", makeCert(priv, 4, 1, hours, certified, []torid.Extension{{Type: 4, Data: pub[:31]}}, nil), true, nil},
		{"two signed-with-key extensions", makeCert(priv, 4, 1, hours, certified, []torid.Extension{withKey, withKey}, nil), true, nil},
		{"trailing byte", makeCert(priv, 4, 1, hours, certified, []torid.Extension{withKey}, []byte{0}), true, nil},
		{"link certificate (type 5)", makeCert(priv, 5, 1, hours, certified, []torid.Extension{withKey}, nil), false, torid.ErrNotSigningCert},
		{"certifies a SHA-256 digest (key type 3)", makeCert(priv, 4, 3, hours, certified, []torid.Extension{withKey}, nil), false, torid.ErrNotSigningCert},
		{"extension names another key", makeCert(priv, 4, 1, hours, certified, []torid.Extension{{Type: 4, Data: other}}, nil), false, torid.ErrOtherMaster},
		{"expired an hour ago", makeCert(priv, 4, 1, uint32(now.Unix()/3600)-1, certified, []torid.Extension{withKey}, nil), false, torid.ErrExpired},
	}
	for _, tc := range cases {
		c, err := torid.ParseCert(tc.raw)
		if tc.parseFail {
			if err == nil || !errors.Is(err, torid.ErrMalformed) {
				t.Errorf("%s: parsed (%v)", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		err = c.CheckSigningCert(pub, now)
		if (tc.checkErr == nil) != (err == nil) || (tc.checkErr != nil && !errors.Is(err, tc.checkErr)) {
			t.Errorf("%s: check says %v, want %v", tc.name, err, tc.checkErr)
		}
	}
	// Version 2 is not a format this parser knows.
	v2 := makeCert(priv, 4, 1, hours, certified, nil, nil)
	v2[0] = 2
	if _, err := torid.ParseCert(v2); !errors.Is(err, torid.ErrMalformed) {
		t.Errorf("version 2: %v", err)
	}
	if _, err := torid.ParseCert(make([]byte, torid.MaxCertSize+1)); err == nil {
		t.Error("an oversized certificate parsed")
	}
}

// Each file is read only as itself: the header names what it is.
func TestKeyFilesAreReadOnlyAsThemselves(t *testing.T) {
	pubFile := fixture(t, "relay-a", torid.MasterPublicKeyFile)
	certFile := fixture(t, "relay-a", torid.SigningCertFile)
	secretFile := fixture(t, "relay-a", torid.SigningSecretKeyFile)
	if _, err := torid.ParseMasterPublicKey(secretFile[:64]); err == nil || !strings.Contains(err.Error(), torid.MasterPublicKeyFile) {
		t.Errorf("a secret key's first 64 bytes read as the master public key: %v", err)
	}
	if _, err := torid.ParseSigningCertFile(pubFile); err == nil {
		t.Error("the master public key read as a certificate")
	}
	if _, err := torid.ParseSigningSecretKey(certFile[:96]); err == nil {
		t.Error("a certificate read as a secret key")
	}
	if _, err := torid.ParseMasterPublicKey(pubFile[:63]); err == nil {
		t.Error("a truncated master key read")
	}
	if _, err := torid.ParseSigningSecretKey(secretFile[:95]); err == nil {
		t.Error("a truncated secret key read")
	}
	master := bytes.Clone(secretFile)
	copy(master, header("ed25519v1-secret: type0"))
	if _, err := torid.ParseSigningSecretKey(master); err == nil {
		t.Error("a master secret key (type0) read as the signing key")
	}
	zero := append(header("ed25519v1-secret: type4"), make([]byte, 64)...)
	if _, err := torid.ParseSigningSecretKey(zero); err == nil {
		t.Error("a zero scalar read as a key")
	}
	if _, err := torid.ParseSigningCertFile(certFile[:len(certFile)-1]); err == nil {
		t.Error("a truncated certificate read")
	}
}

func TestLoadRelayKeys(t *testing.T) {
	k, err := torid.LoadRelayKeys(filepath.Join(keysDir, "relay-a"))
	if err != nil {
		t.Fatal(err)
	}
	if torid.Ed25519ID(k.Master) != torSays(t, "relay-a", "tor-list-fingerprint-ed25519.txt") || k.RSAFingerprint != torSays(t, "relay-a", "tor-list-fingerprint-rsa.txt") {
		t.Fatalf("loaded %s %s", torid.Ed25519ID(k.Master), k.RSAFingerprint)
	}
	// An expired certificate still loads: the verifier judges the time.
	mixed := func(files map[string]string) string {
		dir := t.TempDir()
		for name, relay := range files {
			if err := os.WriteFile(filepath.Join(dir, name), fixture(t, relay, name), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	all := func(cert, key, masterOf string) map[string]string {
		return map[string]string{torid.MasterPublicKeyFile: masterOf, torid.SigningCertFile: cert, torid.SigningSecretKeyFile: key, torid.SecretIDKeyFile: "relay-a"}
	}
	if _, err := torid.LoadRelayKeys(mixed(all("relay-a-expired", "relay-a-expired", "relay-a"))); err != nil {
		t.Errorf("expired certificate: %v", err)
	}
	for name, files := range map[string]map[string]string{
		"relay B's certificate":    all("relay-b", "relay-b", "relay-a"),
		"relay B's signing key":    all("relay-a", "relay-b", "relay-a"),
		"another signing key of A": all("relay-a", "relay-a-expired", "relay-a"),
	} {
		if _, err := torid.LoadRelayKeys(mixed(files)); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	missing := all("relay-a", "relay-a", "relay-a")
	delete(missing, torid.SecretIDKeyFile)
	if _, err := torid.LoadRelayKeys(mixed(missing)); err == nil || !strings.Contains(err.Error(), torid.SecretIDKeyFile) {
		t.Errorf("missing %s: %v", torid.SecretIDKeyFile, err)
	}
}
