package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"filippo.io/age"

	"diskless-relays/tools/broker/internal/agecrypt"
	"diskless-relays/tools/broker/internal/protocol"
)

// Options are the agent's run-time knobs that are not part of the image's
// config file.
type Options struct {
	// BackoffMin and BackoffMax bound the exponential backoff between
	// attempts (default 2 s and 60 s).
	BackoffMin, BackoffMax time.Duration
	// MaxAttempts stops Fetch after that many failed attempts (0: never
	// give up).
	MaxAttempts int
	// HTTPTimeout bounds one HTTP request (default 30 s).
	HTTPTimeout time.Duration
	// Log receives progress lines (never key bytes). Default: stderr.
	Log *log.Logger
	// Source overrides the config's reportSource (tests).
	Source ReportSource
}

// Agent runs the relay side of the protocol.
type Agent struct {
	cfg    *Config
	opts   Options
	http   *http.Client
	base   string
	push   *age.X25519Recipient
	source ReportSource
	log    *log.Logger
}

// New makes an Agent.
func New(cfg *Config, opts Options) (*Agent, error) {
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = 2 * time.Second
	}
	if opts.BackoffMax < opts.BackoffMin {
		opts.BackoffMax = 60 * time.Second
		if opts.BackoffMax < opts.BackoffMin {
			opts.BackoffMax = opts.BackoffMin
		}
	}
	if opts.HTTPTimeout <= 0 {
		opts.HTTPTimeout = 30 * time.Second
	}
	if opts.Log == nil {
		opts.Log = log.New(os.Stderr, "relay-agent: ", log.LstdFlags)
	}
	push, err := agecrypt.ParseRecipient(cfg.PushRecipient)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if cfg.BrokerCAFile != "" {
		pemData, err := os.ReadFile(cfg.BrokerCAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("%s: no PEM certificate", cfg.BrokerCAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	a := &Agent{
		cfg:  cfg,
		opts: opts,
		http: &http.Client{Transport: tr, Timeout: opts.HTTPTimeout},
		base: strings.TrimRight(cfg.BrokerURL, "/"),
		push: push,
		log:  opts.Log,
	}
	if cfg.Attestation == protocol.AttestationSNP {
		src := opts.Source
		if src == nil {
			if src, err = NewReportSource(cfg.ReportSource); err != nil {
				return nil, err
			}
		}
		a.source = &lockedSource{src: src}
	}
	return a, nil
}

// RefusedError is the broker saying no (any non-2xx answer).
type RefusedError struct {
	Status  int
	Code    string
	Message string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("broker refused (%d %s): %s", e.Status, e.Code, e.Message)
}

func (a *Agent) post(ctx context.Context, p string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+p, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, protocol.MaxRequestSize))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var eb protocol.ErrorBody
		_ = json.Unmarshal(data, &eb)
		return &RefusedError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
	}
	return json.Unmarshal(data, out)
}

func (a *Agent) relayPath(op string) string {
	return "/v1/relays/" + a.cfg.Relay + "/" + op
}

func (a *Agent) challenge(ctx context.Context, purpose string) (*protocol.ChallengeResponse, error) {
	var ch protocol.ChallengeResponse
	if err := a.post(ctx, a.relayPath("challenge"), protocol.ChallengeRequest{ImageDigest: a.cfg.ImageDigest, Purpose: purpose}, &ch); err != nil {
		return nil, fmt.Errorf("challenge: %w", err)
	}
	if len(ch.Nonce) != protocol.NonceSize || ch.Session == "" {
		return nil, errors.New("challenge: malformed answer")
	}
	return &ch, nil
}

func (a *Agent) snpEvidence(ctx context.Context, purpose string, nonce []byte, recipient string, payloadDigest []byte) (protocol.Evidence, error) {
	rd := protocol.ReportData(a.cfg.Relay, a.cfg.ImageDigest, purpose, nonce, recipient, payloadDigest)
	rep, certs, err := a.source.GetReport(ctx, rd)
	if err != nil {
		return protocol.Evidence{}, fmt.Errorf("attestation report: %w", err)
	}
	return protocol.Evidence{Kind: protocol.EvidenceSNP, Report: rep, Certs: certs}, nil
}

// backoff sleeps before attempt n+1; false if ctx ended.
func (a *Agent) backoff(ctx context.Context, attempt int) bool {
	d := a.opts.BackoffMin
	for i := 1; i < attempt && d < a.opts.BackoffMax; i++ {
		d *= 2
	}
	if d > a.opts.BackoffMax {
		d = a.opts.BackoffMax
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Fetch obtains the relay's keys and installs them in torDataDir, retrying
// with capped exponential backoff until it succeeds, ctx ends, or
// MaxAttempts attempts failed. It returns nil only with the keys installed.
func (a *Agent) Fetch(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		err := a.fetchOnce(ctx)
		if err == nil {
			return nil
		}
		a.log.Printf("fetch attempt %d failed: %v", attempt, err)
		if a.opts.MaxAttempts > 0 && attempt >= a.opts.MaxAttempts {
			return fmt.Errorf("no keys after %d attempts: %w", attempt, err)
		}
		if !a.backoff(ctx, attempt) {
			return fmt.Errorf("no keys: %w (last error: %v)", ctx.Err(), err)
		}
	}
}

func (a *Agent) fetchOnce(ctx context.Context) error {
	eph, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	recipient := eph.Recipient().String()
	ch, err := a.challenge(ctx, protocol.PurposeBoot)
	if err != nil {
		return err
	}
	req := protocol.AttestRequest{Session: ch.Session, Recipient: recipient}
	switch a.cfg.Attestation {
	case protocol.AttestationSNP:
		if req.Evidence, err = a.snpEvidence(ctx, protocol.PurposeBoot, ch.Nonce, recipient, nil); err != nil {
			return err
		}
		a.log.Printf("boot: SNP report obtained for session %s", ch.Session)
	case protocol.AttestationNone:
		tok, err := readToken(a.cfg.TokenFile)
		if err != nil {
			return err
		}
		req.Evidence = protocol.Evidence{Kind: protocol.EvidenceToken, Token: tok}
		a.log.Printf("boot: presenting boot token for session %s", ch.Session)
	}
	var resp protocol.BootResponse
	if err := a.post(ctx, a.relayPath("attest"), req, &resp); err != nil {
		return fmt.Errorf("attest: %w", err)
	}
	digest := protocol.BootResponseDigest(a.cfg.Relay, a.cfg.ImageDigest, ch.Nonce, resp.Bundle)
	if !protocol.Verify(a.cfg.BrokerSigningPublicKey, digest, resp.Signature) {
		return errors.New("attest: the answer's signature does not verify with the pinned broker key")
	}
	plain, err := agecrypt.Decrypt(resp.Bundle, 2*protocol.MaxBundleSize, eph)
	if err != nil {
		return fmt.Errorf("decrypt bundle: %w", err)
	}
	defer clear(plain)
	var b protocol.BundlePlaintext
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	defer wipeFiles(b.Files)
	if b.Relay != a.cfg.Relay {
		return fmt.Errorf("bundle is for relay %q", b.Relay)
	}
	if err := protocol.CheckFiles(b.Files, nil); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if missing := protocol.MissingIdentityFiles(b.Files); len(missing) > 0 {
		return fmt.Errorf("bundle lacks identity files %s; refusing (the agent never makes keys)", strings.Join(missing, ", "))
	}
	if a.cfg.Attestation == protocol.AttestationNone && len(b.PushSecret) == 0 {
		return errors.New("bundle of a token-mode relay has no push secret")
	}
	if err := InstallFiles(a.cfg.TorDataDir, b.Files, *a.cfg.TorUser, *a.cfg.TorGroup); err != nil {
		return fmt.Errorf("install keys: %w", err)
	}
	if len(b.PushSecret) > 0 {
		if err := writePushSecret(a.cfg.RuntimeDir, b.PushSecret); err != nil {
			return fmt.Errorf("store push secret: %w", err)
		}
	}
	a.log.Printf("boot: installed %d files in %s (%s)%s", len(b.Files), a.cfg.TorDataDir, strings.Join(b.Files.Names(), ", "), ntorPublicNote(b.Files))
	return nil
}

// Push sends the current onion keys and state once.
func (a *Agent) Push(ctx context.Context) error {
	files, skipped, err := ReadMutableFiles(a.cfg.TorDataDir)
	if err != nil {
		return err
	}
	defer wipeFiles(files)
	for _, s := range skipped {
		a.log.Printf("push: left out %s", s)
	}
	if len(files) == 0 {
		return fmt.Errorf("nothing to push: no onion key or state in %s", a.cfg.TorDataDir)
	}
	pj, err := json.Marshal(protocol.PushPlaintext{Relay: a.cfg.Relay, Files: files, Health: a.health(ctx)})
	if err != nil {
		return err
	}
	payload, err := agecrypt.Encrypt(pj, a.push)
	clear(pj)
	if err != nil {
		return err
	}
	payloadDigest := protocol.PayloadSHA256(payload)
	ch, err := a.challenge(ctx, protocol.PurposePush)
	if err != nil {
		return err
	}
	req := protocol.AttestRequest{Session: ch.Session, Payload: payload}
	switch a.cfg.Attestation {
	case protocol.AttestationSNP:
		if req.Evidence, err = a.snpEvidence(ctx, protocol.PurposePush, ch.Nonce, "", payloadDigest); err != nil {
			return err
		}
	case protocol.AttestationNone:
		secret, err := readPushSecret(a.cfg.RuntimeDir)
		if err != nil {
			return err
		}
		req.Evidence = protocol.Evidence{Kind: protocol.EvidenceToken, Token: secret}
	}
	var resp protocol.PushResponse
	if err := a.post(ctx, a.relayPath("attest"), req, &resp); err != nil {
		return fmt.Errorf("push: %w", err)
	}
	if !protocol.Verify(a.cfg.BrokerSigningPublicKey, protocol.PushAckDigest(a.cfg.Relay, a.cfg.ImageDigest, ch.Nonce, payloadDigest), resp.Signature) {
		return errors.New("push: the acknowledgement's signature does not verify with the pinned broker key")
	}
	a.log.Printf("push: stored %s (%s)%s", strings.Join(files.Names(), ", "), shortHash(payloadDigest), ntorPublicNote(files))
	return nil
}

// health runs the configured health command and returns its output, capped;
// a command that fails still reports what it printed and why it failed.
func (a *Agent) health(ctx context.Context) string {
	if a.cfg.HealthCommand == "" {
		return ""
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(hctx, a.cfg.HealthCommand).Output()
	if len(out) > protocol.MaxHealthSize {
		out = out[:protocol.MaxHealthSize]
	}
	report := string(out)
	if err != nil {
		report += fmt.Sprintf("\nhealth-error %v\n", err)
		if len(report) > protocol.MaxHealthSize {
			report = report[:protocol.MaxHealthSize]
		}
	}
	return report
}

// Run pushes at once (the rollout gate waits for the new image's first
// report), then every pushIntervalSeconds until ctx ends (SIGTERM/SIGINT in
// the command), then once more within finalTimeout.
func (a *Agent) Run(ctx context.Context, finalTimeout time.Duration) error {
	interval := time.Duration(a.cfg.PushIntervalSeconds) * time.Second
	t := time.NewTicker(interval)
	defer t.Stop()
	// The public endpoint lives as long as the pushes; a port it cannot
	// open is logged and the pushes go on: the relay's keys matter more.
	publicCtx, stopPublic := context.WithCancel(ctx)
	publicDone := make(chan struct{})
	go func() {
		defer close(publicDone)
		if err := a.ServePublic(publicCtx); err != nil {
			a.log.Printf("%v", err)
		}
	}()
	defer func() { stopPublic(); <-publicDone }()
	a.log.Printf("run: pushing now and every %s", interval)
	if err := a.Push(ctx); err != nil {
		a.log.Printf("push failed (next try in %s): %v", interval, err)
	}
	for {
		select {
		case <-ctx.Done():
			a.log.Printf("run: stopping; final push")
			fctx, cancel := context.WithTimeout(context.Background(), finalTimeout)
			defer cancel()
			var err error
			for attempt := 1; ; attempt++ {
				if err = a.Push(fctx); err == nil {
					return nil
				}
				a.log.Printf("final push attempt %d failed: %v", attempt, err)
				if attempt >= 3 || !a.backoff(fctx, attempt) {
					return fmt.Errorf("final push: %w", err)
				}
			}
		case <-t.C:
			if err := a.Push(ctx); err != nil {
				a.log.Printf("push failed (next try in %s): %v", interval, err)
			}
		}
	}
}

func readToken(p string) ([]byte, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("boot token: %w", err)
	}
	tok := bytes.TrimSpace(data)
	if len(tok) < protocol.MinTokenSize || len(tok) > protocol.MaxTokenSize {
		return nil, fmt.Errorf("boot token in %s has a bad length", p)
	}
	return tok, nil
}

// ntorPublicNote names the PUBLIC half of the current ntor onion key, which
// tor stores after its 32-byte header and the 32-byte secret: what lets an
// operator (and the tests) see that a reboot came back with the key it
// pushed, without a byte of the secret in any log.
func ntorPublicNote(files protocol.Files) string {
	key := files["keys/secret_onion_key_ntor"]
	if len(key) != 96 {
		return ""
	}
	return "; ntor public key " + base64.StdEncoding.EncodeToString(key[64:96])
}

func shortHash(digest []byte) string {
	return "payload sha256 " + hex.EncodeToString(digest[:8]) + "…"
}

func wipeFiles(f map[string][]byte) {
	for _, v := range f {
		clear(v)
	}
}
