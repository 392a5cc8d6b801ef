package broker

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"filippo.io/age"

	"diskless-relays/tools/broker/internal/agecrypt"
	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/snpcheck"
	"diskless-relays/tools/broker/internal/store"
)

// Refusal codes of the relay protocol (snpcheck adds those of SNP checks).
const (
	CodeBadRequest        = "bad-request"
	CodeUnknownSession    = "unknown-session"
	CodeReplayed          = "session-replayed"
	CodeExpired           = "session-expired"
	CodeSessionRelay      = "session-relay-mismatch"
	CodeNotEnrolled       = "relay-not-enrolled"
	CodeRevoked           = "relay-revoked"
	CodeUnregisteredImage = "image-not-registered"
	CodeRetiredImage      = "image-retired"
	CodeEvidenceKind      = "evidence-kind-mismatch"
	CodeBadRecipient      = "bad-recipient"
	CodeBadPayload        = "bad-payload"
	CodeBadToken          = "bad-token"
	CodeTokenReused       = "token-reused"
	CodeNoPushSecret      = "no-push-secret"
	CodeBadPushSecret     = "bad-push-secret"
	CodeNoKeys            = "no-keys"
	CodePushIdentityFile  = "push-identity-file"
	CodePushBadFile       = "push-bad-file"
	CodePushEmpty         = "push-empty"
	CodePushTooLarge      = "push-too-large"
	CodePayloadRelay      = "payload-relay-mismatch"
	CodeInternal          = "internal"
)

// Log verdicts.
const (
	verdictReleased = "released" // boot: keys released
	verdictAccepted = "accepted" // push: stored
	verdictRefused  = "refused"
	verdictAdmin    = "admin" // an admin action, for the audit trail
)

// Registration limits.
const (
	maxImagesPerRelay       = 64
	maxMeasurementsPerImage = 16
)

// Short client-facing messages. The log has the details.
var refusalMessages = map[string]string{
	CodeBadRequest:        "malformed request",
	CodeUnknownSession:    "unknown session",
	CodeReplayed:          "session already used",
	CodeExpired:           "session expired",
	CodeSessionRelay:      "session belongs to another relay",
	CodeNotEnrolled:       "relay not enrolled",
	CodeRevoked:           "relay revoked",
	CodeUnregisteredImage: "image not registered",
	CodeRetiredImage:      "image retired",
	CodeEvidenceKind:      "wrong kind of evidence for this image",
	CodeBadRecipient:      "bad recipient",
	CodeBadPayload:        "bad payload",
	CodeBadToken:          "token refused",
	CodeTokenReused:       "token already used",
	CodeNoPushSecret:      "no push secret for this relay",
	CodeBadPushSecret:     "push secret refused",
	CodeNoKeys:            "no keys stored for this relay",
	CodePushIdentityFile:  "a push may not set identity files",
	CodePushBadFile:       "file name not allowed",
	CodePushEmpty:         "push carries no file",
	CodePushTooLarge:      "push too large",
	CodePayloadRelay:      "payload is for another relay",
	CodeInternal:          "internal error",
	// A relay that gets these retries; the operator reads the log.
	snpcheck.CodeVCEKUnavailable: "VCEK not available yet; retry later",
	snpcheck.CodeCRLUnavailable:  "revocation cannot be checked; retry later",
	snpcheck.CodeCertRevoked:     "certificate revoked",
}

type refusal struct {
	status int
	code   string
	detail string
}

func refuse(code, format string, args ...any) *refusal {
	return &refusal{status: http.StatusForbidden, code: code, detail: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *refusal {
	return &refusal{status: http.StatusBadRequest, code: CodeBadRequest, detail: fmt.Sprintf(format, args...)}
}

func internal(err error) *refusal {
	return &refusal{status: http.StatusInternalServerError, code: CodeInternal, detail: err.Error()}
}

func (s *Server) handleAttest(w http.ResponseWriter, r *http.Request) {
	relay := r.PathValue("relay")
	if !protocol.ValidRelay(relay) {
		writeError(w, http.StatusBadRequest, "bad-relay-name", "relay name must match "+protocol.RelayNamePattern)
		return
	}
	if !s.allowSource(r) {
		writeError(w, http.StatusTooManyRequests, "busy", "too many requests from this address")
		return
	}
	var req protocol.AttestRequest
	decodeErr := decodeStrict(w, r, &req)
	if decodeErr == nil {
		s.prepareSNP(r.Context(), relay, &req)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	entry := store.LogEntry{Time: now.UTC(), Remote: r.RemoteAddr, Relay: relay, EvidenceKind: truncate(req.Evidence.Kind, 16)}
	var resp any
	var ref *refusal
	// Whether the evidence was genuine (a report chained to a trusted root, or
	// the registered token): only then may a refusal become the relay's
	// lastRefusal, which status and the rollout gate show.
	genuine := false
	if decodeErr != nil {
		ref = badRequest("cannot decode request: %v", decodeErr)
		var mbe *http.MaxBytesError
		if errors.As(decodeErr, &mbe) {
			ref.status = http.StatusRequestEntityTooLarge
		}
	} else {
		resp, ref = s.attestLocked(now, relay, &req, &entry, &genuine)
	}
	if ref != nil {
		entry.Verdict = verdictRefused
		entry.Reason = ref.code
		entry.Detail = ref.detail
		if err := s.st.AppendLog(entry, false); err != nil {
			s.logf("attestation log: %v", err)
		}
		s.logf("refused %s relay=%s image=%s purpose=%s: %s", ref.code, relay, entry.ImageDigest, entry.Purpose, ref.detail)
		// A relay's last refusal records attempts with genuine evidence, not
		// what anyone could send (bad sessions, replays, forged reports).
		if rel := s.st.Relay(relay); rel != nil && genuine && ref.code != CodeInternal {
			c := rel.Clone()
			c.LastRefusal = attestationRecord(entry)
			if err := s.st.SaveRelay(c); err != nil {
				s.logf("save relay %s: %v", relay, err)
			}
		}
		msg := refusalMessages[ref.code]
		if msg == "" {
			msg = "attestation refused"
		}
		writeError(w, ref.status, ref.code, msg)
		return
	}
	s.logf("%s relay=%s image=%s purpose=%s kind=%s measurement=%s", entry.Verdict, relay, entry.ImageDigest, entry.Purpose, entry.EvidenceKind, entry.Measurement)
	writeJSON(w, http.StatusOK, resp)
}

// prepareSNP lets the SNP policy fetch from AMD's KDS what its check will
// need (a VCEK, a due CRL), before the lock is taken: a KDS request waits
// for its turn and the network, and under the lock it would hold up every
// other relay. Only a request for a live session of an enrolled relay's
// registered SNP image gets this far, so a client needs such a session
// before it can make the broker spend its KDS budget (see the README's
// trust model).
func (s *Server) prepareSNP(ctx context.Context, relay string, req *protocol.AttestRequest) {
	p := s.cfg.SNP
	if p == nil || p.KDS == nil || req.Evidence.Kind != protocol.EvidenceSNP {
		return
	}
	s.mu.Lock()
	sess := s.sessions[req.Session]
	ok := sess != nil && !sess.used && !s.cfg.Now().After(sess.expires) && sess.relay == relay
	var ms [][]byte
	var want [protocol.ReportDataSize]byte
	if ok {
		rel := s.st.Relay(relay)
		var img *store.Image
		if rel != nil && !rel.Revoked {
			img = rel.Image(sess.imageDigest)
		}
		ok = img != nil && !img.Retired && img.Attestation != protocol.AttestationNone
		if ok {
			ms = measurementsOf(img)
			want = sessionReportData(relay, sess, req)
		}
	}
	s.mu.Unlock()
	if !ok {
		return
	}
	if err := p.Prepare(ctx, req.Evidence.Report, req.Evidence.Certs, want, ms); err != nil {
		s.logf("relay=%s: %v", relay, err)
	}
}

// measurementsOf is an image's registered measurements as bytes.
func measurementsOf(img *store.Image) [][]byte {
	var ms [][]byte
	for _, m := range img.Measurements {
		if b, err := hex.DecodeString(m); err == nil {
			ms = append(ms, b)
		}
	}
	return ms
}

// sessionReportData is the REPORT_DATA a report must carry for this session:
// a push binds its payload's digest, a boot (which carries none) does not.
func sessionReportData(relay string, sess *session, req *protocol.AttestRequest) [protocol.ReportDataSize]byte {
	var payloadDigest []byte
	if sess.purpose == protocol.PurposePush {
		payloadDigest = protocol.PayloadSHA256(req.Payload)
	}
	return protocol.ReportData(relay, sess.imageDigest, sess.purpose, sess.nonce, req.Recipient, payloadDigest)
}

func attestationRecord(e store.LogEntry) *store.Attestation {
	return &store.Attestation{
		Time:         e.Time,
		ImageDigest:  e.ImageDigest,
		Purpose:      e.Purpose,
		EvidenceKind: e.EvidenceKind,
		Verdict:      e.Verdict,
		Reason:       e.Reason,
		Measurement:  e.Measurement,
		ReportedTCB:  e.ReportedTCB,
		Policy:       e.Policy,
		Root:         e.Root,
	}
}

// attestLocked runs every check of an attest request; on success it commits
// the state change (token consumed, bundle merged, last attestation) and the
// log line before returning the response. Called with s.mu held.
func (s *Server) attestLocked(now time.Time, relay string, req *protocol.AttestRequest, entry *store.LogEntry, genuine *bool) (any, *refusal) {
	// Session: exists, unused, unexpired, for this relay. It is consumed
	// by this attempt whatever the outcome.
	sess := s.sessions[req.Session]
	if sess == nil {
		return nil, refuse(CodeUnknownSession, "no session %q", truncate(req.Session, 64))
	}
	wasUsed := sess.used
	sess.used = true
	entry.ImageDigest = sess.imageDigest
	entry.Purpose = sess.purpose
	if wasUsed {
		return nil, refuse(CodeReplayed, "session %s was already used (replay)", req.Session)
	}
	if now.After(sess.expires) {
		return nil, refuse(CodeExpired, "session %s expired at %s", req.Session, sess.expires.UTC().Format(time.RFC3339))
	}
	if sess.relay != relay {
		return nil, refuse(CodeSessionRelay, "session %s was issued for relay %q", req.Session, sess.relay)
	}

	// Relay and image.
	live := s.st.Relay(relay)
	if live == nil {
		return nil, refuse(CodeNotEnrolled, "relay %q is not enrolled", relay)
	}
	if live.Revoked {
		return nil, refuse(CodeRevoked, "relay %q is revoked", relay)
	}
	rel := live.Clone()
	img := rel.Image(sess.imageDigest)
	if img == nil {
		return nil, refuse(CodeUnregisteredImage, "image %s is not registered for relay %q", sess.imageDigest, relay)
	}
	if img.Retired {
		return nil, refuse(CodeRetiredImage, "image %s of relay %q was retired", sess.imageDigest, relay)
	}
	wantKind := protocol.EvidenceSNP
	if img.Attestation == protocol.AttestationNone {
		wantKind = protocol.EvidenceToken
	}
	if req.Evidence.Kind != wantKind {
		return nil, refuse(CodeEvidenceKind, "image %s is registered with attestation %q; evidence kind %q given", img.Digest, img.Attestation, req.Evidence.Kind)
	}

	// Recipient and payload by purpose.
	var recipient *age.X25519Recipient
	var payloadDigest []byte
	switch sess.purpose {
	case protocol.PurposeBoot:
		rcp, err := agecrypt.ParseRecipient(req.Recipient)
		if err != nil {
			return nil, refuse(CodeBadRecipient, "recipient %q: %v", truncate(req.Recipient, 100), err)
		}
		recipient = rcp
		if len(req.Payload) != 0 {
			return nil, refuse(CodeBadPayload, "a boot attestation carries no payload")
		}
	case protocol.PurposePush:
		if req.Recipient != "" {
			if _, err := agecrypt.ParseRecipient(req.Recipient); err != nil {
				return nil, refuse(CodeBadRecipient, "recipient %q: %v", truncate(req.Recipient, 100), err)
			}
		}
		if len(req.Payload) == 0 {
			return nil, refuse(CodeBadPayload, "a push carries a payload")
		}
		if len(req.Payload) > protocol.MaxPayloadSize {
			return nil, refuse(CodePushTooLarge, "payload is %d bytes, limit %d", len(req.Payload), protocol.MaxPayloadSize)
		}
		payloadDigest = protocol.PayloadSHA256(req.Payload)
	}

	// Evidence.
	switch req.Evidence.Kind {
	case protocol.EvidenceSNP:
		res, ref := s.cfg.SNP.Check(req.Evidence.Report, req.Evidence.Certs, sessionReportData(relay, sess, req), measurementsOf(img))
		entry.Measurement = res.MeasurementHex()
		entry.ReportedTCB = res.TCBString()
		entry.Policy = res.PolicyString()
		entry.Root = res.Root
		*genuine = res.Verified
		if ref != nil {
			return nil, refuse(ref.Code, "%s", ref.Detail)
		}
	case protocol.EvidenceToken:
		tok := req.Evidence.Token
		if len(tok) < protocol.MinTokenSize || len(tok) > protocol.MaxTokenSize {
			return nil, refuse(CodeBadToken, "token length %d outside [%d, %d]", len(tok), protocol.MinTokenSize, protocol.MaxTokenSize)
		}
		sum := sha256.Sum256(tok)
		if sess.purpose == protocol.PurposeBoot {
			if !hashEqual(sum[:], img.TokenSHA256) {
				return nil, refuse(CodeBadToken, "token does not match the registered hash of image %s", img.Digest)
			}
			*genuine = true
			if img.TokenConsumed {
				return nil, refuse(CodeTokenReused, "token of image %s was already used at %s; re-arm with a new token", img.Digest, fmtTime(img.TokenConsumedAt))
			}
		} else {
			if rel.PushSecretSHA256 == "" {
				return nil, refuse(CodeNoPushSecret, "relay %q has no push secret (no token boot since enrolment)", relay)
			}
			if rel.PushSecretImage != img.Digest {
				return nil, refuse(CodeBadPushSecret, "push secret was issued to image %s, not %s", rel.PushSecretImage, img.Digest)
			}
			if !hashEqual(sum[:], rel.PushSecretSHA256) {
				return nil, refuse(CodeBadPushSecret, "push secret does not match")
			}
			*genuine = true
		}
	default:
		return nil, badRequest("unknown evidence kind %q", truncate(req.Evidence.Kind, 32))
	}

	rec := func(verdict string) *store.Attestation {
		entry.Verdict = verdict
		return attestationRecord(*entry)
	}

	if sess.purpose == protocol.PurposeBoot {
		files, err := s.st.LoadBundle(relay)
		if err != nil {
			return nil, internal(err)
		}
		if missing := protocol.MissingIdentityFiles(files); len(missing) > 0 {
			return nil, refuse(CodeNoKeys, "relay %q has no complete key bundle (missing %s)", relay, strings.Join(missing, ", "))
		}
		plain := protocol.BundlePlaintext{Relay: relay, Files: files}
		if img.Attestation == protocol.AttestationNone {
			secret := make([]byte, 32)
			if _, err := rand.Read(secret); err != nil {
				return nil, internal(err)
			}
			plain.PushSecret = secret
			h := sha256.Sum256(secret)
			rel.PushSecretSHA256 = hex.EncodeToString(h[:])
			rel.PushSecretImage = img.Digest
			img.TokenConsumed = true
			t := now.UTC()
			img.TokenConsumedAt = &t
		}
		pj, err := json.Marshal(plain)
		if err != nil {
			return nil, internal(err)
		}
		ct, err := agecrypt.Encrypt(pj, recipient)
		clear(pj)
		if err != nil {
			return nil, internal(err)
		}
		sig := ed25519.Sign(s.st.Secrets.Signing, protocol.BootResponseDigest(relay, sess.imageDigest, sess.nonce, ct))
		rel.LastAttestation = rec(verdictReleased)
		// Commit before answering: a consumed token stays consumed even
		// if the broker dies right after.
		if err := s.st.SaveRelay(rel); err != nil {
			return nil, internal(err)
		}
		if err := s.st.AppendLog(*entry, true); err != nil {
			return nil, internal(fmt.Errorf("attestation log: %w", err))
		}
		return protocol.BootResponse{Bundle: ct, Signature: sig}, nil
	}

	// Push.
	plain, err := agecrypt.Decrypt(req.Payload, 2*protocol.MaxBundleSize, s.st.Secrets.Push)
	if err != nil {
		return nil, refuse(CodeBadPayload, "cannot decrypt payload with the push identity: %v", err)
	}
	var pp protocol.PushPlaintext
	dec := json.NewDecoder(strings.NewReader(string(plain)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pp); err != nil {
		return nil, refuse(CodeBadPayload, "payload JSON: %v", err)
	}
	if pp.Relay != relay {
		return nil, refuse(CodePayloadRelay, "payload is for relay %q", truncate(pp.Relay, 64))
	}
	if len(pp.Files) == 0 {
		return nil, refuse(CodePushEmpty, "push carries no file")
	}
	if len(pp.Health) > protocol.MaxHealthSize {
		return nil, refuse(CodePushTooLarge, "health report of %d bytes, limit %d", len(pp.Health), protocol.MaxHealthSize)
	}
	for _, name := range pp.Files.Names() {
		if protocol.IsShippedFile(name) {
			return nil, refuse(CodePushIdentityFile, "push tries to set shipped file %q", name)
		}
		if !protocol.IsMutableFile(name) {
			return nil, refuse(CodePushBadFile, "push tries to set %q", truncate(name, 100))
		}
	}
	if err := protocol.CheckFiles(pp.Files, protocol.IsMutableFile); err != nil {
		if errors.Is(err, protocol.ErrTooLarge) {
			return nil, refuse(CodePushTooLarge, "%v", err)
		}
		return nil, refuse(CodePushBadFile, "%v", err)
	}
	stored, err := s.st.LoadBundle(relay)
	if err != nil {
		return nil, internal(err)
	}
	merged := protocol.Files{}
	for name, data := range stored {
		if protocol.IsShippedFile(name) {
			merged[name] = data
		}
	}
	// The push is the relay's current set of onion keys and state: it
	// replaces every mutable file (a .old absent now is dropped).
	for name, data := range pp.Files {
		merged[name] = data
	}
	// The push fits on its own; the merged bundle (with the identity files
	// the operator shipped) must fit too, or the relay's next boot would be
	// refused by its own agent.
	if err := protocol.CheckFiles(merged, nil); err != nil {
		return nil, refuse(CodePushTooLarge, "with the stored identity files: %v", err)
	}
	if err := s.st.SaveBundle(relay, merged); err != nil {
		return nil, internal(err)
	}
	t := now.UTC()
	rel.LastPush = &t
	rel.LastAttestation = rec(verdictAccepted)
	if pp.Health != "" {
		rel.LastHealth = &store.Health{Time: t, ImageDigest: sess.imageDigest, Report: pp.Health}
	}
	if err := s.st.SaveRelay(rel); err != nil {
		return nil, internal(err)
	}
	if err := s.st.AppendLog(*entry, true); err != nil {
		return nil, internal(fmt.Errorf("attestation log: %w", err))
	}
	sig := ed25519.Sign(s.st.Secrets.Signing, protocol.PushAckDigest(relay, sess.imageDigest, sess.nonce, payloadDigest))
	return protocol.PushResponse{StoredAt: t, Signature: sig}, nil
}

func hashEqual(sum []byte, wantHex string) bool {
	want, err := hex.DecodeString(wantHex)
	if err != nil || len(want) != len(sum) {
		return false
	}
	return subtle.ConstantTimeCompare(sum, want) == 1
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "?"
	}
	return t.UTC().Format(time.RFC3339)
}
