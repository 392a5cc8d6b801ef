package e2e

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"diskless-relays/tools/broker/internal/kdssim"
	"diskless-relays/tools/broker/internal/snpsim"
)

// The binaries with a host that provisions no certificate table: key-broker
// serve --fetch-vcek gets the VCEK from KDS (a double on loopback), keeps it
// in DATA/kds, and boots the relay again from there after KDS is gone and
// the broker was killed; key-broker kds status lists it.
func TestBinariesKDS(t *testing.T) {
	tmp := t.TempDir()
	simDir, dataDir := filepath.Join(tmp, "sim"), filepath.Join(tmp, "data")
	if r := run(t, "snp-simulator", "init", "--out", simDir); r.code != 0 {
		t.Fatalf("snp-simulator init: %+v", r)
	}
	tokenFile := filepath.Join(tmp, "admin.token")
	r := run(t, "key-broker", "init", "--data", dataDir, "--admin-token", tokenFile)
	if r.code != 0 {
		t.Fatalf("key-broker init: %+v", r)
	}
	var pub map[string]string
	_ = json.Unmarshal([]byte(r.stdout), &pub)
	tok, _ := os.ReadFile(tokenFile)

	iss, err := snpsim.LoadIssuer(simDir)
	if err != nil {
		t.Fatal(err)
	}
	double, err := kdssim.New(iss, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	kds := httptest.NewServer(double)
	defer kds.Close()

	sim := []string{"--allow-simulated-attestation", "--simulated-ark-ask", filepath.Join(simDir, snpsim.ArkAskFile)}
	base := append([]string{"serve", "--data", dataDir, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--min-tcb", "bl=1,snp=1", "--allow-smt"}, sim...)
	for _, bad := range [][]string{
		{"--fetch-vcek", "--kds-url", "http://192.0.2.1"},
		{"--check-revocations", "--crl-refresh", "200h"},
	} {
		if r := run(t, "key-broker", append(append([]string{}, base...), bad...)...); r.code == 0 || !strings.Contains(r.stderr, bad[1]) {
			t.Fatalf("serve %v: %+v", bad, r)
		}
	}
	brokerArgs := append(append([]string{}, base...), "--fetch-vcek", "--kds-url", kds.URL)
	listenRe := regexp.MustCompile(`listening on http://(127\.0\.0\.1:\d+) \(relay protocol\)`)
	adminRe := regexp.MustCompile(`listening on http://(127\.0\.0\.1:\d+) \(admin API\)`)
	kb := start(t, "key-broker", brokerArgs...)
	url := "http://" + kb.waitFor(t, listenRe)
	adm := &admin{t: t, url: "http://" + kb.waitFor(t, adminRe), token: strings.TrimSpace(string(tok)), c: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{}}}}

	relay, digest, measurement := "kds-relay", randHex(32), randHex(48)
	files := map[string][]byte{}
	for _, n := range []string{"keys/ed25519_master_id_public_key", "keys/ed25519_signing_secret_key", "keys/ed25519_signing_cert", "keys/secret_id_key"} {
		files[n] = []byte(randHex(40))
	}
	adm.must("PUT", "/v1/admin/relays/"+relay+"/keys", map[string]any{"files": files})
	adm.must("POST", "/v1/admin/relays/"+relay+"/images", map[string]any{"imageDigest": digest, "attestation": "snp", "measurements": []string{measurement}})

	sock := filepath.Join(tmp, "snp.sock")
	s := start(t, "snp-simulator", "serve", "--dir", simDir, "--socket", sock, "--measurement", measurement, "--no-cert-table")
	s.waitFor(t, regexp.MustCompile(`serving simulated SNP reports`))
	port := ptyBridge(t, sock)
	uid, gid := 4242, 4343
	if os.Getuid() != 0 {
		uid, gid = os.Getuid(), os.Getgid()
	}
	writeConfig := func(brokerURL string) string {
		b, _ := json.Marshal(map[string]any{
			"relay": relay, "imageDigest": digest, "brokerUrl": brokerURL, "brokerSigningPublicKey": pub["signingPublicKey"],
			"pushRecipient": pub["pushRecipient"], "attestation": "snp", "reportSource": "serial:" + port,
			"torDataDir": filepath.Join(tmp, "tor"), "torUser": uid, "torGroup": gid, "pushIntervalSeconds": 60,
			"runtimeDir": filepath.Join(tmp, "run"),
		})
		p := filepath.Join(tmp, "agent.json")
		_ = os.WriteFile(p, b, 0o600)
		return p
	}
	if r := run(t, "relay-agent", "fetch", "--max-attempts", "1", writeConfig(url)); r.code != 0 {
		t.Fatalf("relay-agent fetch with the VCEK from KDS: %+v\nbroker:\n%s", r, kb.output())
	}
	if reqs := double.Requests(); len(reqs) != 1 || reqs[0].Status != http.StatusOK || !strings.HasPrefix(reqs[0].Path, "/vcek/v1/Milan/") {
		t.Fatalf("KDS requests %+v", reqs)
	}

	// KDS gone, broker killed and restarted: the relay boots from the cache.
	kds.Close()
	kb.kill(t, syscall.SIGKILL)
	kb2 := start(t, "key-broker", brokerArgs...)
	url2 := "http://" + kb2.waitFor(t, listenRe)
	_ = os.RemoveAll(filepath.Join(tmp, "tor"))
	if r := run(t, "relay-agent", "fetch", "--max-attempts", "1", writeConfig(url2)); r.code != 0 {
		t.Fatalf("relay-agent fetch from the cache: %+v\nbroker:\n%s", r, kb2.output())
	}

	r = run(t, "key-broker", append([]string{"kds", "status", "--data", dataDir}, sim...)...)
	var st struct {
		VCEKs []struct{ Root, Error string }
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || len(st.VCEKs) != 1 || st.VCEKs[0].Root != "simulated/Milan" || st.VCEKs[0].Error != "" {
		t.Fatalf("kds status: %+v", r)
	}
}
