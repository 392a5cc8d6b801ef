package agent

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/sys/unix"

	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/snpsim"
)

func baseConfig(t *testing.T) map[string]any {
	id, _ := age.GenerateX25519Identity()
	return map[string]any{
		"relay":                  "relay-1",
		"imageDigest":            strings.Repeat("ab", 32),
		"brokerUrl":              "https://broker.example.org:8443",
		"brokerSigningPublicKey": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)),
		"pushRecipient":          id.Recipient().String(),
		"attestation":            "snp",
		"reportSource":           "serial:/dev/virtio-ports/snp",
		"torDataDir":             "/var/lib/tor",
		"torUser":                101,
		"torGroup":               101,
		"pushIntervalSeconds":    300,
	}
}

func parse(t *testing.T, m map[string]any) error {
	raw, _ := json.Marshal(m)
	_, err := ParseConfig(raw)
	return err
}

func TestConfigValidation(t *testing.T) {
	if err := parse(t, baseConfig(t)); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	c := baseConfig(t)
	c["attestation"], c["tokenFile"] = "none", "/etc/relay-agent/token"
	delete(c, "reportSource")
	if err := parse(t, c); err != nil {
		t.Fatalf("valid token config refused: %v", err)
	}
	for _, src := range []string{"sev-guest", "configfs-tsm", "serial:/dev/vport0p1"} {
		c := baseConfig(t)
		c["reportSource"] = src
		if err := parse(t, c); err != nil {
			t.Errorf("reportSource %s refused: %v", src, err)
		}
	}
	bad := map[string]func(map[string]any){
		"unknown field":         func(m map[string]any) { m["extra"] = 1 },
		"bad relay":             func(m map[string]any) { m["relay"] = "Relay_1" },
		"bad digest":            func(m map[string]any) { m["imageDigest"] = "abc" },
		"plain http remote":     func(m map[string]any) { m["brokerUrl"] = "http://broker.example.org" },
		"no scheme":             func(m map[string]any) { m["brokerUrl"] = "broker.example.org" },
		"short signing key":     func(m map[string]any) { m["brokerSigningPublicKey"] = base64.StdEncoding.EncodeToString([]byte("x")) },
		"bad push recipient":    func(m map[string]any) { m["pushRecipient"] = "ssh-ed25519 AAAA" },
		"bad attestation":       func(m map[string]any) { m["attestation"] = "tpm" },
		"bad source":            func(m map[string]any) { m["reportSource"] = "tpm" },
		"relative serial":       func(m map[string]any) { m["reportSource"] = "serial:vport0p1" },
		"token file with snp":   func(m map[string]any) { m["tokenFile"] = "/x" },
		"none without token":    func(m map[string]any) { m["attestation"] = "none"; delete(m, "reportSource") },
		"relative tor dir":      func(m map[string]any) { m["torDataDir"] = "var/lib/tor" },
		"unclean tor dir":       func(m map[string]any) { m["torDataDir"] = "/var/lib/../tor" },
		"root tor dir":          func(m map[string]any) { m["torDataDir"] = "/" },
		"missing tor user":      func(m map[string]any) { delete(m, "torUser") },
		"string tor user":       func(m map[string]any) { m["torUser"] = "debian-tor" },
		"negative tor group":    func(m map[string]any) { m["torGroup"] = -1 },
		"zero interval":         func(m map[string]any) { m["pushIntervalSeconds"] = 0 },
		"relative runtime dir":  func(m map[string]any) { m["runtimeDir"] = "run" },
		"relative ca file":      func(m map[string]any) { m["brokerCaFile"] = "ca.pem" },
		"url with query":        func(m map[string]any) { m["brokerUrl"] = "https://b.example/?x=1" },
		"signing key not b64":   func(m map[string]any) { m["brokerSigningPublicKey"] = "!!" },
		"push interval as text": func(m map[string]any) { m["pushIntervalSeconds"] = "300" },
		"public attestation without snp": func(m map[string]any) {
			m["attestation"], m["tokenFile"], m["publicAttestation"] = "none", "/t", map[string]any{"port": 9180}
			delete(m, "reportSource")
		},
		"public attestation port 0":        func(m map[string]any) { m["publicAttestation"] = map[string]any{"port": 0} },
		"public attestation port too high": func(m map[string]any) { m["publicAttestation"] = map[string]any{"port": 65536} },
		"public attestation unknown field": func(m map[string]any) { m["publicAttestation"] = map[string]any{"port": 9180, "listen": "0.0.0.0"} },
		"build record with a space":        func(m map[string]any) { m["publicAttestation"] = map[string]any{"port": 9180, "buildRecord": "a b"} },
		"build record too long": func(m map[string]any) {
			m["publicAttestation"] = map[string]any{"port": 9180, "buildRecord": strings.Repeat("a", 2049)}
		},
	}
	c = baseConfig(t)
	c["publicAttestation"] = map[string]any{"port": 9180, "buildRecord": "relays/relay-1/abababababab.json"}
	if err := parse(t, c); err != nil {
		t.Errorf("valid public attestation refused: %v", err)
	}
	for name, mutate := range bad {
		c := baseConfig(t)
		mutate(c)
		if err := parse(t, c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, u := range []string{"http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9"} {
		c := baseConfig(t)
		c["brokerUrl"] = u
		if err := parse(t, c); err != nil {
			t.Errorf("loopback %s refused: %v", u, err)
		}
	}
	raw, _ := json.Marshal(baseConfig(t))
	if _, err := ParseConfig(append(raw, []byte(` {}`)...)); err == nil {
		t.Error("trailing data accepted")
	}
}

var testSim *snpsim.Simulator

func sim(t *testing.T) *snpsim.Simulator {
	t.Helper()
	if testSim != nil {
		return testSim
	}
	dir := filepath.Join(t.TempDir(), "sim")
	if err := snpsim.Init(dir, snpsim.InitOptions{RSABits: 2048}); err != nil {
		t.Fatal(err)
	}
	s, err := snpsim.Load(dir, snpsim.Options{Measurement: bytes.Repeat([]byte{9}, 48)})
	if err != nil {
		t.Fatal(err)
	}
	testSim = s
	return s
}

func TestExchangeWithSimulator(t *testing.T) {
	s := sim(t)
	a, b := net.Pipe()
	go func() { _ = s.ServeConn(b); b.Close() }()
	defer a.Close()
	for i := 0; i < 3; i++ { // one connection, several requests
		var rd [64]byte
		rd[0] = byte(i + 1)
		rep, certs, err := Exchange(a, rd)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep) != 1184 || !bytes.Equal(rep[0x50:0x90], rd[:]) || len(certs) == 0 {
			t.Fatalf("report %d bytes, certs %d bytes", len(rep), len(certs))
		}
	}
}

func TestExchangeSkipsStaleAnswers(t *testing.T) {
	s := sim(t)
	a, b := net.Pipe()
	defer a.Close()
	var stale [64]byte
	stale[0] = 0xee
	staleRep, _, _ := s.Report(stale)
	go func() {
		defer b.Close()
		r := lineReader(b)
		line, _ := r.ReadBytes('\n')
		var req protocol.SerialRequest
		_ = json.Unmarshal(line, &req)
		// An answer to an abandoned earlier request, some noise, then ours.
		old, _ := json.Marshal(protocol.SerialResponse{Report: staleRep})
		_, _ = b.Write(append(old, '\n'))
		_, _ = b.Write([]byte("garbage\n\n"))
		var rd [64]byte
		copy(rd[:], req.ReportData)
		rep, certs, _ := s.Report(rd)
		cur, _ := json.Marshal(protocol.SerialResponse{Report: rep, Certs: certs})
		_, _ = b.Write(append(cur, '\n'))
	}()
	var rd [64]byte
	rd[0] = 1
	rep, _, err := Exchange(a, rd)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rep[0x50:0x90], rd[:]) {
		t.Fatal("stale answer returned")
	}

	// An error answer is an error.
	c, d := net.Pipe()
	defer c.Close()
	go func() {
		_, _ = lineReader(d).ReadBytes('\n')
		_, _ = d.Write([]byte(`{"error":"no"}` + "\n"))
		d.Close()
	}()
	if _, _, err := Exchange(c, rd); err == nil || !strings.Contains(err.Error(), "no") {
		t.Fatalf("error answer: %v", err)
	}
}

// TestSerialSourceOnPTY drives SerialSource through a real character
// device: a pty whose master side is bridged to the simulator, standing in
// for a virtio-serial port whose host side QEMU connects to the socket.
func TestSerialSourceOnPTY(t *testing.T) {
	s := sim(t)
	master, slavePath := openPTY(t)
	defer master.Close()
	go func() { _ = s.ServeConn(master) }()
	src := &SerialSource{Path: slavePath, Timeout: 10 * time.Second}
	for i := 0; i < 2; i++ {
		var rd [64]byte
		rd[63] = byte(0x40 + i)
		rep, certs, err := src.GetReport(context.Background(), rd)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(rep[0x50:0x90], rd[:]) || len(certs) == 0 {
			t.Fatal("wrong report over the pty")
		}
	}
	// No answer: the read times out instead of hanging.
	dead, deadPath := openPTY(t)
	defer dead.Close()
	src = &SerialSource{Path: deadPath, Timeout: 300 * time.Millisecond}
	start := time.Now()
	if _, _, err := src.GetReport(context.Background(), [64]byte{}); err == nil {
		t.Fatal("report from a silent device")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("timeout not honoured")
	}
}

func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	rc, err := m.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n uint32
	var ioErr error
	_ = rc.Control(func(fd uintptr) {
		if ioErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioErr == nil {
			n, ioErr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN)
		}
	})
	if ioErr != nil {
		t.Fatal(ioErr)
	}
	path := fmt.Sprintf("/dev/pts/%d", n)
	// Keep one slave descriptor open for the whole test: with no slave
	// open, reads on the master fail with EIO (a virtio-serial port has no
	// such gap). The test never reads from it.
	keep, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keep.Close() })
	return m, path
}

func lineReader(r io.Reader) *bufioReader { return &bufioReader{r: r} }

// bufioReader reads up to a delimiter one byte at a time (so nothing past
// the line is consumed from the pipe).
type bufioReader struct{ r io.Reader }

func (b *bufioReader) ReadBytes(delim byte) ([]byte, error) {
	var out []byte
	one := make([]byte, 1)
	for {
		if _, err := b.r.Read(one); err != nil {
			return out, err
		}
		out = append(out, one[0])
		if one[0] == delim {
			return out, nil
		}
	}
}

func TestInstallFilesSafety(t *testing.T) {
	tmp := t.TempDir()
	uid, gid := os.Getuid(), os.Getgid()
	// A symlinked data directory is refused.
	real := filepath.Join(tmp, "real")
	_ = os.Mkdir(real, 0o700)
	link := filepath.Join(tmp, "link")
	_ = os.Symlink(real, link)
	if err := InstallFiles(link, protocol.Files{"state": []byte("x")}, uid, gid); err == nil {
		t.Error("installed through a symlinked directory")
	}
	// A name outside the list is refused before anything is written.
	dir := filepath.Join(tmp, "tor")
	if err := InstallFiles(dir, protocol.Files{"../evil": []byte("x")}, uid, gid); err == nil {
		t.Error("installed ../evil")
	}
	if _, err := os.Stat(filepath.Join(tmp, "evil")); !os.IsNotExist(err) {
		t.Error("../evil written")
	}
	// Existing loose permissions are tightened.
	_ = os.MkdirAll(filepath.Join(dir, "keys"), 0o755)
	if err := InstallFiles(dir, protocol.Files{"state": []byte("x"), "keys/secret_onion_key": []byte("k")}, uid, gid); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "keys")} {
		st, _ := os.Stat(d)
		if st.Mode().Perm() != 0o700 {
			t.Errorf("%s mode %v", d, st.Mode().Perm())
		}
	}
	// Push reads refuse a symlinked state file.
	_ = os.Remove(filepath.Join(dir, "state"))
	_ = os.Symlink("/etc/hostname", filepath.Join(dir, "state"))
	if _, _, err := ReadMutableFiles(dir); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("symlinked state: %v", err)
	}
	_ = os.Remove(filepath.Join(dir, "state"))
	files, skipped, err := ReadMutableFiles(dir)
	if err != nil || len(files) != 1 || string(files["keys/secret_onion_key"]) != "k" || len(skipped) != 0 {
		t.Errorf("read %v %v %v", files, skipped, err)
	}
}

// Directory documents travel with the keys; one that is too large, or is not
// what its name says, is left behind and the keys still go.
func TestReadMutableFilesCarriesDirectoryDocuments(t *testing.T) {
	dir := t.TempDir()
	_ = os.MkdirAll(filepath.Join(dir, "keys"), 0o700)
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("keys/secret_onion_key_ntor", []byte("k"))
	write("cached-microdesc-consensus", []byte("network-status-version 3 microdesc\nvote-status consensus\n"))
	write("cached-certs", []byte("dir-key-certificate-version 3\n"))
	// Larger than a key may be, within a directory document's bound.
	big := append([]byte("network-status-version 3\n"), make([]byte, 2*protocol.MaxFileSize)...)
	write("cached-consensus", big)
	files, skipped, err := ReadMutableFiles(dir)
	if err != nil || len(skipped) != 0 {
		t.Fatalf("read: %v %v", skipped, err)
	}
	for _, name := range []string{"keys/secret_onion_key_ntor", "cached-microdesc-consensus", "cached-certs", "cached-consensus"} {
		if _, ok := files[name]; !ok {
			t.Errorf("%s not read", name)
		}
	}
	write("cached-consensus", make([]byte, protocol.MaxDirectoryFileSize+1))
	write("cached-certs", []byte("<html>not a certificate\n"))
	files, skipped, err = ReadMutableFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := files["cached-consensus"]; ok {
		t.Error("an oversized consensus was read")
	}
	if _, ok := files["cached-certs"]; ok {
		t.Error("a file that is no certificate was read as cached-certs")
	}
	if len(skipped) != 2 || !strings.HasPrefix(skipped[0], "cached-certs") || !strings.HasPrefix(skipped[1], "cached-consensus") {
		t.Errorf("skipped = %q", skipped)
	}
	if _, ok := files["keys/secret_onion_key_ntor"]; !ok {
		t.Error("the onion key did not go with the rest")
	}
}

func TestBackoffIsCapped(t *testing.T) {
	a := &Agent{opts: Options{BackoffMin: 10 * time.Millisecond, BackoffMax: 40 * time.Millisecond}}
	start := time.Now()
	for i := 1; i <= 6; i++ {
		a.backoff(context.Background(), i)
	}
	// 10+20+40+40+40+40 = 190 ms
	if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
		t.Errorf("backoff took %v", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if a.backoff(ctx, 1) {
		t.Error("backoff ignored a cancelled context")
	}
}

// The log names the ntor key's public half only. The key is made here, at
// test time: a curve25519 pair laid out as tor stores it (header, secret,
// public).
func TestNtorPublicNoteShowsNoSecret(t *testing.T) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 96)
	copy(key[32:64], priv.Bytes())
	copy(key[64:96], priv.PublicKey().Bytes())
	note := ntorPublicNote(protocol.Files{"keys/secret_onion_key_ntor": key})
	if !strings.Contains(note, base64.StdEncoding.EncodeToString(key[64:96])) {
		t.Fatalf("note %q lacks the public key", note)
	}
	if secret := base64.StdEncoding.EncodeToString(key[32:64]); strings.Contains(note, secret[:20]) {
		t.Fatalf("note %q shows the secret", note)
	}
	if ntorPublicNote(protocol.Files{"keys/secret_onion_key_ntor": key[:95]}) != "" {
		t.Fatal("a key file of the wrong size is named")
	}
}
