package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"diskless-relays/tools/broker/internal/agecrypt"
	"diskless-relays/tools/broker/internal/fsutil"
	"diskless-relays/tools/broker/internal/protocol"
)

// Image is a registered image of a relay.
type Image struct {
	Digest       string   `json:"imageDigest"`
	Attestation  string   `json:"attestation"`            // "snp" or "none"
	Measurements []string `json:"measurements,omitempty"` // hex, snp only
	// TokenSHA256 is the hex SHA-256 of the boot token (attestation "none").
	TokenSHA256     string     `json:"tokenSha256,omitempty"`
	TokenConsumed   bool       `json:"tokenConsumed,omitempty"`
	TokenConsumedAt *time.Time `json:"tokenConsumedAt,omitempty"`
	RegisteredAt    time.Time  `json:"registeredAt"`
	Retired         bool       `json:"retired,omitempty"`
	RetiredAt       *time.Time `json:"retiredAt,omitempty"`
}

// Attestation records one attestation verdict.
type Attestation struct {
	Time         time.Time `json:"time"`
	ImageDigest  string    `json:"imageDigest"`
	Purpose      string    `json:"purpose"`
	EvidenceKind string    `json:"evidenceKind"`
	Verdict      string    `json:"verdict"`
	Reason       string    `json:"reason,omitempty"`
	Measurement  string    `json:"measurement,omitempty"`
	ReportedTCB  string    `json:"reportedTcb,omitempty"`
	Policy       string    `json:"policy,omitempty"`
	// Root is the root that verified an SNP report ("amd/Milan", "simulated/Milan").
	Root string `json:"root,omitempty"`
}

// Relay is a relay's metadata. It holds no secret bytes: tokens and push
// secrets are kept as SHA-256 hashes only, keys live in the encrypted bundle.
type Relay struct {
	Name           string     `json:"relay"`
	EnrolledAt     time.Time  `json:"enrolledAt"`
	Revoked        bool       `json:"revoked"`
	RevokedAt      *time.Time `json:"revokedAt,omitempty"`
	Images         []Image    `json:"images"`
	HasKeys        bool       `json:"hasKeys"`
	KeysUploadedAt *time.Time `json:"keysUploadedAt,omitempty"`
	LastPush       *time.Time `json:"lastPush,omitempty"`
	// PushSecretSHA256 authenticates pushes of a token-mode relay for the
	// current boot; PushSecretImage is the image that boot attested as.
	PushSecretSHA256 string       `json:"pushSecretSha256,omitempty"`
	PushSecretImage  string       `json:"pushSecretImage,omitempty"`
	LastAttestation  *Attestation `json:"lastAttestation,omitempty"`
	LastRefusal      *Attestation `json:"lastRefusal,omitempty"`
	// LastHealth is the health report of the latest accepted push: public
	// facts, kept in clear.
	LastHealth *Health `json:"lastHealth,omitempty"`
}

// Health is a relay's health report as its attested push carried it.
type Health struct {
	// Time is when the broker accepted the push (its clock).
	Time        time.Time `json:"time"`
	ImageDigest string    `json:"imageDigest"`
	Report      string    `json:"report"`
}

// Image returns the registered image with this digest, or nil.
func (r *Relay) Image(digest string) *Image {
	for i := range r.Images {
		if r.Images[i].Digest == digest {
			return &r.Images[i]
		}
	}
	return nil
}

// Clone returns a deep copy.
func (r *Relay) Clone() *Relay {
	b, _ := json.Marshal(r)
	var c Relay
	_ = json.Unmarshal(b, &c)
	return &c
}

// LogEntry is one line of the attestation log.
type LogEntry struct {
	Time         time.Time `json:"time"`
	Remote       string    `json:"remote,omitempty"`
	Relay        string    `json:"relay"`
	ImageDigest  string    `json:"imageDigest,omitempty"`
	Purpose      string    `json:"purpose,omitempty"`
	EvidenceKind string    `json:"evidenceKind,omitempty"`
	Verdict      string    `json:"verdict"`
	Reason       string    `json:"reason,omitempty"`
	Detail       string    `json:"detail,omitempty"`
	Measurement  string    `json:"measurement,omitempty"`
	ReportedTCB  string    `json:"reportedTcb,omitempty"`
	Policy       string    `json:"policy,omitempty"`
	// Root names the trusted root that verified an SNP report: "amd/LINE",
	// or "simulated/LINE" for the local stack's test chain.
	Root string `json:"root,omitempty"`
}

// Store is the broker's persistent state. Relay and bundle methods are not
// synchronised: the broker serialises them under its own lock. The log has
// its own lock.
type Store struct {
	dir     string
	Secrets *Secrets
	relays  map[string]*Relay
	logMu   sync.Mutex
	// MaxLogBytes overrides DefaultMaxLogBytes (tests).
	MaxLogBytes int64
}

// Open loads an initialised data directory.
func Open(dir, identityPath string) (*Store, error) {
	sec, err := loadSecrets(dir, identityPath)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir, Secrets: sec, relays: map[string]*Relay{}}
	rdir := filepath.Join(dir, RelaysDir)
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		return nil, err
	}
	removeStaleTemps(dir)
	removeStaleTemps(rdir)
	entries, err := os.ReadDir(rdir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if !protocol.ValidRelay(name) {
			return nil, fmt.Errorf("unexpected file %s in %s", e.Name(), rdir)
		}
		data, err := os.ReadFile(filepath.Join(rdir, e.Name()))
		if err != nil {
			return nil, err
		}
		var r Relay
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		if r.Name != name {
			return nil, fmt.Errorf("%s: holds relay %q", e.Name(), r.Name)
		}
		s.relays[name] = &r
	}
	return s, nil
}

// Dir returns the data directory.
func (s *Store) Dir() string { return s.dir }

// Relay returns the live metadata of a relay (nil if not enrolled). Callers
// mutate it and then call SaveRelay.
func (s *Store) Relay(name string) *Relay { return s.relays[name] }

// RelayNames returns all enrolled relays, sorted.
func (s *Store) RelayNames() []string {
	names := make([]string, 0, len(s.relays))
	for n := range s.relays {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// SaveRelay writes a relay's metadata atomically and makes it live.
func (s *Store) SaveRelay(r *Relay) error {
	if !protocol.ValidRelay(r.Name) {
		return fmt.Errorf("invalid relay name")
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(s.relayPath(r.Name, ".json"), append(data, '\n'), 0o600); err != nil {
		return err
	}
	s.relays[r.Name] = r
	return nil
}

func (s *Store) relayPath(name, suffix string) string {
	return filepath.Join(s.dir, RelaysDir, name+suffix)
}

type bundleFile struct {
	Relay string         `json:"relay"`
	Files protocol.Files `json:"files"`
}

// LoadBundle decrypts a relay's bundle. A relay with no bundle yields an
// empty map.
func (s *Store) LoadBundle(name string) (protocol.Files, error) {
	ct, err := os.ReadFile(s.relayPath(name, ".bundle.age"))
	if errors.Is(err, os.ErrNotExist) {
		return protocol.Files{}, nil
	}
	if err != nil {
		return nil, err
	}
	plain, err := agecrypt.Decrypt(ct, 4*protocol.MaxBundleSize, s.Secrets.AtRest)
	if err != nil {
		return nil, fmt.Errorf("decrypt bundle of %s: %w", name, err)
	}
	var b bundleFile
	if err := json.Unmarshal(plain, &b); err != nil {
		return nil, fmt.Errorf("bundle of %s: %w", name, err)
	}
	if b.Relay != name {
		return nil, fmt.Errorf("bundle file of %s holds relay %q", name, b.Relay)
	}
	if b.Files == nil {
		b.Files = protocol.Files{}
	}
	return b.Files, nil
}

// SaveBundle encrypts a relay's bundle to the at-rest recipient and writes it
// atomically.
func (s *Store) SaveBundle(name string, files protocol.Files) error {
	plain, err := json.Marshal(bundleFile{Relay: name, Files: files})
	if err != nil {
		return err
	}
	ct, err := agecrypt.Encrypt(plain, s.Secrets.AtRest.Recipient())
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(s.relayPath(name, ".bundle.age"), ct, 0o600)
}

// DeleteBundle removes a relay's bundle.
func (s *Store) DeleteBundle(name string) error {
	err := os.Remove(s.relayPath(name, ".bundle.age"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return fsutil.SyncDir(filepath.Join(s.dir, RelaysDir))
}

// Bounds of the attestation log, which unauthenticated requests write to.
const (
	// MaxLogDetail bounds an entry's free-text detail; the other fields are
	// bounded by maxLogField. An entry is then at most a few KiB.
	MaxLogDetail = 512
	maxLogField  = 128
	// DefaultMaxLogBytes: past this size the log moves to LogFile+".1"
	// (replacing the one before) and starts again, so the log holds at most
	// twice this.
	DefaultMaxLogBytes = 16 << 20
	// maxLogLine: a longer line (an older broker's, or a damaged file) is
	// skipped when reading, never an error.
	maxLogLine = 64 << 10
)

// CapText cuts s to at most n bytes on a UTF-8 boundary, saying how much
// was cut; JSON escapes whatever control characters remain.
func CapText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s…[%d bytes more]", s[:cut], len(s)-cut)
}

func (e LogEntry) capped() LogEntry {
	e.Remote = CapText(e.Remote, maxLogField)
	e.Relay = CapText(e.Relay, maxLogField)
	e.ImageDigest = CapText(e.ImageDigest, maxLogField)
	e.Purpose = CapText(e.Purpose, maxLogField)
	e.EvidenceKind = CapText(e.EvidenceKind, maxLogField)
	e.Verdict = CapText(e.Verdict, maxLogField)
	e.Reason = CapText(e.Reason, maxLogField)
	e.Detail = CapText(e.Detail, MaxLogDetail)
	e.Measurement = CapText(e.Measurement, maxLogField)
	e.ReportedTCB = CapText(e.ReportedTCB, maxLogField)
	e.Policy = CapText(e.Policy, maxLogField)
	e.Root = CapText(e.Root, maxLogField)
	return e
}

// AppendLog appends an entry to the attestation log, bounded (CapText) and
// rotated (DefaultMaxLogBytes). durable waits for the disk: releases,
// accepted pushes and admin actions are; refusals, which anyone can cause,
// are not, so a flood of them costs no fsync.
func (s *Store) AppendLog(e LogEntry, durable bool) error {
	line, err := json.Marshal(e.capped())
	if err != nil {
		return err
	}
	s.logMu.Lock()
	defer s.logMu.Unlock()
	path := filepath.Join(s.dir, LogFile)
	max := s.MaxLogBytes
	if max <= 0 {
		max = DefaultMaxLogBytes
	}
	if fi, err := os.Stat(path); err == nil && fi.Size()+int64(len(line))+1 > max {
		if err := os.Rename(path, path+".1"); err != nil {
			return err
		}
	}
	if durable {
		return fsutil.AppendLine(path, line, 0o600)
	}
	return fsutil.AppendLineNoSync(path, line, 0o600)
}

// ReadLog returns the log lines, oldest first, all of them or those of one
// relay: the rotated file's, then the current one's. A line longer than
// maxLogLine is skipped.
func (s *Store) ReadLog(relay string) ([][]byte, error) {
	var out [][]byte
	for _, name := range []string{LogFile + ".1", LogFile} {
		s.logMu.Lock()
		data, err := os.ReadFile(filepath.Join(s.dir, name))
		s.logMu.Unlock()
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for len(data) > 0 {
			line := data
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				line, data = data[:i], data[i+1:]
			} else {
				data = nil
			}
			if len(line) == 0 || len(line) > maxLogLine {
				continue
			}
			if relay != "" {
				var e struct {
					Relay string `json:"relay"`
				}
				if json.Unmarshal(line, &e) != nil || e.Relay != relay {
					continue
				}
			}
			out = append(out, append([]byte(nil), line...))
		}
	}
	return out, nil
}

// removeStaleTemps deletes temporary files a crash left behind (the
// ".NAME.tmp-…" files of fsutil); the real files are always complete.
func removeStaleTemps(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, ".") && strings.Contains(n, ".tmp-") && e.Type().IsRegular() {
			os.Remove(filepath.Join(dir, n))
		}
	}
}
