// Package e2e runs the three built binaries together on loopback: the key
// broker (TLS), the SNP simulator on a unix socket, and the relay agent
// reading reports through a character device (a pty bridged to the
// simulator's socket, standing in for QEMU's virtio-serial chardev).
package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var bin string // directory of the built binaries

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "broker-e2e-bin-")
	if err != nil {
		panic(err)
	}
	bin = dir
	for _, c := range []string{"key-broker", "relay-agent", "snp-simulator"} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, c), "./cmd/"+c)
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", c, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, name string, args ...string) result {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, name), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

// daemon is a started process whose stderr is collected.
type daemon struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	buf bytes.Buffer
}

func (d *daemon) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.buf.Write(p)
}

func (d *daemon) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.buf.String()
}

func start(t *testing.T, name string, args ...string) *daemon {
	t.Helper()
	d := &daemon{cmd: exec.Command(filepath.Join(bin, name), args...)}
	d.cmd.Stdout, d.cmd.Stderr = d, d
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		_ = d.cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, d.output())
		}
	})
	return d
}

// waitFor waits until the output matches re and returns the first group.
func (d *daemon) waitFor(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(d.output()); m != nil {
			if len(m) > 1 {
				return m[1]
			}
			return m[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s in:\n%s", re, d.output())
	return ""
}

func (d *daemon) kill(t *testing.T, sig os.Signal) int {
	t.Helper()
	_ = d.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("process did not exit")
	}
	return d.cmd.ProcessState.ExitCode()
}

func selfSignedTLS(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "key-broker test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return certFile, keyFile, pool
}

// ptyBridge makes a pty whose master side is spliced to the simulator's
// unix socket; the agent opens the slave path like a virtio-serial port.
func ptyBridge(t *testing.T, socket string) string {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	rc, _ := m.SyscallConn()
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
	// Keep the slave open so that master reads never see EIO between
	// agent runs (a virtio-serial port has no such gap).
	keep, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keep.Close() })
	var conn net.Conn
	for i := 0; i < 200; i++ {
		if conn, err = net.Dial("unix", socket); err == nil {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() { _, _ = io.Copy(conn, m) }()
	go func() { _, _ = io.Copy(m, conn) }()
	return path
}

type admin struct {
	t     *testing.T
	url   string
	token string
	c     *http.Client
}

func (a *admin) call(method, path string, body any) (int, []byte) {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.url+path, rd)
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.c.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

func (a *admin) must(method, path string, body any) []byte {
	a.t.Helper()
	status, data := a.call(method, path, body)
	if status != 200 {
		a.t.Fatalf("%s %s: %d %s", method, path, status, data)
	}
	return data
}

type logLine struct {
	Relay, Purpose, Verdict, Reason, Measurement string
}

func (a *admin) log(relay string) []logLine {
	a.t.Helper()
	var out []logLine
	for _, l := range bytes.Split(bytes.TrimSpace(a.must("GET", "/v1/admin/log?relay="+relay, nil)), []byte("\n")) {
		var ll logLine
		if err := json.Unmarshal(l, &ll); err == nil && ll.Verdict != "admin" {
			out = append(out, ll)
		}
	}
	return out
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func TestBinariesEndToEnd(t *testing.T) {
	tmp := t.TempDir()
	simDir, dataDir := filepath.Join(tmp, "sim"), filepath.Join(tmp, "data")

	// --- init ---
	if r := run(t, "snp-simulator", "init", "--out", simDir); r.code != 0 {
		t.Fatalf("snp-simulator init: %+v", r)
	}
	if r := run(t, "snp-simulator", "init", "--out", simDir); r.code == 0 {
		t.Fatal("snp-simulator init over an existing chain succeeded")
	}
	tokenFile := filepath.Join(tmp, "admin.token")
	r := run(t, "key-broker", "init", "--data", dataDir, "--admin-token", tokenFile)
	if r.code != 0 {
		t.Fatalf("key-broker init: %+v", r)
	}
	var pub map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &pub); err != nil || len(pub) != 2 {
		t.Fatalf("init stdout %q: %v", r.stdout, err)
	}
	signingKey, _ := pub["signingPublicKey"].(string)
	pushRecipient, _ := pub["pushRecipient"].(string)
	if k, err := base64.StdEncoding.DecodeString(signingKey); err != nil || len(k) != 32 || !strings.HasPrefix(pushRecipient, "age1") {
		t.Fatalf("init stdout %q", r.stdout)
	}
	tokenBytes, _ := os.ReadFile(tokenFile)
	token := strings.TrimSpace(string(tokenBytes))
	if strings.Contains(r.stdout+r.stderr, token) || strings.Contains(r.stdout+r.stderr, "AGE-SECRET-KEY") {
		t.Fatal("init printed a secret")
	}
	if r := run(t, "key-broker", "init", "--data", dataDir, "--admin-token", filepath.Join(tmp, "admin.token.2")); r.code == 0 {
		t.Fatal("second key-broker init succeeded")
	}
	if r := run(t, "key-broker", "serve", "--data", dataDir, "--listen", "127.0.0.1:0", "--simulated-ark-ask", filepath.Join(simDir, "ark-ask.pem")); r.code == 0 || !strings.Contains(r.stderr, "--allow-simulated-attestation") {
		t.Fatalf("serve trusted simulated roots without --allow-simulated-attestation: %+v", r)
	}

	// A broker with no firmware floor would accept reports from hosts with published breaks.
	if r := run(t, "key-broker", "serve", "--data", dataDir, "--listen", "127.0.0.1:0"); r.code == 0 || !strings.Contains(r.stderr, "--min-tcb is required") || !strings.Contains(r.stderr, "amd-sb-3019") {
		t.Fatalf("serve without --min-tcb: %+v", r)
	}
	// The admin API on a network address without TLS would send its token in clear.
	if r := run(t, "key-broker", "serve", "--data", dataDir, "--listen", "127.0.0.1:0", "--min-tcb", "amd-sb-3019", "--admin-listen", "0.0.0.0:0"); r.code == 0 || !strings.Contains(r.stderr, "in clear") {
		t.Fatalf("serve with a network admin address and no TLS: %+v", r)
	}

	// --- serve ---
	certFile, keyFile, pool := selfSignedTLS(t, tmp)
	brokerArgs := []string{"serve", "--data", dataDir, "--listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile,
		"--allow-simulated-attestation", "--simulated-ark-ask", filepath.Join(simDir, "ark-ask.pem"), "--allow-smt", "--min-tcb", "bl=1,snp=1",
		"--admin-listen", "127.0.0.1:0"}
	listenRe := regexp.MustCompile(`listening on https://(127\.0\.0\.1:\d+) \(relay protocol\)`)
	adminRe := regexp.MustCompile(`listening on https://(127\.0\.0\.1:\d+) \(admin API\)`)
	kb := start(t, "key-broker", brokerArgs...)
	addr := kb.waitFor(t, listenRe)
	url := "https://" + addr
	adm := &admin{t: t, url: "https://" + kb.waitFor(t, adminRe), token: token, c: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
	// A second broker on the same data directory is refused while the first runs.
	if r := run(t, "key-broker", append(append([]string{}, brokerArgs...), "--listen", "127.0.0.1:0")...); r.code == 0 || !strings.Contains(r.stderr, "in use by another key-broker serve") {
		t.Fatalf("second serve on one data directory: %+v", r)
	}

	relay, digest, measurement := "e2e-relay", randHex(32), randHex(48)
	files := map[string][]byte{}
	for _, n := range []string{"keys/ed25519_master_id_public_key", "keys/ed25519_signing_secret_key", "keys/ed25519_signing_cert", "keys/secret_id_key", "keys/secret_onion_key_ntor", "state"} {
		b := make([]byte, 80)
		_, _ = rand.Read(b)
		files[n] = b
	}
	if status, _ := adm.call("GET", "/v1/admin/status", nil); status != 200 {
		t.Fatalf("status: %d", status)
	}
	adm.token = "wrong"
	if status, _ := adm.call("GET", "/v1/admin/status", nil); status != 401 {
		t.Fatalf("status with a wrong token: %d", status)
	}
	adm.token = token
	adm.must("PUT", "/v1/admin/relays/"+relay+"/keys", map[string]any{"files": files})
	adm.must("POST", "/v1/admin/relays/"+relay+"/images", map[string]any{"imageDigest": digest, "attestation": "snp", "measurements": []string{measurement}})

	// --- simulator + "virtio-serial" ---
	sock := filepath.Join(tmp, "snp.sock")
	sim := start(t, "snp-simulator", "serve", "--dir", simDir, "--socket", sock, "--measurement", measurement)
	sim.waitFor(t, regexp.MustCompile(`serving simulated SNP reports`))
	port := ptyBridge(t, sock)

	torDir, runDir := filepath.Join(tmp, "tor"), filepath.Join(tmp, "run")
	caFile := filepath.Join(tmp, "ca.pem")
	certPEM, _ := os.ReadFile(certFile)
	_ = os.WriteFile(caFile, certPEM, 0o644)
	uid, gid := 4242, 4343
	if os.Getuid() != 0 {
		uid, gid = os.Getuid(), os.Getgid()
	}
	writeConfig := func(name, image, reportSource string) string {
		cfg := map[string]any{
			"relay": relay, "imageDigest": image, "brokerUrl": url, "brokerSigningPublicKey": signingKey,
			"pushRecipient": pushRecipient, "attestation": "snp", "reportSource": reportSource,
			"torDataDir": torDir, "torUser": uid, "torGroup": gid, "pushIntervalSeconds": 1,
			"brokerCaFile": caFile, "runtimeDir": runDir,
		}
		b, _ := json.Marshal(cfg)
		p := filepath.Join(tmp, name)
		_ = os.WriteFile(p, b, 0o600)
		return p
	}
	cfg := writeConfig("agent.json", digest, "serial:"+port)

	// --- fetch ---
	r = run(t, "relay-agent", "fetch", "--max-attempts", "3", "--backoff-min", "100ms", cfg)
	if r.code != 0 {
		t.Fatalf("relay-agent fetch: %+v", r)
	}
	t.Logf("relay-agent fetch:\n%s", r.stderr)
	checkFiles(t, torDir, files, uid, gid)
	for _, d := range files {
		if strings.Contains(r.stderr, base64.StdEncoding.EncodeToString(d)) || strings.Contains(r.stderr, hex.EncodeToString(d)) {
			t.Fatal("agent logged key bytes")
		}
	}

	// --- push, then run with a final push on SIGTERM ---
	rotated := make([]byte, 96)
	_, _ = rand.Read(rotated)
	_ = os.WriteFile(filepath.Join(torDir, "keys/secret_onion_key_ntor"), rotated, 0o600)
	if r := run(t, "relay-agent", "push", cfg); r.code != 0 {
		t.Fatalf("relay-agent push: %+v", r)
	}
	before := len(adm.log(relay))
	ra := start(t, "relay-agent", "run", cfg)
	ra.waitFor(t, regexp.MustCompile(`push: stored`)) // a periodic push
	if code := ra.kill(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("relay-agent run exited %d:\n%s", code, ra.output())
	}
	if !strings.Contains(ra.output(), "final push") || strings.Count(ra.output(), "push: stored") < 2 {
		t.Fatalf("no final push:\n%s", ra.output())
	}
	after := adm.log(relay)
	if len(after)-before < 2 || after[len(after)-1].Verdict != "accepted" || after[len(after)-1].Measurement != measurement {
		t.Fatalf("log after run: %+v", after)
	}

	// --- refusals through the binaries write nothing ---
	emptyTor := filepath.Join(tmp, "tor-refused")
	refusedCfg := writeConfig("refused.json", randHex(32), "serial:"+port)
	b, _ := os.ReadFile(refusedCfg)
	_ = os.WriteFile(refusedCfg, bytes.Replace(b, []byte(torDir), []byte(emptyTor), 1), 0o600)
	if r := run(t, "relay-agent", "fetch", "--max-attempts", "2", "--backoff-min", "50ms", refusedCfg); r.code == 0 || !strings.Contains(r.stderr, "image-not-registered") {
		t.Fatalf("unregistered image: %+v", r)
	}
	if _, err := os.Stat(emptyTor); !os.IsNotExist(err) {
		t.Fatal("agent created the tor dir after a refusal")
	}
	// A tampered image: the launcher computes a different measurement.
	sock2 := filepath.Join(tmp, "snp2.sock")
	sim2 := start(t, "snp-simulator", "serve", "--dir", simDir, "--socket", sock2, "--measurement", randHex(48))
	sim2.waitFor(t, regexp.MustCompile(`serving simulated SNP reports`))
	port2 := ptyBridge(t, sock2)
	tamperedCfg := writeConfig("tampered.json", digest, "serial:"+port2)
	b, _ = os.ReadFile(tamperedCfg)
	_ = os.WriteFile(tamperedCfg, bytes.Replace(b, []byte(torDir), []byte(emptyTor), 1), 0o600)
	if r := run(t, "relay-agent", "fetch", "--max-attempts", "1", tamperedCfg); r.code == 0 || !strings.Contains(r.stderr, "measurement-mismatch") {
		t.Fatalf("tampered image: %+v", r)
	}
	if _, err := os.Stat(emptyTor); !os.IsNotExist(err) {
		t.Fatal("agent created the tor dir after a refusal")
	}

	// --- the broker is killed hard and restarted: nothing lost ---
	kb.kill(t, syscall.SIGKILL)
	kb2 := start(t, "key-broker", brokerArgs...)
	url2 := "https://" + kb2.waitFor(t, listenRe)
	adm.url = "https://" + kb2.waitFor(t, adminRe)
	b, _ = os.ReadFile(cfg)
	_ = os.WriteFile(cfg, bytes.Replace(b, []byte(url), []byte(url2), 1), 0o600)
	// The relays' listener serves no admin API.
	if resp, err := adm.c.Get(url2 + "/v1/admin/status"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("admin API on the relays' listener: %v %v", resp, err)
	}
	var st struct {
		Relays []struct {
			Relay    string
			LastPush *time.Time
			Stale    bool
		}
	}
	if err := json.Unmarshal(adm.must("GET", "/v1/admin/status", nil), &st); err != nil || len(st.Relays) != 1 || st.Relays[0].LastPush == nil || st.Relays[0].Stale {
		t.Fatalf("status after restart: %+v %v", st, err)
	}
	_ = os.RemoveAll(torDir)
	if r := run(t, "relay-agent", "fetch", "--max-attempts", "3", "--backoff-min", "100ms", cfg); r.code != 0 {
		t.Fatalf("fetch after restart: %+v", r)
	}
	want := map[string][]byte{}
	for n, d := range files {
		want[n] = d
	}
	want["keys/secret_onion_key_ntor"] = rotated
	checkFiles(t, torDir, want, uid, gid)

	// The data dir holds no key in the clear.
	_ = filepath.Walk(dataDir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		data, _ := os.ReadFile(p)
		for n, d := range want {
			for _, form := range [][]byte{d, []byte(hex.EncodeToString(d)), []byte(base64.StdEncoding.EncodeToString(d))} {
				if bytes.Contains(data, form) {
					t.Errorf("%s in the clear in %s", n, p)
				}
			}
		}
		return nil
	})
	kb2.kill(t, syscall.SIGTERM)
}

func checkFiles(t *testing.T, dir string, want map[string][]byte, uid, gid int) {
	t.Helper()
	for n, d := range want {
		p := filepath.Join(dir, n)
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, d) {
			t.Errorf("%s: not byte-equal (%v)", n, err)
			continue
		}
		st, _ := os.Stat(p)
		sys := st.Sys().(*syscall.Stat_t)
		if st.Mode().Perm() != 0o600 || int(sys.Uid) != uid || int(sys.Gid) != gid {
			t.Errorf("%s: mode %v owner %d:%d", n, st.Mode().Perm(), sys.Uid, sys.Gid)
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, "keys")} {
		st, err := os.Stat(d)
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v", d, st.Mode(), err)
		}
	}
	// Nothing else (no temporary file) is left.
	var count int
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			count++
		}
		return nil
	})
	if count != len(want) {
		t.Errorf("%d files in %s, want %d", count, dir, len(want))
	}
}
