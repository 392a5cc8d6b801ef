package relayproof_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/relayproof"
)

func newHandler(t *testing.T, cfg relayproof.HandlerConfig) *httptest.Server {
	t.Helper()
	if cfg.GetReport == nil {
		cfg.GetReport = getReport
	}
	cfg.KeyDir = filepath.Join(keysDir, "relay-a")
	cfg.Image = relayproof.Image{Relay: "relay-a", Digest: imageDigest, BuildRecord: "https://example.org/b.json"}
	cfg.Logf = t.Logf
	h, err := relayproof.Handler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// A genuine answer over HTTP, fetched by Fetch, passes Check against what
// tor says about the relay's keys.
func TestEndpointAnswersANonce(t *testing.T) {
	srv := newHandler(t, relayproof.HandlerConfig{})
	nonce := newNonce()
	e, raw, err := relayproof.Fetch(context.Background(), nil, strings.TrimPrefix(srv.URL, "http://"), nonce)
	if err != nil {
		t.Fatal(err)
	}
	if vs := check(t, e, expected(t, "relay-a", nonce, imageDigest)); !vs.OK() {
		t.Fatalf("genuine answer over HTTP: %v", vs)
	}
	if e.Relay != "relay-a" || len(raw) == 0 {
		t.Fatalf("relay %q, %d bytes", e.Relay, len(raw))
	}
}

// Only POST /v1/attestation with one 32-byte nonce is served.
func TestEndpointServesNothingElse(t *testing.T) {
	srv := newHandler(t, relayproof.HandlerConfig{Burst: 100, Rate: 100})
	for _, path := range []string{"/", "/v1/attestation/", "/v1/attestation/x", "/debug/pprof/"} {
		if code, _ := post(t, srv.URL+path, `{"nonce":"`+b64nonce()+`"}`); code != http.StatusNotFound {
			t.Errorf("POST %s: %d, want 404", path, code)
		}
	}
	resp, err := http.Get(srv.URL + relayproof.AttestationPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", resp.StatusCode)
	}
	for name, body := range map[string]string{
		"empty":         ``,
		"31 bytes":      `{"nonce":"` + strings.Repeat("A", 40) + `AA=="}`,
		"other field":   `{"nonce":"` + b64nonce() + `","x":1}`,
		"capitals":      `{"NONCE":"` + b64nonce() + `"}`,
		"twice":         `{"nonce":"` + b64nonce() + `","nonce":"` + b64nonce() + `"}`,
		"trailing":      `{"nonce":"` + b64nonce() + `"}{}`,
		"oversized":     `{"nonce":"` + b64nonce() + `"}` + strings.Repeat(" ", relayproof.MaxRequestSize),
		"not an object": `"` + b64nonce() + `"`,
		"number nonce":  `{"nonce":7}`,
		"unterminated":  `{"nonce":"` + b64nonce() + `"`,
	} {
		if code, msg := post(t, srv.URL+relayproof.AttestationPath, body); code != http.StatusBadRequest {
			t.Errorf("%s: %d %q, want 400", name, code, msg)
		}
	}
}

func b64nonce() string { return "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=" }

// A source gets its burst, then 429; the clock refills it.
func TestEndpointLimitsEachSource(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	srv := newHandler(t, relayproof.HandlerConfig{Rate: 1, Burst: 2, Now: clock})
	body := `{"nonce":"` + b64nonce() + `"}`
	for i := 0; i < 2; i++ {
		if code, msg := post(t, srv.URL+relayproof.AttestationPath, body); code != http.StatusOK {
			t.Fatalf("request %d: %d %q", i+1, code, msg)
		}
	}
	if code, _ := post(t, srv.URL+relayproof.AttestationPath, body); code != http.StatusTooManyRequests {
		t.Fatalf("third request at once: %d, want 429", code)
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	if code, _ := post(t, srv.URL+relayproof.AttestationPath, body); code != http.StatusOK {
		t.Fatalf("a second later: %d, want 200", code)
	}
}

// One report at a time: while one is being made, another request waits,
// and past the queue wait it is told to retry (503); the report source is
// never called twice at once.
func TestEndpointMakesOneReportAtATime(t *testing.T) {
	release := make(chan struct{})
	var inside, most atomic.Int32
	slow := func(ctx context.Context, rd [protocol.ReportDataSize]byte) ([]byte, []byte, error) {
		n := inside.Add(1)
		defer inside.Add(-1)
		if n > most.Load() {
			most.Store(n)
		}
		<-release
		return getReport(ctx, rd)
	}
	srv := newHandler(t, relayproof.HandlerConfig{GetReport: slow, Rate: 100, Burst: 100, QueueWait: 200 * time.Millisecond})
	body := `{"nonce":"` + b64nonce() + `"}`
	first := make(chan int)
	go func() {
		code, _ := post(t, srv.URL+relayproof.AttestationPath, body)
		first <- code
	}()
	for inside.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if code, _ := post(t, srv.URL+relayproof.AttestationPath, body); code != http.StatusServiceUnavailable {
		t.Fatalf("while a report is being made: %d, want 503", code)
	}
	close(release)
	if code := <-first; code != http.StatusOK {
		t.Fatalf("the first request: %d", code)
	}
	if most.Load() != 1 {
		t.Fatalf("%d reports at once", most.Load())
	}
}

// Fetch follows no redirect: a relay answers itself.
func TestFetchFollowsNoRedirect(t *testing.T) {
	genuine := newHandler(t, relayproof.HandlerConfig{})
	redirecting := httptest.NewServer(http.RedirectHandler(genuine.URL+relayproof.AttestationPath, http.StatusTemporaryRedirect))
	t.Cleanup(redirecting.Close)
	_, _, err := relayproof.Fetch(context.Background(), nil, strings.TrimPrefix(redirecting.URL, "http://"), newNonce())
	if err == nil || !strings.Contains(err.Error(), "307") {
		t.Fatalf("a redirect was followed or misreported: %v", err)
	}
}

func TestHandlerRefusesAnIncompleteConfig(t *testing.T) {
	good := relayproof.HandlerConfig{GetReport: getReport, KeyDir: filepath.Join(keysDir, "relay-a"), Image: relayproof.Image{Relay: "relay-a", Digest: imageDigest}}
	if _, err := relayproof.Handler(good); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*relayproof.HandlerConfig){
		"no report source": func(c *relayproof.HandlerConfig) { c.GetReport = nil },
		"no key directory": func(c *relayproof.HandlerConfig) { c.KeyDir = "" },
		"no relay name":    func(c *relayproof.HandlerConfig) { c.Image.Relay = "" },
		"bad image digest": func(c *relayproof.HandlerConfig) { c.Image.Digest = "ab" },
	} {
		c := good
		change(&c)
		if _, err := relayproof.Handler(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
