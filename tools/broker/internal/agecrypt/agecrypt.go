// Package agecrypt wraps age encryption of small in-memory messages.
package agecrypt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
)

// Encrypt encrypts plaintext to the recipients.
func Encrypt(plaintext []byte, recipients ...age.Recipient) ([]byte, error) {
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, recipients...)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(plaintext); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ErrTooLarge is returned when a plaintext exceeds the caller's limit.
var ErrTooLarge = errors.New("plaintext too large")

// Decrypt decrypts ciphertext with the identity, refusing plaintexts longer
// than limit bytes.
func Decrypt(ciphertext []byte, limit int, identities ...age.Identity) ([]byte, error) {
	r, err := age.Decrypt(bytes.NewReader(ciphertext), identities...)
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(out) > limit {
		return nil, ErrTooLarge
	}
	return out, nil
}

// ParseRecipient parses an "age1…" X25519 recipient.
func ParseRecipient(s string) (*age.X25519Recipient, error) {
	if !strings.HasPrefix(s, "age1") {
		return nil, fmt.Errorf("not an age X25519 recipient")
	}
	return age.ParseX25519Recipient(s)
}

// ParseIdentityFile parses an age identity file holding exactly one X25519
// identity ("AGE-SECRET-KEY-1…", comment lines allowed).
func ParseIdentityFile(data []byte) (*age.X25519Identity, error) {
	ids, err := age.ParseIdentities(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if len(ids) != 1 {
		return nil, fmt.Errorf("want exactly one identity, found %d", len(ids))
	}
	id, ok := ids[0].(*age.X25519Identity)
	if !ok {
		return nil, fmt.Errorf("identity is not an age X25519 identity")
	}
	return id, nil
}

// FormatIdentityFile renders an identity in age's identity file format.
func FormatIdentityFile(id *age.X25519Identity, comment string) []byte {
	var b strings.Builder
	if comment != "" {
		b.WriteString("# " + comment + "\n")
	}
	b.WriteString("# public key: " + id.Recipient().String() + "\n")
	b.WriteString(id.String() + "\n")
	return []byte(b.String())
}
