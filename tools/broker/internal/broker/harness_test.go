package broker_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
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
	"diskless-relays/tools/broker/internal/broker"
	"diskless-relays/tools/broker/internal/kdscache"
	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/snpcheck"
	"diskless-relays/tools/broker/internal/snpsim"
	"diskless-relays/tools/broker/internal/store"
)

// Two independent simulated chains, made once: the broker trusts the first
// (when simulated attestation is allowed), never the second.
var (
	trustedSimDir   string
	untrustedSimDir string
	// kdsSimDir keeps its ARK key: the KDS double signs its CRL with it.
	kdsSimDir string
)

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "broker-test-sims-")
	if err != nil {
		panic(err)
	}
	trustedSimDir = filepath.Join(tmp, "trusted")
	untrustedSimDir = filepath.Join(tmp, "untrusted")
	kdsSimDir = filepath.Join(tmp, "kds")
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, d := range []string{trustedSimDir, untrustedSimDir, kdsSimDir} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// 2048-bit ARK/ASK keep the tests quick; the CLI uses 4096.
			errs[i] = snpsim.Init(d, snpsim.InitOptions{RSABits: 2048, KeepArkKey: d == kdsSimDir})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			panic(err)
		}
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type envOptions struct {
	noSimulatedRoots bool
	allowSMT         bool
	minTCB           string // --min-tcb values, space-separated
	staleAfter       time.Duration
	dataDir          string // reuse an initialised data dir
	simDir           string // the simulated chain to trust (default trustedSimDir)
	// sourceRate and sourceBurst: the per-source limit; off unless set
	// (every test client is 127.0.0.1).
	sourceRate  float64
	sourceBurst int
	// realClock: the broker runs on time.Now (benchmarks whose limits refill).
	realClock bool
	// kdsURL: the SNP policy gets a KDS cache in DATA/kds that asks this
	// KDS (a kdssim double), on the env's clock; fetchVCEK and
	// checkRevocations as the serve flags, crlMaxAge its age limit.
	kdsURL           string
	fetchVCEK        bool
	checkRevocations bool
	crlMaxAge        time.Duration
}

type env struct {
	t          testing.TB
	dataDir    string
	st         *store.Store
	srv        *broker.Server
	snp        *snpcheck.Policy
	ts         *httptest.Server
	clock      *fakeClock
	adminToken string
	pub        store.Public
	logBuf     *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// adminTokenFileOf is where the tests keep a data directory's admin token:
// beside it, never inside.
func adminTokenFileOf(dataDir string) string { return dataDir + ".admin.token" }

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	dir := o.dataDir
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "data")
		if _, err := store.Init(dir, "", adminTokenFileOf(dir)); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{t: t, dataDir: dir, clock: &fakeClock{t: time.Now()}, logBuf: &syncBuffer{}}
	e.start(o)
	return e
}

func (e *env) start(o envOptions) {
	t := e.t
	t.Helper()
	st, err := store.Open(e.dataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	roots, err := snpcheck.AMDRoots()
	if err != nil {
		t.Fatal(err)
	}
	var simulated map[string][]*trust.AMDRootCerts
	if !o.noSimulatedRoots {
		simDir := o.simDir
		if simDir == "" {
			simDir = trustedSimDir
		}
		pemData, err := os.ReadFile(filepath.Join(simDir, snpsim.ArkAskFile))
		if err != nil {
			t.Fatal(err)
		}
		line, r, err := snpcheck.ParseRootsPEM(pemData)
		if err != nil {
			t.Fatal(err)
		}
		simulated = map[string][]*trust.AMDRootCerts{line: {r}}
	}
	var floors []string
	if o.minTCB != "" {
		floors = strings.Fields(o.minTCB)
	}
	tcb, tcbByLine, err := snpcheck.ParseMinTCBs(floors)
	if err != nil {
		t.Fatal(err)
	}
	policy := &snpcheck.Policy{Roots: roots, SimulatedRoots: simulated, AllowSMT: o.allowSMT, MinTCB: tcb, MinTCBByLine: tcbByLine}
	if o.kdsURL != "" {
		anchors := append(kdscache.Anchors("amd", roots), kdscache.Anchors("simulated", simulated)...)
		cache, err := kdscache.Open(filepath.Join(e.dataDir, "kds"), anchors, kdscache.Options{
			URL:       o.kdsURL,
			CRLMaxAge: o.crlMaxAge,
			Now:       e.clock.Now,
			// Waiting for KDS's turn moves the test clock instead.
			Sleep: func(_ context.Context, d time.Duration) error { e.clock.Advance(d); return nil },
			Logf:  func(f string, a ...any) { t.Logf("kds cache: "+f, a...) },
		})
		if err != nil {
			t.Fatal(err)
		}
		policy.KDS, policy.FetchCerts, policy.CheckRevocations = cache, o.fetchVCEK, o.checkRevocations
	}
	sourceRate := o.sourceRate
	if sourceRate == 0 {
		sourceRate = -1
	}
	now := e.clock.Now
	if o.realClock {
		now = time.Now
	}
	srv, err := broker.New(broker.Config{
		Store:       st,
		SNP:         policy,
		StaleAfter:  o.staleAfter,
		Now:         now,
		Log:         log.New(e.logBuf, "key-broker: ", 0),
		SourceRate:  sourceRate,
		SourceBurst: o.sourceBurst,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(adminTokenFileOf(e.dataDir))
	if err != nil {
		t.Fatal(err)
	}
	e.st, e.srv, e.snp = st, srv, policy
	e.adminToken = strings.TrimSpace(string(tok))
	e.pub = st.Secrets.Public()
	e.ts = httptest.NewServer(srv.Handler())
	t.Cleanup(e.ts.Close)
}

// stop closes the HTTP server (the "broker process" goes away).
func (e *env) stop() { e.ts.Close() }

func (e *env) do(method, path, token string, body any) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

func (e *env) admin(method, path string, body any) []byte {
	e.t.Helper()
	status, data := e.do(method, path, e.adminToken, body)
	if status != http.StatusOK {
		e.t.Fatalf("%s %s: %d %s", method, path, status, data)
	}
	return data
}

func (e *env) uploadKeys(relay string, files protocol.Files) {
	e.t.Helper()
	e.admin(http.MethodPut, "/v1/admin/relays/"+relay+"/keys", broker.KeysRequest{Files: files})
}

func (e *env) registerSNP(relay, digest string, measurements ...[]byte) {
	e.t.Helper()
	var ms []string
	for _, m := range measurements {
		ms = append(ms, hex.EncodeToString(m))
	}
	e.admin(http.MethodPost, "/v1/admin/relays/"+relay+"/images", broker.ImageRequest{ImageDigest: digest, Attestation: "snp", Measurements: ms})
}

func (e *env) registerToken(relay, digest string, token []byte) {
	e.t.Helper()
	h := sha256.Sum256(token)
	e.admin(http.MethodPost, "/v1/admin/relays/"+relay+"/images", broker.ImageRequest{ImageDigest: digest, Attestation: "none", TokenSHA256: hex.EncodeToString(h[:])})
}

func (e *env) status() broker.StatusResponse {
	e.t.Helper()
	var s broker.StatusResponse
	if err := json.Unmarshal(e.admin(http.MethodGet, "/v1/admin/status", nil), &s); err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) relayStatus(relay string) broker.RelayStatus {
	e.t.Helper()
	for _, r := range e.status().Relays {
		if r.Relay == relay {
			return r
		}
	}
	e.t.Fatalf("relay %s not in status", relay)
	return broker.RelayStatus{}
}

// logEntries returns the attestation log of a relay through the admin API.
func (e *env) logEntries(relay string) []store.LogEntry {
	e.t.Helper()
	data := e.admin(http.MethodGet, "/v1/admin/log?relay="+relay, nil)
	var out []store.LogEntry
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var le store.LogEntry
		if err := json.Unmarshal(line, &le); err != nil {
			e.t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, le)
	}
	return out
}

// lastAttestLog returns the last non-admin log entry of a relay.
func (e *env) lastAttestLog(relay string) store.LogEntry {
	e.t.Helper()
	entries := e.logEntries(relay)
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].Verdict != "admin" {
			return entries[i]
		}
	}
	e.t.Fatalf("no attestation log entry for %s", relay)
	return store.LogEntry{}
}

func (e *env) challenge(relay, digest, purpose string) protocol.ChallengeResponse {
	e.t.Helper()
	status, data := e.do(http.MethodPost, "/v1/relays/"+relay+"/challenge", "", protocol.ChallengeRequest{ImageDigest: digest, Purpose: purpose})
	if status != http.StatusOK {
		e.t.Fatalf("challenge: %d %s", status, data)
	}
	var ch protocol.ChallengeResponse
	if err := json.Unmarshal(data, &ch); err != nil {
		e.t.Fatal(err)
	}
	return ch
}

func (e *env) attest(relay string, req protocol.AttestRequest) (int, protocol.ErrorBody, []byte) {
	e.t.Helper()
	status, data := e.do(http.MethodPost, "/v1/relays/"+relay+"/attest", "", req)
	var eb protocol.ErrorBody
	if status != http.StatusOK {
		_ = json.Unmarshal(data, &eb)
	}
	return status, eb, data
}

// ---- fixtures ----

func randBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func randDigest(t testing.TB) string { return hex.EncodeToString(randBytes(t, 32)) }

// relayFiles makes a full bundle of random contents (random, so that a scan
// for them at rest cannot match by accident).
func relayFiles(t testing.TB) protocol.Files {
	t.Helper()
	f := protocol.Files{}
	for i, n := range append(append([]string{}, protocol.IdentityFiles...), "keys/secret_onion_key", "keys/secret_onion_key_ntor", "state") {
		f[n] = randBytes(t, 64+i*13)
	}
	return f
}

func simFor(t testing.TB, dir string, measurement []byte, policy uint64) *snpsim.Simulator {
	return simWithTCB(t, dir, measurement, policy, nil)
}

// simWithTCB is a simulator reporting firmware tcb (nil: snpsim.DefaultTCB).
func simWithTCB(t testing.TB, dir string, measurement []byte, policy uint64, tcb *kds.TCBParts) *snpsim.Simulator {
	t.Helper()
	sim, err := snpsim.Load(dir, snpsim.Options{Measurement: measurement, Policy: policy, TCB: tcb})
	if err != nil {
		t.Fatal(err)
	}
	return sim
}

func simSource(sim *snpsim.Simulator) agent.ReportSource {
	return agent.ReportSourceFunc(func(_ context.Context, rd [protocol.ReportDataSize]byte) ([]byte, []byte, error) {
		return sim.Report(rd)
	})
}

type agentSetup struct {
	relay, digest, attestation string
	torDir, tokenFile          string
	runtimeDir                 string
	source                     agent.ReportSource
	maxAttempts                int
	brokerURL                  string
	healthCommand              string
}

func torIDs() (int, int) {
	if os.Getuid() == 0 {
		return 4242, 4343 // as root, check that ownership is really set
	}
	return os.Getuid(), os.Getgid()
}

func (e *env) newAgent(s agentSetup) *agent.Agent {
	e.t.Helper()
	uid, gid := torIDs()
	if s.brokerURL == "" {
		s.brokerURL = e.ts.URL
	}
	if s.runtimeDir == "" {
		s.runtimeDir = filepath.Join(filepath.Dir(s.torDir), "run-"+filepath.Base(s.torDir))
	}
	cfg := map[string]any{
		"relay":                  s.relay,
		"imageDigest":            s.digest,
		"brokerUrl":              s.brokerURL,
		"brokerSigningPublicKey": base64.StdEncoding.EncodeToString(e.pub.SigningPublicKey),
		"pushRecipient":          e.pub.PushRecipient,
		"attestation":            s.attestation,
		"torDataDir":             s.torDir,
		"torUser":                uid,
		"torGroup":               gid,
		"pushIntervalSeconds":    300,
		"runtimeDir":             s.runtimeDir,
	}
	if s.healthCommand != "" {
		cfg["healthCommand"] = s.healthCommand
	}
	if s.attestation == "snp" {
		cfg["reportSource"] = "serial:/dev/null" // replaced by s.source
	} else {
		cfg["tokenFile"] = s.tokenFile
	}
	raw, _ := json.Marshal(cfg)
	c, err := agent.ParseConfig(raw)
	if err != nil {
		e.t.Fatal(err)
	}
	if s.maxAttempts == 0 {
		s.maxAttempts = 1
	}
	a, err := agent.New(c, agent.Options{
		MaxAttempts: s.maxAttempts,
		BackoffMin:  20 * time.Millisecond,
		BackoffMax:  100 * time.Millisecond,
		HTTPTimeout: 5 * time.Second,
		Log:         log.New(testWriter{e.t}, "relay-agent: ", 0),
		Source:      s.source,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// dirFiles lists every file under dir (relative names), for "wrote
// nothing" checks.
func dirFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if !info.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

func mustRefusal(t *testing.T, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("expected refusal %q, got success", code)
	}
	var re *agent.RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("expected refusal %q, got %v", code, err)
	}
	if re.Code != code {
		t.Fatalf("expected refusal %q, got %q (%v)", code, re.Code, err)
	}
}

func fmtFiles(f protocol.Files) string {
	var b strings.Builder
	for _, n := range f.Names() {
		fmt.Fprintf(&b, "%s:%d ", n, len(f[n]))
	}
	return b.String()
}

// fetchedSNPAgent enrols relay with files, registers a fresh image for it
// with an SNP measurement, and returns an agent of that image that has
// fetched its keys into torDir (setup.torDir, or a fresh one).
func (e *env) fetchedSNPAgent(relay string, files protocol.Files, setup agentSetup) (a *agent.Agent, torDir, digest string) {
	e.t.Helper()
	digest, m := randDigest(e.t), measurement(e.t)
	e.uploadKeys(relay, files)
	e.registerSNP(relay, digest, m)
	if setup.torDir == "" {
		setup.torDir = filepath.Join(e.t.TempDir(), "tor")
	}
	setup.relay, setup.digest, setup.attestation = relay, digest, "snp"
	setup.source = simSource(simFor(e.t, trustedSimDir, m, policyNoSMT))
	a = e.newAgent(setup)
	if err := a.Fetch(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	return a, setup.torDir, digest
}
