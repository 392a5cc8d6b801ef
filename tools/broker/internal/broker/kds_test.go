package broker_test

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/verify/trust"

	"diskless-relays/tools/broker/internal/agent"
	"diskless-relays/tools/broker/internal/kdscache"
	"diskless-relays/tools/broker/internal/kdssim"
	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/snpcheck"
	"diskless-relays/tools/broker/internal/snpsim"
	"diskless-relays/tools/broker/internal/store"
)

// kdsEnv is a broker whose SNP policy goes through a KDS cache to a KDS
// double, both on the env's clock, trusting the double's simulated chain.
type kdsEnv struct {
	*env
	o      envOptions
	iss    *snpsim.Issuer
	double *kdssim.Server
	kdsTS  *httptest.Server
}

func newKDSEnv(t *testing.T, o envOptions) *kdsEnv {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := store.Init(dir, "", adminTokenFileOf(dir)); err != nil {
		t.Fatal(err)
	}
	k := &kdsEnv{env: &env{t: t, dataDir: dir, clock: &fakeClock{t: time.Now()}, logBuf: &syncBuffer{}}}
	iss, err := snpsim.LoadIssuer(kdsSimDir)
	if err != nil {
		t.Fatal(err)
	}
	if k.double, err = kdssim.New(iss, k.clock.Now); err != nil {
		t.Fatal(err)
	}
	k.iss = iss
	k.kdsTS = httptest.NewServer(k.double)
	t.Cleanup(k.kdsTS.Close)
	o.simDir, o.kdsURL = kdsSimDir, k.kdsTS.URL
	k.o = o
	k.start(o)
	return k
}

// restart is a broker restart on the same data directory.
func (k *kdsEnv) restart() {
	k.stop()
	k.start(k.o)
}

// kdsRelay enrols relay with an SNP image whose guest runs on chip (nil:
// the simulator's own) and sends its reports without a certificate table,
// like a host that does not provision the extended report's certificates.
func (k *kdsEnv) kdsRelay(relay string, chip []byte) func() error {
	t := k.t
	digest, m := randDigest(t), measurement(t)
	k.uploadKeys(relay, relayFiles(t))
	k.registerSNP(relay, digest, m)
	sim, err := snpsim.Load(kdsSimDir, snpsim.Options{Measurement: m, Policy: policyNoSMT, ChipID: chip})
	if err != nil {
		t.Fatal(err)
	}
	source := agent.ReportSourceFunc(func(_ context.Context, rd [protocol.ReportDataSize]byte) ([]byte, []byte, error) {
		rep, _, err := sim.Report(rd)
		return rep, nil, err
	})
	return func() error {
		a := k.newAgent(agentSetup{relay: relay, digest: digest, attestation: "snp", torDir: filepath.Join(t.TempDir(), "tor"), source: source})
		return a.Fetch(context.Background())
	}
}

func (k *kdsEnv) kdsRequests() []kdssim.Request { return k.double.Requests() }

func newChip(t *testing.T) []byte { return randBytes(t, 64) }

// A report without a certificate table is accepted with the VCEK the broker
// fetched from KDS, which it keeps (0600 in a 0700 directory): after KDS
// goes down and the broker restarts, the same chip boots from the cache,
// while a relay on a chip never seen is refused vcek-unavailable at once,
// neither hanging nor holding up the others.
func TestKDSVCEKCachedThroughOutageAndRestart(t *testing.T) {
	k := newKDSEnv(t, envOptions{fetchVCEK: true})
	chipA := newChip(t)
	bootA := k.kdsRelay("relay-a", chipA)
	if err := bootA(); err != nil {
		t.Fatalf("boot with a fetched VCEK: %v", err)
	}
	reqs := k.kdsRequests()
	if len(reqs) != 1 || reqs[0].Status != http.StatusOK || !strings.HasPrefix(reqs[0].Path, "/vcek/v1/Milan/"+hex.EncodeToString(chipA)+"?") {
		t.Fatalf("KDS requests %+v, want one for chip A's VCEK", reqs)
	}
	if got := k.relayStatus("relay-a").LastAttestation; got == nil || got.Verdict != "released" || got.Root != "simulated/Milan" {
		t.Fatalf("last attestation %+v", got)
	}

	// The cached file is the VCEK KDS served, for this chip and TCB, signed
	// by the chain's ASK: read back with the standard library.
	kdsDir := filepath.Join(k.dataDir, "kds")
	st, err := os.Stat(kdsDir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("%s: %v %v, want 0700", kdsDir, st.Mode().Perm(), err)
	}
	ents, _ := os.ReadDir(kdsDir)
	if len(ents) != 1 {
		t.Fatalf("cache holds %v", ents)
	}
	fi, _ := ents[0].Info()
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s mode %v, want 0600", ents[0].Name(), fi.Mode().Perm())
	}
	der, _ := os.ReadFile(filepath.Join(kdsDir, ents[0].Name()))
	cert, err := x509.ParseCertificate(der)
	if err != nil || cert.CheckSignatureFrom(k.iss.Ask) != nil {
		t.Fatalf("cached VCEK: %v", err)
	}
	if exts, err := kds.VcekCertificateExtensions(cert); err != nil || hex.EncodeToString(exts.HWID) != hex.EncodeToString(chipA) {
		t.Fatalf("cached VCEK is not chip A's: %v", err)
	}

	// Outage (503): chip A boots from the cache; a new chip is refused.
	k.double.SetOutage(true)
	if err := bootA(); err != nil {
		t.Fatalf("boot during the outage: %v", err)
	}
	bootB := k.kdsRelay("relay-b", newChip(t))
	start := time.Now()
	mustRefusal(t, bootB(), snpcheck.CodeVCEKUnavailable)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("vcek-unavailable took %s", d)
	}

	// KDS unreachable (connection refused) and the broker restarted.
	k.kdsTS.Close()
	k.restart()
	k.clock.Advance(time.Minute)
	if err := bootA(); err != nil {
		t.Fatalf("boot after restart with KDS gone: %v", err)
	}
	start = time.Now()
	mustRefusal(t, bootB(), snpcheck.CodeVCEKUnavailable)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("vcek-unavailable took %s", d)
	}
	if !strings.Contains(k.lastAttestLog("relay-b").Detail, "VCEK") {
		t.Fatalf("refusal detail %q does not name the VCEK", k.lastAttestLog("relay-b").Detail)
	}
	// Only the first VCEK and the one 503 ever reached KDS; chip A's later
	// boots never asked.
	reqs = k.kdsRequests()
	if len(reqs) != 2 || reqs[1].Status != http.StatusServiceUnavailable {
		t.Fatalf("KDS requests %+v", reqs)
	}
}

// Relays booting one after another on new chips: KDS (on the same clock)
// sees no two requests less than 10 s apart and never answers 429.
func TestKDSOneRequestPerTenSeconds(t *testing.T) {
	k := newKDSEnv(t, envOptions{fetchVCEK: true, checkRevocations: true})
	for i := 0; i < 4; i++ {
		if err := k.kdsRelay("relay-"+string(rune('a'+i)), newChip(t))(); err != nil {
			t.Fatalf("relay %d: %v", i, err)
		}
	}
	reqs := k.kdsRequests()
	if len(reqs) != 5 { // four VCEKs and one CRL
		t.Fatalf("KDS saw %d requests, want 5: %+v", len(reqs), reqs)
	}
	for i, r := range reqs {
		if r.Status != http.StatusOK {
			t.Errorf("request %d %s answered %d", i, r.Path, r.Status)
		}
		if i > 0 && r.Time.Sub(reqs[i-1].Time) < 10*time.Second {
			t.Errorf("requests %d and %d %s apart", i-1, i, r.Time.Sub(reqs[i-1].Time))
		}
	}
}

// An ASK or a VCEK in the CRL is refused cert-revoked.
func TestKDSRevokedRefused(t *testing.T) {
	t.Run("ASK", func(t *testing.T) {
		k := newKDSEnv(t, envOptions{fetchVCEK: true, checkRevocations: true})
		k.double.Revoke(k.iss.Ask.SerialNumber)
		mustRefusal(t, k.kdsRelay("relay-a", newChip(t))(), snpcheck.CodeCertRevoked)
	})
	t.Run("VCEK", func(t *testing.T) {
		k := newKDSEnv(t, envOptions{fetchVCEK: true, checkRevocations: true})
		chip := newChip(t)
		boot := k.kdsRelay("relay-a", chip)
		if err := boot(); err != nil {
			t.Fatal(err)
		}
		ents, _ := filepath.Glob(filepath.Join(k.dataDir, "kds", "vcek-*.der"))
		if len(ents) != 1 {
			t.Fatalf("cached VCEKs %v", ents)
		}
		der, _ := os.ReadFile(ents[0])
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		k.double.Revoke(cert.SerialNumber)
		k.clock.Advance(25 * time.Hour) // the cached CRL is due for a refresh
		mustRefusal(t, boot(), snpcheck.CodeCertRevoked)
		// Another chip's VCEK is not revoked.
		if err := k.kdsRelay("relay-b", newChip(t))(); err != nil {
			t.Fatal(err)
		}
	})
}

// With KDS down, the cached CRL serves until the age limit; past it every
// SNP report is refused crl-unavailable, until a current CRL is imported
// offline, which the running broker picks up.
func TestKDSStaleCRLFailsClosedUntilImport(t *testing.T) {
	k := newKDSEnv(t, envOptions{fetchVCEK: true, checkRevocations: true, crlMaxAge: 7 * 24 * time.Hour})
	boot := k.kdsRelay("relay-a", newChip(t))
	if err := boot(); err != nil {
		t.Fatal(err)
	}
	k.double.SetOutage(true)
	k.clock.Advance(6 * 24 * time.Hour)
	if err := boot(); err != nil {
		t.Fatalf("6-day-old CRL with KDS down: %v", err)
	}
	k.clock.Advance(2 * 24 * time.Hour)
	mustRefusal(t, boot(), snpcheck.CodeCRLUnavailable)
	if d := k.lastAttestLog("relay-a").Detail; !strings.Contains(d, "kds import") {
		t.Fatalf("refusal detail %q does not say what to do", d)
	}

	crl, err := k.double.CRL() // what an operator fetched elsewhere today
	if err != nil {
		t.Fatal(err)
	}
	roots, _ := snpcheck.AMDRoots()
	pemData, _ := os.ReadFile(filepath.Join(kdsSimDir, snpsim.ArkAskFile))
	line, r, _ := snpcheck.ParseRootsPEM(pemData)
	anchors := append(kdscache.Anchors("amd", roots), kdscache.Anchors("simulated", map[string][]*trust.AMDRootCerts{line: {r}})...)
	imp, err := kdscache.Open(filepath.Join(k.dataDir, "kds"), anchors, kdscache.Options{Offline: true, Now: k.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := imp.Import("crl", crl); err != nil {
		t.Fatal(err)
	}
	if err := boot(); err != nil {
		t.Fatalf("after importing a current CRL: %v", err)
	}
}

// A relay waiting for KDS holds up nobody: while KDS sits on relay B's VCEK
// request, relay A (its VCEK cached) boots.
func TestKDSFetchDoesNotHoldUpOthers(t *testing.T) {
	k := newKDSEnv(t, envOptions{fetchVCEK: true})
	bootA := k.kdsRelay("relay-a", newChip(t))
	if err := bootA(); err != nil {
		t.Fatal(err)
	}
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	k.kdsTS.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(arrived) })
		<-release
		k.double.ServeHTTP(w, r)
	})
	bootB := k.kdsRelay("relay-b", newChip(t))
	errB := make(chan error, 1)
	go func() { errB <- bootB() }()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("relay B's VCEK was never asked for")
	}
	errA := make(chan error, 1)
	go func() { errA <- bootA() }()
	select {
	case err := <-errA:
		if err != nil {
			t.Fatalf("relay A while B waits for KDS: %v", err)
		}
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatal("relay A waited for relay B's KDS request")
	}
	close(release)
	if err := <-errB; err != nil {
		t.Fatalf("relay B: %v", err)
	}
}
