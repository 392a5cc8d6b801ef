// Package store keeps the key broker's state under its data directory.
//
// Layout (directory 0700, every file 0600):
//
//	broker.json            public parts: signing public key, push recipient,
//	                       at-rest recipient (written last by init)
//	at-rest.key            age X25519 identity: the at-rest key (absent when
//	                       init was given --identity FILE)
//	signing.key.age        ed25519 seed, age-encrypted to the at-rest key
//	push.key.age           age identity for push payloads, encrypted to the
//	                       at-rest key
//	admin.token.sha256     the admin bearer token's SHA-256 (hex); the token
//	                       itself goes to a file outside, named at init
//	relays/NAME.json       relay metadata: no secret bytes
//	relays/NAME.bundle.age the relay's key bundle, encrypted to the at-rest key
//	attestation.log        append-only JSON lines, no secret bytes
//
// Everything but the at-rest identity is useless without it, so keeping the
// identity elsewhere (a systemd credential, see key-broker.service) means a
// copy of the data directory alone releases no key.
package store

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

	"diskless-relays/tools/broker/internal/agecrypt"
	"diskless-relays/tools/broker/internal/fsutil"
)

// File names in the data directory.
const (
	BrokerFile         = "broker.json"
	AtRestKeyFile      = "at-rest.key"
	SigningKeyFile     = "signing.key.age"
	PushKeyFile        = "push.key.age"
	AdminTokenHashFile = "admin.token.sha256"
	// legacyAdminTokenFile: where brokers before kept the token in clear.
	legacyAdminTokenFile = "admin.token"
	RelaysDir            = "relays"
	LogFile              = "attestation.log"
)

// Public is what init prints: the parts that get baked into images.
type Public struct {
	SigningPublicKey []byte `json:"signingPublicKey"`
	PushRecipient    string `json:"pushRecipient"`
}

// brokerInfo is broker.json.
type brokerInfo struct {
	Version          int       `json:"version"`
	CreatedAt        time.Time `json:"createdAt"`
	AtRestRecipient  string    `json:"atRestRecipient"`
	SigningPublicKey []byte    `json:"signingPublicKey"`
	PushRecipient    string    `json:"pushRecipient"`
}

// Secrets are the broker's keys, in memory only.
type Secrets struct {
	AtRest         *age.X25519Identity
	Signing        ed25519.PrivateKey
	Push           *age.X25519Identity
	adminTokenHash [32]byte
}

// CheckAdminToken compares a presented bearer token in constant time.
func (s *Secrets) CheckAdminToken(token string) bool {
	h := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(h[:], s.adminTokenHash[:]) == 1
}

// Public returns the public parts.
func (s *Secrets) Public() Public {
	return Public{
		SigningPublicKey: s.Signing.Public().(ed25519.PublicKey),
		PushRecipient:    s.Push.Recipient().String(),
	}
}

// Init creates the broker's secrets in dir. dir must not exist or be empty;
// nothing is ever overwritten. If identityPath is non-empty the at-rest
// identity is written there (it must not exist) instead of into dir. The
// admin token goes to adminTokenPath, outside dir: the data directory keeps
// only its hash, so a copy of the directory holds no credential.
func Init(dir, identityPath, adminTokenPath string) (Public, error) {
	if adminTokenPath == "" {
		return Public{}, errors.New("the admin token needs a file of its own, outside the data directory (--admin-token FILE)")
	}
	if inside, err := isInside(adminTokenPath, dir); err != nil || inside {
		return Public{}, fmt.Errorf("the admin token file %s must be outside the data directory %s, which keeps only its hash", adminTokenPath, dir)
	}
	if err := prepareEmptyDir(dir); err != nil {
		return Public{}, err
	}
	for _, p := range []string{identityPath, adminTokenPath} {
		if p == "" {
			continue
		}
		if _, err := os.Lstat(p); err == nil {
			return Public{}, fmt.Errorf("%s already exists; refusing to overwrite a key", p)
		}
	}
	atRest, err := age.GenerateX25519Identity()
	if err != nil {
		return Public{}, err
	}
	push, err := age.GenerateX25519Identity()
	if err != nil {
		return Public{}, err
	}
	signPub, signPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Public{}, err
	}
	var tok [32]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return Public{}, err
	}
	token := base64.RawURLEncoding.EncodeToString(tok[:])

	signingCT, err := agecrypt.Encrypt(signPriv.Seed(), atRest.Recipient())
	if err != nil {
		return Public{}, err
	}
	pushCT, err := agecrypt.Encrypt(agecrypt.FormatIdentityFile(push, "key-broker push identity"), atRest.Recipient())
	if err != nil {
		return Public{}, err
	}
	info := brokerInfo{
		Version:          1,
		CreatedAt:        time.Now().UTC(),
		AtRestRecipient:  atRest.Recipient().String(),
		SigningPublicKey: signPub,
		PushRecipient:    push.Recipient().String(),
	}
	infoJSON, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return Public{}, err
	}

	idFile := filepath.Join(dir, AtRestKeyFile)
	if identityPath != "" {
		idFile = identityPath
	}
	writes := []struct {
		path string
		data []byte
	}{
		{idFile, agecrypt.FormatIdentityFile(atRest, "key-broker at-rest identity")},
		{filepath.Join(dir, SigningKeyFile), signingCT},
		{filepath.Join(dir, PushKeyFile), pushCT},
		{adminTokenPath, []byte(token + "\n")},
		{filepath.Join(dir, AdminTokenHashFile), []byte(hashHex(token) + "\n")},
	}
	for _, w := range writes {
		if err := fsutil.CreateExclusive(w.path, w.data, 0o600); err != nil {
			return Public{}, err
		}
	}
	if err := os.Mkdir(filepath.Join(dir, RelaysDir), 0o700); err != nil {
		return Public{}, err
	}
	// broker.json last: its presence marks a complete init.
	if err := fsutil.CreateExclusive(filepath.Join(dir, BrokerFile), append(infoJSON, '\n'), 0o600); err != nil {
		return Public{}, err
	}
	return Public{SigningPublicKey: signPub, PushRecipient: push.Recipient().String()}, nil
}

func prepareEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("%s is not empty; refusing to initialise over existing state (keys are never overwritten)", dir)
	}
	return os.Chmod(dir, 0o700)
}

// loadSecrets reads and decrypts the secrets. identityPath may be empty
// (then dir/at-rest.key is used).
func loadSecrets(dir, identityPath string) (*Secrets, error) {
	infoJSON, err := os.ReadFile(filepath.Join(dir, BrokerFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s is not an initialised data directory (run key-broker init)", dir)
		}
		return nil, err
	}
	var info brokerInfo
	if err := json.Unmarshal(infoJSON, &info); err != nil {
		return nil, fmt.Errorf("%s: %w", BrokerFile, err)
	}
	if err := refuseClearAdminToken(dir); err != nil {
		return nil, err
	}
	for _, name := range []string{AdminTokenHashFile, SigningKeyFile, PushKeyFile} {
		if err := checkPrivate(filepath.Join(dir, name)); err != nil {
			return nil, err
		}
	}
	if identityPath == "" {
		identityPath = filepath.Join(dir, AtRestKeyFile)
		if err := checkPrivate(identityPath); err != nil {
			return nil, err
		}
	}
	idData, err := os.ReadFile(identityPath)
	if err != nil {
		return nil, fmt.Errorf("at-rest identity: %w", err)
	}
	atRest, err := agecrypt.ParseIdentityFile(idData)
	if err != nil {
		return nil, fmt.Errorf("at-rest identity %s: %w", identityPath, err)
	}
	if atRest.Recipient().String() != info.AtRestRecipient {
		return nil, fmt.Errorf("at-rest identity %s does not belong to this data directory (its recipient is not %s)", identityPath, info.AtRestRecipient)
	}
	ct, err := os.ReadFile(filepath.Join(dir, SigningKeyFile))
	if err != nil {
		return nil, err
	}
	seed, err := agecrypt.Decrypt(ct, 1024, atRest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", SigningKeyFile, err)
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s: bad seed length", SigningKeyFile)
	}
	signing := ed25519.NewKeyFromSeed(seed)
	if !signing.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(info.SigningPublicKey)) {
		return nil, fmt.Errorf("%s does not match the signing public key in %s", SigningKeyFile, BrokerFile)
	}
	ct, err = os.ReadFile(filepath.Join(dir, PushKeyFile))
	if err != nil {
		return nil, err
	}
	pushText, err := agecrypt.Decrypt(ct, 4096, atRest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", PushKeyFile, err)
	}
	push, err := agecrypt.ParseIdentityFile(pushText)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", PushKeyFile, err)
	}
	if push.Recipient().String() != info.PushRecipient {
		return nil, fmt.Errorf("%s does not match the push recipient in %s", PushKeyFile, BrokerFile)
	}
	hashText, err := os.ReadFile(filepath.Join(dir, AdminTokenHashFile))
	if err != nil {
		return nil, err
	}
	var tokenHash [32]byte
	if h, err := hex.DecodeString(strings.TrimSpace(string(hashText))); err != nil || len(h) != len(tokenHash) {
		return nil, fmt.Errorf("%s: not a SHA-256 in hex", AdminTokenHashFile)
	} else {
		copy(tokenHash[:], h)
	}
	return &Secrets{AtRest: atRest, Signing: signing, Push: push, adminTokenHash: tokenHash}, nil
}

func hashHex(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// refuseClearAdminToken: a data directory made before the broker kept only
// the token's hash holds the token in clear. Its hash is written now; the
// broker starts once the operator has moved the token out.
func refuseClearAdminToken(dir string) error {
	clear := filepath.Join(dir, legacyAdminTokenFile)
	tok, err := os.ReadFile(clear)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	token := strings.TrimSpace(string(tok))
	if len(token) < 16 {
		return fmt.Errorf("%s: token too short", clear)
	}
	hashFile := filepath.Join(dir, AdminTokenHashFile)
	if _, err := os.Stat(hashFile); errors.Is(err, os.ErrNotExist) {
		if err := fsutil.CreateExclusive(hashFile, []byte(hashHex(token)+"\n"), 0o600); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s holds the admin token in clear; the broker keeps only its hash now (written to %s). Move the token out of the data directory: key-broker admin-token --data %s --move-to FILE (e.g. /etc/key-broker/admin.token), then start again", clear, hashFile, dir)
}

// MoveAdminTokenOut migrates a data directory that holds the admin token in
// clear: it writes the token's hash into dir and moves the token to dest,
// outside dir (dest must not exist). Without a clear token it does nothing.
func MoveAdminTokenOut(dir, dest string) (bool, error) {
	clear := filepath.Join(dir, legacyAdminTokenFile)
	tok, err := os.ReadFile(clear)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if inside, err := isInside(dest, dir); err != nil || inside {
		return false, fmt.Errorf("%s must be outside the data directory %s", dest, dir)
	}
	if _, err := os.Lstat(dest); err == nil {
		return false, fmt.Errorf("%s already exists; refusing to overwrite a credential", dest)
	}
	token := strings.TrimSpace(string(tok))
	if len(token) < 16 {
		return false, fmt.Errorf("%s: token too short", clear)
	}
	hashFile := filepath.Join(dir, AdminTokenHashFile)
	if err := fsutil.WriteFileAtomic(hashFile, []byte(hashHex(token)+"\n"), 0o600); err != nil {
		return false, err
	}
	if err := fsutil.CreateExclusive(dest, []byte(token+"\n"), 0o600); err != nil {
		return false, err
	}
	return true, os.Remove(clear)
}

// isInside reports whether path is dir or below it.
func isInside(path, dir string) (bool, error) {
	a, err := filepath.Abs(path)
	if err != nil {
		return false, err
	}
	d, err := filepath.Abs(dir)
	if err != nil {
		return false, err
	}
	rel, err := filepath.Rel(d, a)
	if err != nil {
		return false, err
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, "../")), nil
}

// checkPrivate refuses a secret file that group or others can access.
func checkPrivate(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is accessible by group or others (mode %o); it must be 0600", path, st.Mode().Perm())
	}
	return nil
}
