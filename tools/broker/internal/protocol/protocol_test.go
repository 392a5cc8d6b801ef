package protocol

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// The encoding, spelled out independently of writeFields: a change to the
// binding breaks this test (and every deployed agent).
func TestReportDataEncoding(t *testing.T) {
	nonce := bytes.Repeat([]byte{0x11}, 32)
	payload := bytes.Repeat([]byte{0x22}, 32)
	digest := strings.Repeat("ab", 32)
	var buf []byte
	for _, f := range [][]byte{[]byte("diskless-relays attestation v1"), []byte("relay-1"), []byte(digest), []byte("push"), nonce, []byte("age1xyz"), payload} {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(f)))
		buf = append(buf, f...)
	}
	want := sha512.Sum512(buf)
	got := ReportData("relay-1", digest, "push", nonce, "age1xyz", payload)
	if !bytes.Equal(got[:], want[:]) {
		t.Fatalf("ReportData = %x, want %x", got, want)
	}
}

func TestReportDataIsUnambiguous(t *testing.T) {
	n := bytes.Repeat([]byte{1}, 32)
	d := strings.Repeat("0", 64)
	base := ReportData("ab", d, "boot", n, "age1c", nil)
	variants := map[string][64]byte{
		"shifted relay/recipient": ReportData("a", d, "boot", n, "bage1c", nil),
		"purpose":                 ReportData("ab", d, "push", n, "age1c", nil),
		"nonce":                   ReportData("ab", d, "boot", bytes.Repeat([]byte{2}, 32), "age1c", nil),
		"recipient":               ReportData("ab", d, "boot", n, "age1d", nil),
		"digest":                  ReportData("ab", strings.Repeat("1", 64), "boot", n, "age1c", nil),
		"payload":                 ReportData("ab", d, "boot", n, "age1c", []byte{0}),
		"recipient into payload":  ReportData("ab", d, "boot", n, "age1", []byte("c")),
	}
	for name, v := range variants {
		if v == base {
			t.Errorf("%s: same REPORT_DATA", name)
		}
	}
	if ReportData("ab", d, "boot", n, "age1c", nil) != base {
		t.Error("not deterministic")
	}
}

func TestDigestsAreDomainSeparated(t *testing.T) {
	n := bytes.Repeat([]byte{1}, 32)
	x := bytes.Repeat([]byte{2}, 32)
	a := BootResponseDigest("r", "d", n, x)
	b := PushAckDigest("r", "d", n, x)
	if bytes.Equal(a, b) {
		t.Fatal("boot response and push ack digests collide")
	}
	rd := ReportData("r", "d", "boot", n, "", x)
	if bytes.Equal(rd[:], a) || bytes.Equal(rd[:], b) {
		t.Fatal("report data collides with a response digest")
	}
}

func TestBundleFileNames(t *testing.T) {
	for _, n := range append(append([]string{}, IdentityFiles...), MutableFiles...) {
		if !IsBundleFile(n) {
			t.Errorf("%s refused", n)
		}
	}
	for _, n := range []string{"", "keys", "keys/", "../state", "/state", "./state", "keys/../state", "keys//secret_id_key",
		"keys/secret_id_key/", "keys/ed25519_master_id_secret_key", "torrc", "state\x00", "KEYS/secret_id_key", "keys\\secret_id_key", "cached-descriptors", "cached-microdescs",
		"keys/.secret_family_key", "keys/../x.secret_family_key", "x.secret_family_key", "keys/a.b.secret_family_key", "keys/ops.secret_family_key.old"} {
		if IsBundleFile(n) {
			t.Errorf("%q allowed", n)
		}
	}
	for _, n := range []string{"keys/ops.secret_family_key", "keys/local.secret_family_key"} {
		if !IsBundleFile(n) || !IsShippedFile(n) || IsMutableFile(n) {
			t.Errorf("family key %s: bundle %v, shipped %v, mutable %v", n, IsBundleFile(n), IsShippedFile(n), IsMutableFile(n))
		}
	}
	for _, n := range IdentityFiles {
		if IsMutableFile(n) {
			t.Errorf("identity file %s is mutable", n)
		}
	}
}

func TestCheckFiles(t *testing.T) {
	ok := Files{"state": []byte("x"), "keys/secret_id_key": []byte("y")}
	if err := CheckFiles(ok, nil); err != nil {
		t.Fatal(err)
	}
	if err := CheckFiles(ok, IsMutableFile); err == nil {
		t.Error("identity file accepted by a mutable-only check")
	}
	if err := CheckFiles(Files{"state": make([]byte, MaxFileSize+1)}, nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized file: %v", err)
	}
	// Every listed file at its bound fits; family keys beyond the keys' room do not.
	full := Files{}
	for _, n := range append(append([]string{}, IdentityFiles...), MutableFiles...) {
		full[n] = make([]byte, MaxSizeOf(n))
		if d, ok := directoryDocument(n); ok {
			copy(full[n], d.FirstLine+"\n")
		}
	}
	if err := CheckFiles(full, nil); err != nil {
		t.Errorf("a bundle of files each at its bound: %v", err)
	}
	for i := 0; i < keyRoom/MaxFileSize; i++ {
		full[fmt.Sprintf("keys/f%d.secret_family_key", i)] = make([]byte, MaxFileSize)
	}
	if err := CheckFiles(full, nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized bundle: %v", err)
	}
	if m := MissingIdentityFiles(ok); len(m) != 3 {
		t.Errorf("missing = %v", m)
	}
}

func TestValidation(t *testing.T) {
	for _, r := range []string{"a", "relay-1", "0abc", strings.Repeat("a", 63)} {
		if !ValidRelay(r) {
			t.Errorf("relay %q refused", r)
		}
	}
	for _, r := range []string{"", "-a", "A", "a_b", "a.b", "a/b", "..", strings.Repeat("a", 64)} {
		if ValidRelay(r) {
			t.Errorf("relay %q allowed", r)
		}
	}
	if !ValidImageDigest(strings.Repeat("0f", 32)) || ValidImageDigest(strings.Repeat("0F", 32)) || ValidImageDigest("00") {
		t.Error("image digest validation")
	}
	m, err := ParseMeasurement("0x" + strings.Repeat("AB", 48))
	if err != nil || hex.EncodeToString(m) != strings.Repeat("ab", 48) {
		t.Errorf("measurement: %x %v", m, err)
	}
	if _, err := ParseMeasurement(strings.Repeat("ab", 47)); err == nil {
		t.Error("short measurement accepted")
	}
}

// The directory documents a relay pushes: larger than a key may be, within
// their own bound, and each must start as its kind does.
func TestDirectoryDocuments(t *testing.T) {
	for _, n := range []string{"cached-certs", "cached-consensus", "cached-microdesc-consensus"} {
		if !IsDirectoryDocument(n) || !IsMutableFile(n) || IsShippedFile(n) {
			t.Errorf("%s: directory %v, mutable %v, shipped %v", n, IsDirectoryDocument(n), IsMutableFile(n), IsShippedFile(n))
		}
	}
	if IsDirectoryDocument("state") || IsDirectoryDocument("cached-descriptors") || IsBundleFile("cached-descriptors") {
		t.Error("a file that is not in the list counts as a directory document")
	}
	consensus := append([]byte("network-status-version 3 microdesc\n"), make([]byte, 2*MaxFileSize)...)
	if err := CheckFiles(Files{"cached-microdesc-consensus": consensus}, IsMutableFile); err != nil {
		t.Errorf("a consensus larger than a key: %v", err)
	}
	if err := CheckFiles(Files{"cached-microdesc-consensus": make([]byte, MaxDirectoryFileSize+1)}, nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized consensus: %v", err)
	}
	if err := CheckFiles(Files{"cached-certs": []byte("network-status-version 3\n")}, nil); err == nil || !strings.Contains(err.Error(), "dir-key-certificate-version 3") {
		t.Errorf("a consensus sent as cached-certs: %v", err)
	}
	if err := CheckFiles(Files{"cached-certs": []byte("dir-key-certificate-version 3\r\n")}, nil); err == nil {
		t.Error("a first line with a stray byte accepted")
	}
	if MaxPayloadSize < MaxBundleSize*4/3 || MaxRequestSize < int64(MaxPayloadSize)*4/3 {
		t.Errorf("limits do not nest: bundle %d, payload %d, request %d", MaxBundleSize, MaxPayloadSize, MaxRequestSize)
	}
}

// Known answers computed outside Go, with Python's hashlib and struct:
//
//	lp = lambda b: struct.pack('>I', len(b)) + b
//	hashlib.sha512(lp(b"diskless-relays public attestation v1") + lp(b"\x11"*32)
//	               + lp(bytes(range(32))) + lp(bytes(range(100, 120))) + lp(b"ab"*32)).hexdigest()
//	m = lp(b"diskless-relays public attestation signature v1") + lp(b"\x11"*32) + lp(b"\x07"*1184)
//	len(m), hashlib.sha256(m).hexdigest()
func TestPublicAttestationEncoding(t *testing.T) {
	nonce := bytes.Repeat([]byte{0x11}, 32)
	master := make([]byte, 32)
	for i := range master {
		master[i] = byte(i)
	}
	rsa := make([]byte, 20)
	for i := range rsa {
		rsa[i] = byte(100 + i)
	}
	got := PublicReportData(nonce, master, rsa, strings.Repeat("ab", 32))
	if want := "e0aba5502130c49f7ce9b2b02aef9dc8dfa500cb26eef6d699efc97dc1b1c0171a5c2671c455ca70b61294d1d847bcc8321910f2297c3ee97b93b3aa07cce327"; hex.EncodeToString(got[:]) != want {
		t.Errorf("PublicReportData = %x, want %s", got, want)
	}
	m := PublicSignedMessage(nonce, bytes.Repeat([]byte{7}, 1184))
	sum := sha256.Sum256(m)
	if want := "0c03554dbb4da5bb309e9cb2df60a1e947fb943682c80a2fdc906b20d538c468"; len(m) != 1275 || hex.EncodeToString(sum[:]) != want {
		t.Errorf("PublicSignedMessage: %d bytes, SHA-256 %x; want 1275 bytes, %s", len(m), sum, want)
	}
	// The first byte is 0: never a tor certificate (version 1), never a
	// 32-byte descriptor digest.
	if m[0] != 0 {
		t.Errorf("PublicSignedMessage starts with %#x", m[0])
	}
}

func TestPublicReportDataIsUnambiguous(t *testing.T) {
	n, m, r := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 20)
	d := strings.Repeat("0", 64)
	base := PublicReportData(n, m, r, d)
	for name, v := range map[string][64]byte{
		"nonce":                PublicReportData(bytes.Repeat([]byte{9}, 32), m, r, d),
		"ed25519 identity":     PublicReportData(n, bytes.Repeat([]byte{9}, 32), r, d),
		"RSA identity":         PublicReportData(n, m, bytes.Repeat([]byte{9}, 20), d),
		"image digest":         PublicReportData(n, m, r, strings.Repeat("1", 64)),
		"shifted master/rsa":   PublicReportData(n, m[:31], append([]byte{2}, r...), d),
		"broker's attestation": ReportData("", d, "", n, "", nil),
	} {
		if v == base {
			t.Errorf("%s: same REPORT_DATA", name)
		}
	}
}
