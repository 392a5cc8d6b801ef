package agent

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/relayproof"
)

// The broker's pushes and the public endpoint share one source: never two
// exchanges on it at once (a serial port would interleave their lines).
func TestReportSourceIsUsedByOneCallerAtATime(t *testing.T) {
	var inside, most atomic.Int32
	src := ReportSourceFunc(func(ctx context.Context, rd [protocol.ReportDataSize]byte) ([]byte, []byte, error) {
		n := inside.Add(1)
		defer inside.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
		return []byte{1}, nil, nil
	})
	cfg, err := ParseConfig(mustJSON(t, baseConfig(t)))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, Options{Source: src, Log: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, _ = a.source.GetReport(context.Background(), [protocol.ReportDataSize]byte{})
		}()
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Fatalf("%d exchanges ran at once on one source, want 1", most.Load())
	}
}

func mustJSON(t *testing.T, m map[string]any) []byte {
	t.Helper()
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// run serves the endpoint on the configured port while it pushes, and
// stops serving when it stops. Without keys in tor's directory it answers
// 500 and says nothing of why to the caller; any other path is 404. (A
// full answer with real tor keys: internal/relayproof's tests and the VM
// test of verify-relay.)
func TestRunServesThePublicEndpoint(t *testing.T) {
	port := freePort(t)
	c := baseConfig(t)
	c["brokerUrl"] = "http://127.0.0.1:1"
	c["torDataDir"] = t.TempDir()
	c["publicAttestation"] = map[string]any{"port": port}
	cfg, err := ParseConfig(mustJSON(t, c))
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	var mu sync.Mutex
	a, err := New(cfg, Options{Source: ReportSourceFunc(func(context.Context, [protocol.ReportDataSize]byte) ([]byte, []byte, error) {
		return nil, nil, io.EOF
	}), Log: log.New(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logged.Write(p) }), "", 0), BackoffMin: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- a.Run(ctx, 100*time.Millisecond) }()
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	var resp *http.Response
	for i := 0; i < 100; i++ {
		if resp, err = http.Post(base+relayproof.AttestationPath, "application/json", strings.NewReader(`{"nonce":"`+strings.Repeat("A", 43)+`="}`)); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("the endpoint never answered: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || strings.Contains(string(body), cfg.TorDataDir) {
		t.Errorf("without keys: %d %q, want 500 that does not name the directory", resp.StatusCode, body)
	}
	if resp, err := http.Post(base+"/v1/relay/relay-1/challenge", "application/json", strings.NewReader("{}")); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("another path: %v %v, want 404", resp, err)
	}
	cancel()
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop")
	}
	if _, err := http.Post(base+relayproof.AttestationPath, "application/json", strings.NewReader("{}")); err == nil {
		t.Error("the endpoint still answers after run stopped")
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logged.String(), "public attestation: answering on port "+strconv.Itoa(port)) {
		t.Errorf("log does not say where it answers:\n%s", logged.String())
	}
}

// A port the agent cannot open is an error naming the endpoint.
func TestServePublicNamesAPortItCannotOpen(t *testing.T) {
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := baseConfig(t)
	c["publicAttestation"] = map[string]any{"port": ln.Addr().(*net.TCPAddr).Port}
	cfg, err := ParseConfig(mustJSON(t, c))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, Options{Source: ReportSourceFunc(func(context.Context, [protocol.ReportDataSize]byte) ([]byte, []byte, error) { return nil, nil, io.EOF }), Log: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ServePublic(context.Background()); err == nil || !strings.Contains(err.Error(), "public attestation") {
		t.Fatalf("busy port: %v", err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
