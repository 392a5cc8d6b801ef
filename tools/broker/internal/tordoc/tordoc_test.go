package tordoc_test

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"diskless-relays/tools/broker/internal/tordoc"
	"diskless-relays/tools/broker/internal/torid"
)

// The fixtures are a private Tor test network's public documents
// (testdata/README.md); the expected identities are what tor itself wrote
// about its own keys (auth*/fingerprint, auth*/fingerprint-ed25519) and
// what each relay signed into its server descriptor (cached-descriptors),
// never values tordoc computed.

var fixture = tordoc.Files{
	Consensus:  filepath.Join("testdata", tordoc.ConsensusFile),
	Microdescs: []string{filepath.Join("testdata", tordoc.MicrodescsFile)},
}

// torFile is the value of tor's one "NICKNAME VALUE" line in path.
func torFile(t *testing.T, path string) (nickname, value string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	nickname, value, ok := strings.Cut(strings.TrimSpace(string(data)), " ")
	if !ok {
		t.Fatalf("%s: not a \"NICKNAME VALUE\" line", path)
	}
	return nickname, value
}

// Each authority is a relay in the consensus: the lookup by the RSA
// fingerprint tor wrote must give the ed25519 identity tor wrote.
func TestLookupGivesTorsOwnIdentity(t *testing.T) {
	for _, auth := range []string{"auth1", "auth2", "auth3"} {
		t.Run(auth, func(t *testing.T) {
			nick, fp := torFile(t, filepath.Join("testdata", auth, "fingerprint"))
			nick2, want := torFile(t, filepath.Join("testdata", auth, "fingerprint-ed25519"))
			if nick != nick2 {
				t.Fatalf("fixture: %s and %s", nick, nick2)
			}
			id, err := tordoc.Lookup(fixture, fp)
			if err != nil {
				t.Fatal(err)
			}
			if got := torid.Ed25519ID(id.Ed25519Master); got != want {
				t.Fatalf("ed25519 of %s: got %s, tor wrote %s", fp, got, want)
			}
			if id.Nickname != nick || id.RSAFingerprint != fp {
				t.Fatalf("entry %+v, want nickname %s fingerprint %s", id.Entry, nick, fp)
			}
		})
	}
}

// descriptorIdentities reads each server descriptor's "fingerprint" and
// "master-key-ed25519" lines from an authority's cached-descriptors.
func descriptorIdentities(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "cached-descriptors"))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	var master string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "router "):
			master = ""
		case strings.HasPrefix(line, "master-key-ed25519 "):
			master = strings.TrimPrefix(line, "master-key-ed25519 ")
		case strings.HasPrefix(line, "fingerprint "):
			fp := strings.ReplaceAll(strings.TrimPrefix(line, "fingerprint "), " ", "")
			if master == "" || (ids[fp] != "" && ids[fp] != master) {
				t.Fatalf("cached-descriptors: %s without one master key", fp)
			}
			ids[fp] = master
		}
	}
	return ids
}

// Every relay of the consensus (the two non-authorities too) gets the
// identity it signed into its own server descriptor. EndToEndExit has two
// microdescriptors in the cache with the same identity; only the one the
// consensus names counts.
func TestLookupAgreesWithServerDescriptors(t *testing.T) {
	ids := descriptorIdentities(t)
	if len(ids) != 5 {
		t.Fatalf("cached-descriptors lists %d relays, the fixture has 5", len(ids))
	}
	for fp, want := range ids {
		id, err := tordoc.Lookup(fixture, fp)
		if err != nil {
			t.Fatal(err)
		}
		if got := torid.Ed25519ID(id.Ed25519Master); got != want {
			t.Errorf("%s (%s): got %s, its descriptor says %s", fp, id.Nickname, got, want)
		}
	}
}

// The address each relay is listed at is the one its own server descriptor
// gives ("router NICKNAME ADDRESS ORPORT ..."): what verify-relay asks when
// no --address is given.
func TestLookupGivesTheListedAddress(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "cached-descriptors"))
	if err != nil {
		t.Fatal(err)
	}
	addresses := map[string]string{}
	var address string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && f[0] == "router":
			address = f[2]
		case len(f) > 1 && f[0] == "fingerprint":
			addresses[strings.Join(f[1:], "")] = address
		}
	}
	if len(addresses) != 5 {
		t.Fatalf("cached-descriptors lists %d relays, the fixture has 5", len(addresses))
	}
	for fp, want := range addresses {
		id, err := tordoc.Lookup(fixture, fp)
		if err != nil {
			t.Fatal(err)
		}
		if got := id.Address.String(); got != want {
			t.Errorf("%s (%s): listed at %s, its descriptor says %s", fp, id.Nickname, got, want)
		}
	}
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// A microdescriptor changed by one character no longer has the digest the
// consensus lists: the relay's identity is not found, and the error says
// which file lacks it.
func TestTamperedMicrodescriptorIsRefused(t *testing.T) {
	_, fp := torFile(t, filepath.Join("testdata", "auth1", "fingerprint"))
	_, realID := torFile(t, filepath.Join("testdata", "auth1", "fingerprint-ed25519"))
	data, err := os.ReadFile(fixture.Microdescs[0])
	if err != nil {
		t.Fatal(err)
	}
	// Swap auth1's identity for auth2's inside auth1's microdescriptor: a
	// lie that a parser trusting the "id" line without the digest accepts.
	_, otherID := torFile(t, filepath.Join("testdata", "auth2", "fingerprint-ed25519"))
	tampered := bytes.Replace(data, []byte("id ed25519 "+realID), []byte("id ed25519 "+otherID), 1)
	if bytes.Equal(tampered, data) {
		t.Fatal("fixture: auth1's identity line not found")
	}
	files := tordoc.Files{Consensus: fixture.Consensus, Microdescs: []string{writeFile(t, t.TempDir(), "cached-microdescs", tampered)}}
	_, err = tordoc.Lookup(files, fp)
	if err == nil || !strings.Contains(err.Error(), "its microdescriptor") || !strings.Contains(err.Error(), files.Microdescs[0]) {
		t.Fatalf("tampered microdescriptor: got %v", err)
	}
	// The journal is read too: the genuine one there is found.
	files.Microdescs = append(files.Microdescs, fixture.Microdescs[0])
	id, err := tordoc.Lookup(files, fp)
	if err != nil || torid.Ed25519ID(id.Ed25519Master) != realID {
		t.Fatalf("with the genuine file as journal: %v", err)
	}
}

func TestUnknownFingerprintIsNamed(t *testing.T) {
	fp := strings.Repeat("AB", 20)
	_, err := tordoc.Lookup(fixture, fp)
	if err == nil || !strings.Contains(err.Error(), "relay "+fp+" is not in this consensus") {
		t.Fatalf("got %v", err)
	}
	if _, err := tordoc.Lookup(fixture, strings.ToLower(fp)); err == nil || !strings.Contains(err.Error(), "not 40 upper-case hex digits") {
		t.Fatalf("lower-case fingerprint: got %v", err)
	}
}

func TestDataDirFilesReadsJournal(t *testing.T) {
	dir := t.TempDir()
	cache, journal := filepath.Join(dir, tordoc.MicrodescsFile), filepath.Join(dir, tordoc.MicrodescsJournal)
	if f := tordoc.DataDirFiles(dir); strings.Join(f.Microdescs, " ") != cache || f.Consensus != filepath.Join(dir, tordoc.ConsensusFile) {
		t.Fatalf("with neither file: %+v", f)
	}
	writeFile(t, dir, tordoc.MicrodescsJournal, []byte("\n"))
	if f := tordoc.DataDirFiles(dir); strings.Join(f.Microdescs, " ") != journal {
		t.Fatalf("with the journal alone: %v", f.Microdescs)
	}
	writeFile(t, dir, tordoc.MicrodescsFile, []byte("\n"))
	if f := tordoc.DataDirFiles(dir); strings.Join(f.Microdescs, " ") != cache+" "+journal {
		t.Fatalf("with both: %v", f.Microdescs)
	}
}

// Strict parsing: each malformed consensus or microdescriptor file is
// refused with its own reason.
func TestMalformedFilesAreRefused(t *testing.T) {
	consensus, err := os.ReadFile(fixture.Consensus)
	if err != nil {
		t.Fatal(err)
	}
	mds, err := os.ReadFile(fixture.Microdescs[0])
	if err != nil {
		t.Fatal(err)
	}
	firstM := bytes.Index(consensus, []byte("\nm "))
	cases := []struct {
		name, file string
		data       []byte
		want       string
	}{
		{"truncated", "c", consensus[:len(consensus)-1], "no newline"},
		{"no footer", "c", consensus[:bytes.Index(consensus, []byte("directory-footer"))], "no \"directory-footer\""},
		{"another flavour", "c", bytes.Replace(consensus, []byte(" microdesc\n"), []byte("\n"), 1), "not a microdescriptor consensus"},
		{"carriage return", "c", bytes.Replace(consensus, []byte("\n"), []byte("\r\n"), 1), "NUL or CR"},
		{"empty", "c", []byte{}, "empty file"},
		{"duplicate entry", "c", dupEntry(consensus), "listed twice"},
		{"no m line", "c", bytes.Replace(consensus, consensus[firstM:firstM+bytes.IndexByte(consensus[firstM+1:], '\n')+1], nil, 1), "has no \"m\" line"},
		{"address not IPv4", "c", bytes.Replace(consensus, []byte(" 10.77.0.1 5001 "), []byte(" ::1 5001 "), 1), "is not an IPv4 address"},
		{"short digest", "c", bytes.Replace(consensus, consensus[firstM+3:firstM+7], nil, 1), "not 32 bytes"},
		{"overlong line", "c", bytes.Replace(consensus, []byte("contact "), []byte("contact "+strings.Repeat("x", tordoc.MaxLineLength)), 1), "limit"},
		{"text before the first microdescriptor", "m", append([]byte("hello\n"), mds...), "outside a microdescriptor"},
		{"two identities", "m", bytes.Replace(mds, []byte("id ed25519 "), []byte("id ed25519 GwBEf+SjZTZVdAkGEulpZVk9WvpJJ7xpxNqXxs3hFlw\nid ed25519 "), 1), "two \"id ed25519\""},
		{"bad identity", "m", bytes.Replace(mds, []byte("id ed25519 "), []byte("id ed25519 x"), 1), "ed25519 identity"},
	}
	_, fp := torFile(t, filepath.Join("testdata", "auth1", "fingerprint"))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := fixture
			dir := t.TempDir()
			if c.file == "c" {
				files.Consensus = writeFile(t, dir, "consensus", c.data)
			} else {
				files.Microdescs = []string{writeFile(t, dir, "mds", c.data)}
			}
			_, err := tordoc.Lookup(files, fp)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error saying %q", err, c.want)
			}
		})
	}
}

// dupEntry repeats the consensus's first relay entry.
func dupEntry(consensus []byte) []byte {
	start := bytes.Index(consensus, []byte("\nr ")) + 1
	end := start + bytes.Index(consensus[start+1:], []byte("\nr ")) + 2
	entry := consensus[start:end]
	out := append(bytes.Clone(consensus[:end]), entry...)
	return append(out, consensus[end:]...)
}
