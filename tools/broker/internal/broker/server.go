// Package broker is the key broker's HTTP service: the relay protocol
// (challenge, then attest with evidence, answered by an encrypted and signed
// key release or a signed push acknowledgement) and the admin API.
package broker

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/ratelimit"
	"diskless-relays/tools/broker/internal/snpcheck"
	"diskless-relays/tools/broker/internal/store"
)

// Config configures a Server.
type Config struct {
	Store *store.Store
	// SNP is the acceptance policy for SNP evidence.
	SNP *snpcheck.Policy
	// StaleAfter: a relay with no successful attestation for this long is
	// reported stale. Default 15 minutes.
	StaleAfter time.Duration
	// Now is the clock (tests move it). Default time.Now.
	Now func() time.Time
	// Log receives operational messages. Default: stderr.
	Log *log.Logger
	// MaxSessions bounds outstanding challenges. Default 4096.
	MaxSessions int
	// SourceRate and SourceBurst limit the relay protocol's requests per
	// client address (ratelimit.go). Defaults DefaultSourceRate and
	// DefaultSourceBurst; a negative SourceRate turns the limit off.
	SourceRate  float64
	SourceBurst int
}

// Server implements the broker. All state changes happen under mu.
type Server struct {
	cfg      Config
	st       *store.Store
	mu       sync.Mutex
	sessions map[string]*session
	limiter  *ratelimit.Limiter
}

type session struct {
	relay       string
	imageDigest string
	purpose     string
	nonce       []byte
	expires     time.Time
	used        bool
}

// New makes a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("broker: no store")
	}
	if cfg.SNP == nil {
		return nil, errors.New("broker: no SNP policy")
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 15 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = log.New(os.Stderr, "key-broker: ", log.LstdFlags)
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 4096
	}
	srv := &Server{cfg: cfg, st: cfg.Store, sessions: map[string]*session{}}
	if cfg.SourceRate >= 0 {
		rate, burst := cfg.SourceRate, cfg.SourceBurst
		if rate == 0 {
			rate = DefaultSourceRate
		}
		if burst <= 0 {
			burst = DefaultSourceBurst
		}
		srv.limiter = ratelimit.New(rate, float64(burst), cfg.Now)
	}
	return srv, nil
}

// RelayHandler serves the relay protocol only.
func (s *Server) RelayHandler() http.Handler {
	mux := http.NewServeMux()
	s.registerRelay(mux)
	return mux
}

// AdminHandler serves the admin API only.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	s.registerAdmin(mux)
	return mux
}

// Handler serves both.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.registerRelay(mux)
	s.registerAdmin(mux)
	return mux
}

func (s *Server) registerRelay(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/relays/{relay}/challenge", s.handleChallenge)
	mux.HandleFunc("POST /v1/relays/{relay}/attest", s.handleAttest)
}

func (s *Server) registerAdmin(mux *http.ServeMux) {
	mux.HandleFunc("PUT /v1/admin/relays/{relay}/keys", s.admin(s.handlePutKeys))
	mux.HandleFunc("POST /v1/admin/relays/{relay}/images", s.admin(s.handleAddImage))
	mux.HandleFunc("DELETE /v1/admin/relays/{relay}/images/{digest}", s.admin(s.handleRetireImage))
	mux.HandleFunc("POST /v1/admin/relays/{relay}/revoke", s.admin(s.handleRevoke))
	mux.HandleFunc("POST /v1/admin/relays/{relay}/reenroll", s.admin(s.handleReenroll))
	mux.HandleFunc("GET /v1/admin/status", s.admin(s.handleStatus))
	mux.HandleFunc("GET /v1/admin/log", s.admin(s.handleLog))
}

// ---- helpers ----

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, protocol.ErrorBody{Error: protocol.ErrorDetail{Code: code, Message: msg}})
}

// decodeStrict reads one JSON value, refusing unknown fields, trailing data
// and bodies over the limit.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, protocol.MaxRequestSize)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after JSON body")
	}
	return nil
}

func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// ---- challenge ----

func (s *Server) handleChallenge(w http.ResponseWriter, r *http.Request) {
	relay := r.PathValue("relay")
	if !protocol.ValidRelay(relay) {
		writeError(w, http.StatusBadRequest, "bad-relay-name", "relay name must match "+protocol.RelayNamePattern)
		return
	}
	var req protocol.ChallengeRequest
	if err := decodeStrict(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "bad-request", "malformed challenge request")
		return
	}
	if !protocol.ValidImageDigest(req.ImageDigest) {
		writeError(w, http.StatusBadRequest, "bad-request", "imageDigest must be 64 lowercase hex digits")
		return
	}
	if req.Purpose != protocol.PurposeBoot && req.Purpose != protocol.PurposePush {
		writeError(w, http.StatusBadRequest, "bad-request", `purpose must be "boot" or "push"`)
		return
	}
	if !s.allowSource(r) {
		writeError(w, http.StatusTooManyRequests, "busy", "too many requests from this address")
		return
	}
	nonce := make([]byte, protocol.NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "internal error")
		return
	}
	s.mu.Lock()
	// Challenges only for an image the relay may attest as: invented names
	// and digests cannot take the slots genuine relays need.
	if code := s.challengeRefusalLocked(relay, req.ImageDigest); code != "" {
		s.mu.Unlock()
		// Logged for the operator (a revoked relay still trying, an image
		// not registered yet), bounded like every refusal, never durable.
		entry := store.LogEntry{Time: s.cfg.Now().UTC(), Remote: r.RemoteAddr, Relay: relay, ImageDigest: req.ImageDigest, Purpose: req.Purpose,
			Verdict: verdictRefused, Reason: code, Detail: "challenge refused: " + refusalMessages[code]}
		if err := s.st.AppendLog(entry, false); err != nil {
			s.logf("attestation log: %v", err)
		}
		writeError(w, http.StatusForbidden, code, refusalMessages[code])
		return
	}
	now := s.cfg.Now()
	s.pruneLocked(now, false)
	if len(s.sessions) >= s.cfg.MaxSessions {
		// Used and expired sessions are kept only for precise replay
		// messages; drop them before refusing anyone.
		s.pruneLocked(now, true)
	}
	if len(s.sessions) >= s.cfg.MaxSessions {
		s.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "busy", "too many outstanding challenges")
		return
	}
	if s.liveSessionsLocked(relay, now) >= maxLiveSessionsPerRelay {
		s.mu.Unlock()
		writeError(w, http.StatusTooManyRequests, "busy", "too many outstanding challenges for this relay")
		return
	}
	id := randomID(18)
	sess := &session{
		relay:       relay,
		imageDigest: req.ImageDigest,
		purpose:     req.Purpose,
		nonce:       nonce,
		expires:     now.Add(protocol.ChallengeLifetime),
	}
	s.sessions[id] = sess
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, protocol.ChallengeResponse{Session: id, Nonce: nonce, ExpiresAt: sess.expires.UTC()})
}

// challengeRefusalLocked is the refusal code for a challenge that no attest
// could pass: the relay is not enrolled or revoked, or the image is not
// registered for it or retired. "" allows it.
func (s *Server) challengeRefusalLocked(relay, imageDigest string) string {
	rel := s.st.Relay(relay)
	switch {
	case rel == nil:
		return CodeNotEnrolled
	case rel.Revoked:
		return CodeRevoked
	}
	img := rel.Image(imageDigest)
	switch {
	case img == nil:
		return CodeUnregisteredImage
	case img.Retired:
		return CodeRetiredImage
	}
	return ""
}

// maxLiveSessionsPerRelay bounds the unused, unexpired challenges of one
// relay name, so that flooding one name cannot exhaust the global cap.
const maxLiveSessionsPerRelay = 64

// pruneLocked forgets sessions well past expiry (or, with dead, every used
// or expired one). Used or expired sessions are otherwise kept a while so
// that a replay gets the precise reason.
func (s *Server) pruneLocked(now time.Time, dead bool) {
	for id, sess := range s.sessions {
		if now.After(sess.expires.Add(5*time.Minute)) || (dead && (sess.used || now.After(sess.expires))) {
			delete(s.sessions, id)
		}
	}
}

func (s *Server) liveSessionsLocked(relay string, now time.Time) int {
	n := 0
	for _, sess := range s.sessions {
		if sess.relay == relay && !sess.used && !now.After(sess.expires) {
			n++
		}
	}
	return n
}

// ---- misc ----

// logf writes one line to the operator's log. Every string and error in it
// may come from a client (a field name, a certificate's subject), so each is
// cut to maxLoggedArg bytes and its control characters escaped: a newline
// cannot start a forged line.
func (s *Server) logf(format string, args ...any) {
	for i, a := range args {
		switch v := a.(type) {
		case string:
			args[i] = loggable(v)
		case error:
			args[i] = loggable(v.Error())
		}
	}
	s.cfg.Log.Printf(format, args...)
}

const maxLoggedArg = 512

// loggable is s with control characters and invalid UTF-8 written as Go
// escapes (strconv.Quote's, without the quotes), cut to maxLoggedArg.
func loggable(s string) string {
	clean := true
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 {
			clean = false
			break
		}
	}
	if !clean {
		q := strconv.Quote(s)
		s = q[1 : len(q)-1]
	}
	return store.CapText(s, maxLoggedArg)
}

func shortErr(err error) string {
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return msg
}

func internalError(w http.ResponseWriter) {
	writeError(w, http.StatusInternalServerError, "internal", "internal error")
}
