package store

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInitLayoutAndRefusals(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	pub, err := Init(dir, "", dir+".admin.token")
	if err != nil {
		t.Fatal(err)
	}
	if len(pub.SigningPublicKey) != 32 || !strings.HasPrefix(pub.PushRecipient, "age1") {
		t.Fatalf("public parts: %+v", pub)
	}
	// What init prints has exactly the two public fields.
	out, _ := json.Marshal(pub)
	var m map[string]any
	_ = json.Unmarshal(out, &m)
	if len(m) != 2 || m["signingPublicKey"] == nil || m["pushRecipient"] == nil {
		t.Fatalf("init output %s", out)
	}
	st, _ := os.Stat(dir)
	if st.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v", st.Mode().Perm())
	}
	for _, f := range []string{BrokerFile, AtRestKeyFile, SigningKeyFile, PushKeyFile, AdminTokenHashFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", f, st.Mode().Perm())
		}
	}
	tok, err := os.ReadFile(dir + ".admin.token")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), strings.TrimSpace(string(tok))) {
		t.Error("init output contains the admin token")
	}
	// The data directory holds no credential: not the token, only its hash.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if data, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil && strings.Contains(string(data), strings.TrimSpace(string(tok))) {
			t.Errorf("%s holds the admin token", e.Name())
		}
	}
	before, _ := os.ReadFile(filepath.Join(dir, AtRestKeyFile))
	if _, err := Init(dir, "", dir+".admin.token"); err == nil {
		t.Fatal("second init succeeded")
	}
	after, _ := os.ReadFile(filepath.Join(dir, AtRestKeyFile))
	if string(before) != string(after) {
		t.Fatal("second init changed the key")
	}
	s, err := Open(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Secrets.CheckAdminToken(strings.TrimSpace(string(tok))) || s.Secrets.CheckAdminToken("x") {
		t.Error("admin token check")
	}
	if got := s.Secrets.Public(); string(got.SigningPublicKey) != string(pub.SigningPublicKey) || got.PushRecipient != pub.PushRecipient {
		t.Error("public parts differ after open")
	}
	// The at-rest identity does not decrypt push payloads, nor the reverse.
	if s.Secrets.Push.Recipient().String() == s.Secrets.AtRest.Recipient().String() {
		t.Error("push identity equals the at-rest identity")
	}

	// A secret readable by others is refused.
	if err := os.Chmod(filepath.Join(dir, AdminTokenHashFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, ""); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Errorf("open with a world-readable token: %v", err)
	}
}

func TestInitIntoEmptyExistingDir(t *testing.T) {
	dir := t.TempDir() // like a systemd StateDirectory
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(dir, "", dir+".admin.token"); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(dir)
	if st.Mode().Perm() != 0o700 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
	nonEmpty := t.TempDir()
	_ = os.WriteFile(filepath.Join(nonEmpty, "x"), nil, 0o600)
	if _, err := Init(nonEmpty, "", nonEmpty+".admin.token"); err == nil {
		t.Error("init into a non-empty directory")
	}
}

func TestSeparateIdentity(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "data")
	idPath := filepath.Join(tmp, "credential")
	if _, err := Init(dir, idPath, dir+".admin.token"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, AtRestKeyFile)); !os.IsNotExist(err) {
		t.Fatal("at-rest key written into the data dir")
	}
	if _, err := Open(dir, ""); err == nil {
		t.Fatal("opened without the identity")
	}
	if _, err := Open(dir, idPath); err != nil {
		t.Fatal(err)
	}
	// Someone else's identity is refused.
	other := filepath.Join(tmp, "other")
	if _, err := Init(filepath.Join(tmp, "data2"), other, filepath.Join(tmp, "data2.admin.token")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, other); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("open with a foreign identity: %v", err)
	}
	// init refuses to overwrite an existing identity file.
	if _, err := Init(filepath.Join(tmp, "data3"), idPath, filepath.Join(tmp, "data3.admin.token")); err == nil {
		t.Error("init overwrote an identity file")
	}
}

func TestBundleRoundTripAndLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := Init(dir, "", dir+".admin.token"); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"state": []byte("hello state"), "keys/secret_id_key": []byte("id")}
	if err := s.SaveBundle("r1", files); err != nil {
		t.Fatal(err)
	}
	got, err := s.LoadBundle("r1")
	if err != nil || string(got["state"]) != "hello state" || len(got) != 2 {
		t.Fatalf("bundle %v %v", got, err)
	}
	// A bundle file swapped between relays is detected.
	b1, _ := os.ReadFile(filepath.Join(dir, RelaysDir, "r1.bundle.age"))
	_ = os.WriteFile(filepath.Join(dir, RelaysDir, "r2.bundle.age"), b1, 0o600)
	if _, err := s.LoadBundle("r2"); err == nil {
		t.Error("bundle of r1 accepted as r2's")
	}
	if err := s.AppendLog(LogEntry{Relay: "r1", Verdict: "refused", Reason: "x"}, false); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendLog(LogEntry{Relay: "r2", Verdict: "released"}, true); err != nil {
		t.Fatal(err)
	}
	lines, err := s.ReadLog("r1")
	if err != nil || len(lines) != 1 {
		t.Fatalf("log %q %v", lines, err)
	}
	all, _ := s.ReadLog("")
	if len(all) != 2 {
		t.Fatalf("log %q", all)
	}
}

func TestOpenRemovesStaleTemporaries(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := Init(dir, "", dir+".admin.token"); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, RelaysDir, ".r1.json.tmp-12345")
	if err := os.WriteFile(stale, []byte("{half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("stale temporary file kept")
	}
}

// The token never goes into the data directory, and a directory made when
// the broker kept it there in clear is refused until it is moved out; its
// hash is written for the next start.
func TestAdminTokenOutsideTheDataDirectory(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "data")
	if _, err := Init(dir, "", filepath.Join(dir, "admin.token")); err == nil || !strings.Contains(err.Error(), "outside the data directory") {
		t.Fatalf("a token file inside the data directory: %v", err)
	}
	if _, err := Init(dir, "", ""); err == nil {
		t.Fatal("init without a token file")
	}
	tokenFile := filepath.Join(tmp, "admin.token")
	if _, err := Init(dir, "", tokenFile); err != nil {
		t.Fatal(err)
	}
	tok, _ := os.ReadFile(tokenFile)
	token := strings.TrimSpace(string(tok))
	// As an older broker left it: the token in clear inside, no hash.
	if err := os.Rename(tokenFile, filepath.Join(dir, "admin.token")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, AdminTokenHashFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, ""); err == nil || !strings.Contains(err.Error(), "holds the admin token in clear") {
		t.Fatalf("open with the token in clear: %v", err)
	}
	// The hash it wrote matches; the migration moves the token out (and never onto a file that exists).
	if _, err := MoveAdminTokenOut(dir, filepath.Join(dir, "again")); err == nil {
		t.Fatal("moved the token to a file inside the data directory")
	}
	if moved, err := MoveAdminTokenOut(dir, tokenFile); err != nil || !moved {
		t.Fatalf("moving the token out: %v %v", moved, err)
	}
	if moved, err := MoveAdminTokenOut(dir, tokenFile); err != nil || moved {
		t.Fatalf("a second move: %v %v", moved, err)
	}
	s, err := Open(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Secrets.CheckAdminToken(token) {
		t.Fatal("the token moved out no longer works")
	}
}
