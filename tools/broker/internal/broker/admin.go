package broker

import (
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"time"

	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/store"
)

// admin wraps a handler with bearer-token authentication (constant-time
// comparison of SHA-256 digests) and the relay-name check.
func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		token, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || !s.st.Secrets.CheckAdminToken(strings.TrimSpace(token)) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="key-broker"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "admin bearer token required")
			return
		}
		if relay := r.PathValue("relay"); relay != "" && !protocol.ValidRelay(relay) {
			writeError(w, http.StatusBadRequest, "bad-relay-name", "relay name must match "+protocol.RelayNamePattern)
			return
		}
		h(w, r)
	}
}

func (s *Server) adminLog(relay, action, detail string) {
	e := store.LogEntry{Time: s.cfg.Now().UTC(), Relay: relay, Verdict: verdictAdmin, Reason: action, Detail: detail}
	if err := s.st.AppendLog(e, true); err != nil {
		s.logf("attestation log: %v", err)
	}
	s.logf("admin %s relay=%s %s", action, relay, detail)
}

// KeysRequest is the body of PUT /v1/admin/relays/{relay}/keys.
type KeysRequest struct {
	Files protocol.Files `json:"files"`
}

func (s *Server) handlePutKeys(w http.ResponseWriter, r *http.Request) {
	relay := r.PathValue("relay")
	var req KeysRequest
	if err := decodeStrict(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "malformed request: "+shortErr(err))
		return
	}
	if err := protocol.CheckFiles(req.Files, nil); err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
		return
	}
	if missing := protocol.MissingIdentityFiles(req.Files); len(missing) > 0 {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "missing identity files: "+strings.Join(missing, ", "))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now().UTC()
	rel := s.st.Relay(relay)
	if rel != nil && rel.Revoked {
		writeError(w, http.StatusConflict, CodeRevoked, "relay is revoked; re-enrol it first")
		return
	}
	if rel == nil {
		rel = &store.Relay{Name: relay, EnrolledAt: now, Images: []store.Image{}}
	} else {
		rel = rel.Clone()
	}
	// The upload sets the shipped files. The onion keys and state the relay
	// pushed are the relay's current ones: they are kept unless the upload
	// carries its own (a relay moving from image mode, its keys collected
	// from the running relay moments before), which then replace them all.
	merged := protocol.Files{}
	uploadsMutable := false
	for name, data := range req.Files {
		merged[name] = data
		uploadsMutable = uploadsMutable || protocol.IsMutableFile(name)
	}
	if !uploadsMutable && rel.HasKeys {
		stored, err := s.st.LoadBundle(relay)
		if err != nil {
			s.logf("load bundle %s: %v", relay, err)
			internalError(w)
			return
		}
		for name, data := range stored {
			if protocol.IsMutableFile(name) {
				merged[name] = data
			}
		}
	}
	if err := s.st.SaveBundle(relay, merged); err != nil {
		s.logf("save bundle %s: %v", relay, err)
		internalError(w)
		return
	}
	rel.HasKeys = true
	rel.KeysUploadedAt = &now
	if err := s.st.SaveRelay(rel); err != nil {
		s.logf("save relay %s: %v", relay, err)
		internalError(w)
		return
	}
	s.adminLog(relay, "keys-uploaded", strings.Join(req.Files.Names(), ","))
	writeJSON(w, http.StatusOK, map[string]any{"relay": relay, "files": req.Files.Names(), "stored": merged.Names()})
}

// ImageRequest is the body of POST /v1/admin/relays/{relay}/images.
type ImageRequest struct {
	ImageDigest  string   `json:"imageDigest"`
	Attestation  string   `json:"attestation"`
	Measurements []string `json:"measurements,omitempty"`
	TokenSHA256  string   `json:"tokenSha256,omitempty"`
}

func (s *Server) handleAddImage(w http.ResponseWriter, r *http.Request) {
	relay := r.PathValue("relay")
	var req ImageRequest
	if err := decodeStrict(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "malformed request: "+shortErr(err))
		return
	}
	if !protocol.ValidImageDigest(req.ImageDigest) {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "imageDigest must be 64 lowercase hex digits")
		return
	}
	img := store.Image{Digest: req.ImageDigest, Attestation: req.Attestation}
	switch req.Attestation {
	case protocol.AttestationSNP:
		if req.TokenSHA256 != "" {
			writeError(w, http.StatusBadRequest, CodeBadRequest, `tokenSha256 is only for attestation "none"`)
			return
		}
		if len(req.Measurements) == 0 || len(req.Measurements) > maxMeasurementsPerImage {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "snp images need 1 to 16 measurements")
			return
		}
		for _, m := range req.Measurements {
			b, err := protocol.ParseMeasurement(m)
			if err != nil {
				writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
				return
			}
			img.Measurements = append(img.Measurements, hex.EncodeToString(b))
		}
	case protocol.AttestationNone:
		if len(req.Measurements) != 0 {
			writeError(w, http.StatusBadRequest, CodeBadRequest, `measurements are only for attestation "snp"`)
			return
		}
		t := strings.ToLower(req.TokenSHA256)
		if b, err := hex.DecodeString(t); err != nil || len(b) != 32 {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "tokenSha256 must be 64 hex digits")
			return
		}
		img.TokenSHA256 = t
	default:
		writeError(w, http.StatusBadRequest, CodeBadRequest, `attestation must be "snp" or "none"`)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now().UTC()
	img.RegisteredAt = now
	rel := s.st.Relay(relay)
	if rel != nil && rel.Revoked {
		writeError(w, http.StatusConflict, CodeRevoked, "relay is revoked; re-enrol it first")
		return
	}
	if rel == nil {
		rel = &store.Relay{Name: relay, EnrolledAt: now, Images: []store.Image{}}
	} else {
		rel = rel.Clone()
	}
	// Registering a digest again replaces it: new measurements, or a new
	// token that re-arms a token-mode image after its token was used.
	replaced := false
	for i := range rel.Images {
		if rel.Images[i].Digest == img.Digest {
			rel.Images[i] = img
			replaced = true
		}
	}
	if !replaced {
		if len(rel.Images) >= maxImagesPerRelay {
			writeError(w, http.StatusConflict, CodeBadRequest, "too many images registered; retire some")
			return
		}
		rel.Images = append(rel.Images, img)
	}
	if rel.PushSecretImage == img.Digest {
		// A re-registered (re-armed) image starts a new boot cycle.
		rel.PushSecretSHA256, rel.PushSecretImage = "", ""
	}
	if err := s.st.SaveRelay(rel); err != nil {
		s.logf("save relay %s: %v", relay, err)
		internalError(w)
		return
	}
	s.adminLog(relay, "image-registered", img.Digest+" attestation="+img.Attestation)
	writeJSON(w, http.StatusOK, imageStatus(img))
}

func (s *Server) handleRetireImage(w http.ResponseWriter, r *http.Request) {
	relay := r.PathValue("relay")
	digest := r.PathValue("digest")
	s.mu.Lock()
	defer s.mu.Unlock()
	live := s.st.Relay(relay)
	if live == nil {
		writeError(w, http.StatusNotFound, CodeNotEnrolled, "relay not enrolled")
		return
	}
	rel := live.Clone()
	img := rel.Image(digest)
	if img == nil {
		writeError(w, http.StatusNotFound, CodeUnregisteredImage, "image not registered")
		return
	}
	if !img.Retired {
		now := s.cfg.Now().UTC()
		img.Retired = true
		img.RetiredAt = &now
	}
	if rel.PushSecretImage == digest {
		rel.PushSecretSHA256, rel.PushSecretImage = "", ""
	}
	if err := s.st.SaveRelay(rel); err != nil {
		s.logf("save relay %s: %v", relay, err)
		internalError(w)
		return
	}
	s.adminLog(relay, "image-retired", digest)
	writeJSON(w, http.StatusOK, imageStatus(*img))
}

func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	relay := r.PathValue("relay")
	s.mu.Lock()
	defer s.mu.Unlock()
	live := s.st.Relay(relay)
	if live == nil {
		writeError(w, http.StatusNotFound, CodeNotEnrolled, "relay not enrolled")
		return
	}
	rel := live.Clone()
	if !rel.Revoked {
		now := s.cfg.Now().UTC()
		rel.Revoked = true
		rel.RevokedAt = &now
	}
	rel.PushSecretSHA256, rel.PushSecretImage = "", ""
	if err := s.st.SaveRelay(rel); err != nil {
		s.logf("save relay %s: %v", relay, err)
		internalError(w)
		return
	}
	s.adminLog(relay, "revoked", "")
	writeJSON(w, http.StatusOK, s.relayStatus(rel, s.cfg.Now()))
}

// ReenrollRequest is the optional body of POST …/reenroll.
type ReenrollRequest struct {
	// KeepKeys keeps the stored identity (use only when the seizure cannot
	// have exposed it, e.g. SNP-protected memory). Default: the bundle is
	// deleted and new identity files must be uploaded.
	KeepKeys bool `json:"keepKeys"`
}

func (s *Server) handleReenroll(w http.ResponseWriter, r *http.Request) {
	relay := r.PathValue("relay")
	var req ReenrollRequest
	if r.ContentLength != 0 {
		if err := decodeStrict(w, r, &req); err != nil && err != io.EOF {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "malformed request: "+shortErr(err))
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	live := s.st.Relay(relay)
	if live == nil {
		writeError(w, http.StatusNotFound, CodeNotEnrolled, "relay not enrolled")
		return
	}
	if !live.Revoked {
		writeError(w, http.StatusConflict, "not-revoked", "relay is not revoked")
		return
	}
	rel := live.Clone()
	now := s.cfg.Now().UTC()
	rel.Revoked = false
	rel.RevokedAt = nil
	rel.EnrolledAt = now
	rel.PushSecretSHA256, rel.PushSecretImage = "", ""
	// Every image registered before the revocation stays retired: the
	// relay must be given newly registered images (and tokens).
	for i := range rel.Images {
		if !rel.Images[i].Retired {
			rel.Images[i].Retired = true
			rel.Images[i].RetiredAt = &now
		}
	}
	if !req.KeepKeys {
		if err := s.st.DeleteBundle(relay); err != nil {
			s.logf("delete bundle %s: %v", relay, err)
			internalError(w)
			return
		}
		rel.HasKeys = false
		rel.KeysUploadedAt = nil
		rel.LastPush = nil
	}
	if err := s.st.SaveRelay(rel); err != nil {
		s.logf("save relay %s: %v", relay, err)
		internalError(w)
		return
	}
	detail := "keys deleted"
	if req.KeepKeys {
		detail = "keys kept"
	}
	s.adminLog(relay, "reenrolled", detail)
	writeJSON(w, http.StatusOK, s.relayStatus(rel, now))
}

// ImageStatus is an image as shown by the admin API.
type ImageStatus struct {
	ImageDigest   string     `json:"imageDigest"`
	Attestation   string     `json:"attestation"`
	Measurements  []string   `json:"measurements,omitempty"`
	TokenConsumed bool       `json:"tokenConsumed,omitempty"`
	RegisteredAt  time.Time  `json:"registeredAt"`
	Retired       bool       `json:"retired"`
	RetiredAt     *time.Time `json:"retiredAt,omitempty"`
}

func imageStatus(i store.Image) ImageStatus {
	return ImageStatus{
		ImageDigest:   i.Digest,
		Attestation:   i.Attestation,
		Measurements:  i.Measurements,
		TokenConsumed: i.TokenConsumed,
		RegisteredAt:  i.RegisteredAt,
		Retired:       i.Retired,
		RetiredAt:     i.RetiredAt,
	}
}

// RelayStatus is one relay in GET /v1/admin/status.
type RelayStatus struct {
	Relay           string             `json:"relay"`
	Revoked         bool               `json:"revoked"`
	RevokedAt       *time.Time         `json:"revokedAt,omitempty"`
	EnrolledAt      time.Time          `json:"enrolledAt"`
	HasKeys         bool               `json:"hasKeys"`
	Images          []ImageStatus      `json:"images"`
	LastAttestation *store.Attestation `json:"lastAttestation"`
	LastRefusal     *store.Attestation `json:"lastRefusal,omitempty"`
	LastPush        *time.Time         `json:"lastPush"`
	LastHealth      *store.Health      `json:"lastHealth"`
	Stale           bool               `json:"stale"`
}

// StatusResponse is GET /v1/admin/status.
type StatusResponse struct {
	Time       time.Time     `json:"time"`
	StaleAfter string        `json:"staleAfter"`
	Relays     []RelayStatus `json:"relays"`
}

// relayStatus computes a relay's status. A relay is stale when it is not
// revoked and has had no successful attestation (or, never attested, no
// enrolment) within StaleAfter.
func (s *Server) relayStatus(rel *store.Relay, now time.Time) RelayStatus {
	st := RelayStatus{
		Relay:           rel.Name,
		Revoked:         rel.Revoked,
		RevokedAt:       rel.RevokedAt,
		EnrolledAt:      rel.EnrolledAt,
		HasKeys:         rel.HasKeys,
		Images:          []ImageStatus{},
		LastAttestation: rel.LastAttestation,
		LastRefusal:     rel.LastRefusal,
		LastPush:        rel.LastPush,
		LastHealth:      rel.LastHealth,
	}
	for _, i := range rel.Images {
		st.Images = append(st.Images, imageStatus(i))
	}
	since := rel.EnrolledAt
	if rel.LastAttestation != nil && rel.LastAttestation.Time.After(since) {
		since = rel.LastAttestation.Time
	}
	st.Stale = !rel.Revoked && now.Sub(since) > s.cfg.StaleAfter
	return st
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	now := s.cfg.Now()
	resp := StatusResponse{Time: now.UTC(), StaleAfter: s.cfg.StaleAfter.String(), Relays: []RelayStatus{}}
	for _, name := range s.st.RelayNames() {
		resp.Relays = append(resp.Relays, s.relayStatus(s.st.Relay(name), now))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handleLog(w http.ResponseWriter, r *http.Request) {
	relay := r.URL.Query().Get("relay")
	if relay != "" && !protocol.ValidRelay(relay) {
		writeError(w, http.StatusBadRequest, "bad-relay-name", "relay name must match "+protocol.RelayNamePattern)
		return
	}
	lines, err := s.st.ReadLog(relay)
	if err != nil {
		s.logf("read log: %v", err)
		internalError(w)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	for _, l := range lines {
		_, _ = w.Write(append(l, '\n'))
	}
}
