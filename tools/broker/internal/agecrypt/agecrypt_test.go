package agecrypt

import (
	"bytes"
	"errors"
	"testing"

	"filippo.io/age"
)

func TestRoundTripAndLimits(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	ct, err := Encrypt([]byte("hello"), id.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	pt, err := Decrypt(ct, 5, id)
	if err != nil || string(pt) != "hello" {
		t.Fatalf("%q %v", pt, err)
	}
	if _, err := Decrypt(ct, 4, id); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("limit: %v", err)
	}
	other, _ := age.GenerateX25519Identity()
	if _, err := Decrypt(ct, 5, other); err == nil {
		t.Fatal("decrypted with the wrong identity")
	}
	parsed, err := ParseIdentityFile(FormatIdentityFile(id, "test"))
	if err != nil || parsed.String() != id.String() {
		t.Fatalf("identity file round trip: %v", err)
	}
	two := append(FormatIdentityFile(id, ""), FormatIdentityFile(other, "")...)
	if _, err := ParseIdentityFile(two); err == nil {
		t.Fatal("two identities accepted")
	}
	if _, err := ParseRecipient("ssh-ed25519 AAAA"); err == nil {
		t.Fatal("ssh recipient accepted")
	}
	if r, err := ParseRecipient(id.Recipient().String()); err != nil || !bytes.Equal([]byte(r.String()), []byte(id.Recipient().String())) {
		t.Fatal("recipient round trip")
	}
}
