package kdscache_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/verify/trust"

	"diskless-relays/tools/broker/internal/kdscache"
	"diskless-relays/tools/broker/internal/kdssim"
	"diskless-relays/tools/broker/internal/snpcheck"
	"diskless-relays/tools/broker/internal/snpsim"
)

// Two simulator chains that keep their ARK key, made once: the cache pins
// the first, never the second.
var pinnedDir, otherDir string

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "kdscache-test-")
	if err != nil {
		panic(err)
	}
	pinnedDir, otherDir = filepath.Join(tmp, "pinned"), filepath.Join(tmp, "other")
	for _, d := range []string{pinnedDir, otherDir} {
		if err := snpsim.Init(d, snpsim.InitOptions{RSABits: 2048, KeepArkKey: true}); err != nil {
			panic(err)
		}
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	clock  *clock
	double *kdssim.Server
	ts     *httptest.Server
	iss    *snpsim.Issuer
	dir    string
	cache  *kdscache.Cache
}

func issuer(t *testing.T, dir string) *snpsim.Issuer {
	t.Helper()
	iss, err := snpsim.LoadIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func pinnedAnchors(t *testing.T) []kdscache.Anchor {
	t.Helper()
	pemData, err := os.ReadFile(filepath.Join(pinnedDir, snpsim.ArkAskFile))
	if err != nil {
		t.Fatal(err)
	}
	line, r, err := snpcheck.ParseRootsPEM(pemData)
	if err != nil {
		t.Fatal(err)
	}
	return kdscache.Anchors("simulated", map[string][]*trust.AMDRootCerts{line: {r}})
}

func newFixture(t *testing.T, o kdscache.Options) *fixture {
	t.Helper()
	f := &fixture{clock: &clock{t: time.Now()}, iss: issuer(t, pinnedDir)}
	var err error
	if f.double, err = kdssim.New(f.iss, f.clock.Now); err != nil {
		t.Fatal(err)
	}
	f.ts = httptest.NewServer(f.double)
	t.Cleanup(f.ts.Close)
	f.dir = filepath.Join(t.TempDir(), "data", "kds")
	o.URL = f.ts.URL
	o.Now = f.clock.Now
	o.Sleep = func(_ context.Context, d time.Duration) error { f.clock.Advance(d); return nil }
	o.Logf = t.Logf
	if f.cache, err = kdscache.Open(f.dir, pinnedAnchors(t), o); err != nil {
		t.Fatal(err)
	}
	return f
}

func chip(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, abi.ChipIDSize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

var tcb = func() uint64 {
	v, _ := kds.ComposeTCBParts(snpsim.DefaultTCB)
	return uint64(v)
}()

func mustUnavailable(t *testing.T, err error) {
	t.Helper()
	var u *kdscache.UnavailableError
	if !errors.As(err, &u) {
		t.Fatalf("want *UnavailableError, got %v", err)
	}
}

// A fetched VCEK is stored 0600 in a 0700 directory and served from there
// by a new cache (a restarted broker) with KDS gone.
func TestVCEKFetchedOnceKeptOnDisk(t *testing.T) {
	f := newFixture(t, kdscache.Options{})
	hw := chip(t)
	der, err := f.cache.VCEK(context.Background(), "Milan", hw, tcb)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil || cert.CheckSignatureFrom(f.iss.Ask) != nil {
		t.Fatalf("served VCEK does not parse or is not the ASK's: %v", err)
	}
	st, err := os.Stat(f.dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("cache dir: %v %v", st.Mode().Perm(), err)
	}
	ents, _ := os.ReadDir(f.dir)
	if len(ents) != 1 {
		t.Fatalf("cache holds %d files, want 1", len(ents))
	}
	fi, _ := ents[0].Info()
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s mode %v, want 0600", ents[0].Name(), fi.Mode().Perm())
	}
	f.ts.Close()
	f.clock.Advance(time.Hour)
	again, err := kdscache.Open(f.dir, pinnedAnchors(t), kdscache.Options{URL: f.ts.URL, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	got, err := again.VCEK(context.Background(), "Milan", hw, tcb)
	if err != nil || string(got) != string(der) {
		t.Fatalf("restarted cache with KDS down: %v", err)
	}
	if n := len(f.double.Requests()); n != 1 {
		t.Fatalf("KDS saw %d requests, want 1", n)
	}
	// The getter go-sev-guest uses answers from the cache only.
	if b, err := again.Getter().Get(kds.VCEKCertURL("Milan", hw, kds.TCBVersion(tcb))); err != nil || string(b) != string(der) {
		t.Fatalf("getter: %v", err)
	}
	if _, err := again.Getter().Get(kds.VCEKCertURL("Milan", chip(t), kds.TCBVersion(tcb))); err == nil {
		t.Fatal("getter served a VCEK it does not hold")
	}
}

// Requests are spaced by MinInterval on the cache's clock, so the double
// (on the same clock, refusing more than one per 10 s) never answers 429;
// a caller whose turn is further than MaxWait away is told so at once.
func TestOneRequestPerInterval(t *testing.T) {
	f := newFixture(t, kdscache.Options{MaxWait: 15 * time.Second})
	for i := 0; i < 4; i++ {
		if _, err := f.cache.VCEK(context.Background(), "Milan", chip(t), tcb); err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
	}
	reqs := f.double.Requests()
	if len(reqs) != 4 {
		t.Fatalf("KDS saw %d requests, want 4", len(reqs))
	}
	for i, r := range reqs {
		if r.Status != http.StatusOK {
			t.Errorf("request %d answered %d", i, r.Status)
		}
		if i > 0 && r.Time.Sub(reqs[i-1].Time) < 10*time.Second {
			t.Errorf("requests %d and %d only %s apart", i-1, i, r.Time.Sub(reqs[i-1].Time))
		}
	}
	// Take the next slot without sleeping for it, then ask again: the one
	// after is more than MaxWait away.
	g := newFixture(t, kdscache.Options{MaxWait: 5 * time.Second})
	if _, err := g.cache.VCEK(context.Background(), "Milan", chip(t), tcb); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := g.cache.VCEK(context.Background(), "Milan", chip(t), tcb)
	mustUnavailable(t, err)
	if !strings.Contains(err.Error(), "budget") || time.Since(start) > time.Second {
		t.Fatalf("over-budget fetch: %v after %s", err, time.Since(start))
	}
	if n := len(g.double.Requests()); n != 1 {
		t.Fatalf("KDS saw %d requests, want 1", n)
	}
}

// A 429 pushes the next request past its Retry-After.
func TestTooManyRequestsHonoured(t *testing.T) {
	f := newFixture(t, kdscache.Options{})
	f.double.MinInterval = time.Minute // KDS stricter than the cache thinks
	if _, err := f.cache.VCEK(context.Background(), "Milan", chip(t), tcb); err != nil {
		t.Fatal(err)
	}
	_, err := f.cache.VCEK(context.Background(), "Milan", chip(t), tcb) // 10 s later: 429, Retry-After 50
	mustUnavailable(t, err)
	_, err = f.cache.VCEK(context.Background(), "Milan", chip(t), tcb) // 50 s > MaxWait: no request
	mustUnavailable(t, err)
	reqs := f.double.Requests()
	if len(reqs) != 2 || reqs[1].Status != http.StatusTooManyRequests {
		t.Fatalf("requests %+v, want 200 then 429", reqs)
	}
	f.clock.Advance(50 * time.Second)
	if _, err := f.cache.VCEK(context.Background(), "Milan", chip(t), tcb); err != nil {
		t.Fatalf("after Retry-After: %v", err)
	}
	reqs = f.double.Requests()
	if len(reqs) != 3 || reqs[2].Status != http.StatusOK || reqs[2].Time.Sub(reqs[1].Time) < 50*time.Second {
		t.Fatalf("requests %+v", reqs)
	}
}

// A 404 is remembered for NegativeTTL; concurrent callers of one URL share
// one request.
func TestNotFoundRememberedAndSingleFlight(t *testing.T) {
	f := newFixture(t, kdscache.Options{NegativeTTL: 10 * time.Minute})
	hw := chip(t)
	for i := 0; i < 3; i++ {
		_, err := f.cache.VCEK(context.Background(), "Genoa", hw, tcb) // the double has no Genoa chain
		mustUnavailable(t, err)
		f.clock.Advance(time.Minute)
	}
	if reqs := f.double.Requests(); len(reqs) != 1 || reqs[0].Status != http.StatusNotFound {
		t.Fatalf("requests %+v, want one 404", reqs)
	}
	f.clock.Advance(10 * time.Minute)
	_, err := f.cache.VCEK(context.Background(), "Genoa", hw, tcb)
	mustUnavailable(t, err)
	if n := len(f.double.Requests()); n != 2 {
		t.Fatalf("after the TTL: %d requests, want 2", n)
	}

	// Hold KDS's answer until every caller is waiting for it.
	g := newFixture(t, kdscache.Options{})
	release := make(chan struct{})
	g.ts.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		g.double.ServeHTTP(w, r)
	})
	hw = chip(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = g.cache.VCEK(context.Background(), "Milan", hw, tcb)
		}()
	}
	time.Sleep(200 * time.Millisecond)
	close(release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if n := len(g.double.Requests()); n != 1 {
		t.Fatalf("8 callers of one URL made %d requests, want 1", n)
	}
}

// A CRL is served from the cache up to the age limit, refreshed when due,
// and refused (fail closed) beyond the limit until a current one is
// imported.
func TestCRLAgeLimit(t *testing.T) {
	f := newFixture(t, kdscache.Options{CRLMaxAge: 7 * 24 * time.Hour, CRLRefresh: 24 * time.Hour})
	const root = "simulated/Milan"
	if err := f.cache.CheckRevoked(root, nil); err == nil {
		t.Fatal("no CRL yet, but revocation check passed")
	}
	if err := f.cache.RefreshCRL(context.Background(), root); err != nil {
		t.Fatal(err)
	}
	if err := f.cache.CheckRevoked(root, nil); err != nil {
		t.Fatal(err)
	}
	// Not due: no request.
	f.clock.Advance(time.Hour)
	if err := f.cache.RefreshCRL(context.Background(), root); err != nil || len(f.double.Requests()) != 1 {
		t.Fatalf("refresh before due: %v, %d requests", err, len(f.double.Requests()))
	}
	// KDS down for 6 days: the cached CRL still serves.
	f.double.SetOutage(true)
	f.clock.Advance(6 * 24 * time.Hour)
	mustUnavailable(t, f.cache.RefreshCRL(context.Background(), root))
	if err := f.cache.CheckRevoked(root, nil); err != nil {
		t.Fatalf("6 days old: %v", err)
	}
	// Past 7 days: fail closed, saying what to do.
	f.clock.Advance(2 * 24 * time.Hour)
	var stale *kdscache.CRLUnavailableError
	err := f.cache.CheckRevoked(root, nil)
	if !errors.As(err, &stale) || !strings.Contains(err.Error(), "kds import") {
		t.Fatalf("8 days old: %v", err)
	}
	// An imported current CRL (by a second cache on the directory, as the
	// import command is) is picked up by the running one.
	crl, err := f.iss.CRL(99, f.clock.Now(), f.clock.Now().Add(7*24*time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	imp, err := kdscache.Open(f.dir, pinnedAnchors(t), kdscache.Options{Offline: true, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := imp.Import("crl", crl); err != nil {
		t.Fatal(err)
	}
	if err := f.cache.CheckRevoked(root, nil); err != nil {
		t.Fatalf("after import: %v", err)
	}
	// An older CRL does not roll it back.
	old, _ := f.iss.CRL(5, f.clock.Now().Add(-48*time.Hour), f.clock.Now(), nil)
	if _, err := imp.Import("old", old); err == nil {
		t.Fatal("an older CRL replaced a newer one")
	}
}

// CheckRevoked refuses a listed ASK and a listed VCEK.
func TestCRLRevokes(t *testing.T) {
	f := newFixture(t, kdscache.Options{})
	const root = "simulated/Milan"
	der, err := f.cache.VCEK(context.Background(), "Milan", chip(t), tcb)
	if err != nil {
		t.Fatal(err)
	}
	vcek, _ := x509.ParseCertificate(der)
	other, _ := x509.ParseCertificate(must(t)(f.iss.VCEK(chip(t), snpsim.DefaultTCB)))
	f.double.Revoke(vcek.SerialNumber)
	f.clock.Advance(10 * time.Second)
	if err := f.cache.RefreshCRL(context.Background(), root); err != nil {
		t.Fatal(err)
	}
	var rev *kdscache.RevokedError
	if err := f.cache.CheckRevoked(root, vcek); !errors.As(err, &rev) || rev.Role != "VCEK" {
		t.Fatalf("revoked VCEK: %v", err)
	}
	if err := f.cache.CheckRevoked(root, other); err != nil {
		t.Fatalf("another VCEK: %v", err)
	}
	f.double.Revoke(f.iss.Ask.SerialNumber)
	f.clock.Advance(25 * time.Hour)
	if err := f.cache.RefreshCRL(context.Background(), root); err != nil {
		t.Fatal(err)
	}
	if err := f.cache.CheckRevoked(root, other); !errors.As(err, &rev) || rev.Role != "ASK" {
		t.Fatalf("revoked ASK: %v", err)
	}
}

func must(t *testing.T) func([]byte, error) []byte {
	return func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

// Import stores only what verifies against the pinned roots.
func TestImport(t *testing.T) {
	c := &clock{t: time.Now()}
	dir := filepath.Join(t.TempDir(), "kds")
	cache, err := kdscache.Open(dir, pinnedAnchors(t), kdscache.Options{Offline: true, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	pinned, other := issuer(t, pinnedDir), issuer(t, otherDir)
	goodVCEK := must(t)(pinned.VCEK(chip(t), snpsim.DefaultTCB))
	badVCEK := must(t)(other.VCEK(chip(t), snpsim.DefaultTCB))
	goodCRL := must(t)(pinned.CRL(1, c.Now(), c.Now().Add(time.Hour), nil))
	badCRL := must(t)(other.CRL(1, c.Now(), c.Now().Add(time.Hour), nil))
	for _, tc := range []struct {
		name string
		data []byte
		kind string // "" = refused
	}{
		{"vcek.der", goodVCEK, "vcek"},
		{"vcek.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: goodVCEK}), "vcek"},
		{"crl.der", goodCRL, "crl"},
		{"cert_chain.pem", pinned.ChainPEM, "cert_chain"},
		{"other-vcek.der", badVCEK, ""},
		{"other-crl.der", badCRL, ""},
		{"other-cert_chain.pem", other.ChainPEM, ""},
		{"ask-as-vcek.der", pinned.Ask.Raw, ""},
		{"junk", []byte("hello"), ""},
		{"key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), ""},
	} {
		before, _ := os.ReadDir(dir)
		imp, err := cache.Import(tc.name, tc.data)
		after, _ := os.ReadDir(dir)
		switch {
		case tc.kind == "" && err == nil:
			t.Errorf("%s imported: %+v", tc.name, imp)
		case tc.kind == "" && len(after) != len(before):
			t.Errorf("%s refused but stored something", tc.name)
		case tc.kind != "" && (err != nil || imp.Kind != tc.kind):
			t.Errorf("%s: %+v %v, want %s", tc.name, imp, err, tc.kind)
		}
	}
	vceks, crls, err := cache.Status()
	if err != nil || len(vceks) != 1 || vceks[0].Error != "" || len(crls) != 1 || crls[0].State != "fresh" {
		t.Fatalf("status %+v %+v %v", vceks, crls, err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, _ := e.Info(); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", e.Name(), fi.Mode().Perm())
		}
	}
}

func TestCheckURL(t *testing.T) {
	for _, ok := range []string{"https://kdsintf.amd.com", "https://kds.example:8443/", "http://127.0.0.1:8080", "http://[::1]:1", "http://localhost:9"} {
		if _, err := kdscache.CheckURL(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"http://kdsintf.amd.com", "http://10.0.0.1", "ftp://x", "https://x/vcek", "https://u@x", "https://x?a=1", ""} {
		if _, err := kdscache.CheckURL(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
