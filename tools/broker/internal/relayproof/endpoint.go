package relayproof

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/ratelimit"
	"diskless-relays/tools/broker/internal/torid"
)

// The public endpoint: a caller POSTs a Request to AttestationPath and gets
// the Evidence as JSON. It is the one shape both sides use (Handler serves
// it, Fetch asks it).
const (
	AttestationPath = "/v1/attestation"
	// MaxRequestSize bounds a request body: {"nonce":"<44 base64 chars>"}
	// is 55 bytes; room for whitespace, nothing more.
	MaxRequestSize = 256
	// DefaultRate and DefaultBurst are the per-source limits: a volunteer
	// asks once; a report costs the shared secure processor tens of
	// milliseconds on hardware.
	DefaultRate  = 0.2 // requests per second per source, sustained
	DefaultBurst = 5
	// DefaultQueueWait is how long a request waits for the one report
	// being made before it is told to retry.
	DefaultQueueWait = 5 * time.Second
)

// Request is a caller's question: its nonce, 32 bytes (standard base64 in
// JSON).
type Request struct {
	Nonce []byte `json:"nonce"`
}

// DecodeRequest reads a request body strictly: at most MaxRequestSize
// bytes, one JSON object with exactly the field "nonce" (spelled so, once),
// 32 bytes, nothing after it.
func DecodeRequest(data []byte) (*Request, error) {
	if len(data) > MaxRequestSize {
		return nil, fmt.Errorf("request: %d bytes, limit %d", len(data), MaxRequestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New(`request: not a JSON object (want {"nonce": BASE64})`)
	}
	var r Request
	seen := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("request: %v", err)
		}
		if name, _ := tok.(string); name != "nonce" || seen {
			return nil, fmt.Errorf(`request: field %q: the only field is "nonce", once`, clip(fmt.Sprint(tok)))
		}
		seen = true
		if err := dec.Decode(&r.Nonce); err != nil {
			return nil, fmt.Errorf("request: nonce: %v", err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("request: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("request: data after the JSON object")
	}
	if len(r.Nonce) != protocol.NonceSize {
		return nil, fmt.Errorf("request: nonce is %d bytes, want %d", len(r.Nonce), protocol.NonceSize)
	}
	return &r, nil
}

// HandlerConfig is what the relay side needs to answer.
type HandlerConfig struct {
	// GetReport asks the secure processor (or the simulator) for a report.
	GetReport ReportFunc
	// KeyDir is tor's KeyDirectory; the signing key is read from it for
	// each answer and not kept (tor rotates it).
	KeyDir string
	// Image is what this relay runs.
	Image Image
	// Rate and Burst are the per-source limits (DefaultRate, DefaultBurst
	// when zero); QueueWait how long a request waits for the report being
	// made (DefaultQueueWait when zero).
	Rate, Burst float64
	QueueWait   time.Duration
	// Now is the limiter's clock (time.Now when nil).
	Now func() time.Time
	// Logf logs refusals and failures (nothing when nil); never a secret.
	Logf func(format string, args ...any)
}

type handler struct {
	cfg     HandlerConfig
	limiter *ratelimit.Limiter
	// slot holds the one report being made: the secure processor is slow
	// and shared with the relay's own key release.
	slot chan struct{}
}

// Handler serves POST AttestationPath and nothing else (404). It holds no
// secret: each answer reads the relay's keys from cfg.KeyDir
// (torid.LoadRelayKeys) and drops them. Serve it with NewServer's
// timeouts.
func Handler(cfg HandlerConfig) (http.Handler, error) {
	switch {
	case cfg.GetReport == nil:
		return nil, errors.New("relayproof handler: no report source")
	case cfg.KeyDir == "":
		return nil, errors.New("relayproof handler: no key directory")
	case !protocol.ValidRelay(cfg.Image.Relay) || !protocol.ValidImageDigest(cfg.Image.Digest):
		return nil, fmt.Errorf("relayproof handler: image %q/%q is not a relay name and a 64-hex-digit digest", clip(cfg.Image.Relay), clip(cfg.Image.Digest))
	}
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.QueueWait <= 0 {
		cfg.QueueWait = DefaultQueueWait
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	return &handler{cfg: cfg, limiter: ratelimit.New(cfg.Rate, cfg.Burst, cfg.Now), slot: make(chan struct{}, 1)}, nil
}

// NewServer is an http.Server for h on addr with timeouts that keep slow
// clients from holding connections.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Path != AttestationPath {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST a JSON {\"nonce\": BASE64}", http.StatusMethodNotAllowed)
		return
	}
	if !h.limiter.AllowRequest(r) {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many requests from this address", http.StatusTooManyRequests)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestSize+1))
	if err != nil {
		http.Error(w, "unreadable request body", http.StatusBadRequest)
		return
	}
	req, err := DecodeRequest(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	wait := time.NewTimer(h.cfg.QueueWait)
	defer wait.Stop()
	select {
	case h.slot <- struct{}{}:
		defer func() { <-h.slot }()
	case <-wait.C:
		w.Header().Set("Retry-After", "2")
		http.Error(w, "busy making another report; retry", http.StatusServiceUnavailable)
		return
	case <-r.Context().Done():
		return
	}
	e, err := h.answer(r.Context(), req.Nonce)
	if err != nil {
		h.cfg.Logf("public attestation for %s: %v", r.RemoteAddr, err)
		http.Error(w, "the relay could not make its evidence now", http.StatusInternalServerError)
		return
	}
	out, err := e.Marshal()
	if err != nil {
		http.Error(w, "encoding the evidence failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

// answer reads the keys afresh and makes the evidence.
func (h *handler) answer(ctx context.Context, nonce []byte) (*Evidence, error) {
	keys, err := torid.LoadRelayKeys(h.cfg.KeyDir)
	if err != nil {
		return nil, err
	}
	return Make(ctx, h.cfg.GetReport, keys, nonce, h.cfg.Image)
}

// Fetch asks the relay at address (HOST:PORT) for its evidence over HTTP
// and returns it with the document as received (to save). client nil means
// one with a 60-second timeout that follows no redirect (a relay answers
// itself; it has no business sending a volunteer's program elsewhere).
// Plain HTTP is enough: the evidence is signed end to end, and the nonce
// needs no secrecy, only freshness.
func Fetch(ctx context.Context, client *http.Client, address string, nonce []byte) (*Evidence, []byte, error) {
	if len(nonce) != protocol.NonceSize {
		return nil, nil, fmt.Errorf("nonce is %d bytes, want %d", len(nonce), protocol.NonceSize)
	}
	if client == nil {
		client = &http.Client{
			Timeout:       60 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	body, err := json.Marshal(Request{Nonce: nonce})
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+address+AttestationPath, bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("address %q: %v", clip(address), err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxEvidenceSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the answer from %s: %v", address, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s answered %s: %q", address, resp.Status, clip(string(bytes.TrimSpace(data))))
	}
	e, err := Decode(data)
	if err != nil {
		return nil, nil, fmt.Errorf("the answer from %s: %v", address, err)
	}
	return e, data, nil
}
