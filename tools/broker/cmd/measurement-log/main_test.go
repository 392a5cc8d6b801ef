package main

// The program as a volunteer and the deploy run it: built with go build, on
// keys made by ssh-keygen, with plain git as the tamperer and the oracle.

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

type run struct {
	stdout, stderr string
	code           int
}

func runIn(t *testing.T, dir, name string, args ...string) run {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull, "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return run{stdout.String(), stderr.String(), code}
}

func must(t *testing.T, r run) string {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// entryJSON is the i-th entry as a deploy would hand it over: compact JSON
// written out here, not made by the package under test.
func entryJSON(i int) string {
	return fmt.Sprintf(`{"relay":"relay-%d","imageDigest":"%s","measurement":"%s","policy":"0x30000","vcpus":4,"vcpuType":"EPYC-Milan","buildRecordSha256":"%s","time":"2026-12-06T08:0%d:00Z"}`,
		i, strings.Repeat(fmt.Sprintf("%02x", i), 32), strings.Repeat(fmt.Sprintf("%02x", 0x50+i), 48), strings.Repeat("cd", 32), i)
}

// ed25519Seed is the 32-byte private seed of the OpenSSH key file that
// ssh-keygen made for the test, as x/crypto/ssh parses it.
func ed25519Seed(t *testing.T, keyFile []byte) []byte {
	t.Helper()
	key, err := ssh.ParseRawPrivateKey(keyFile)
	if err != nil {
		t.Fatalf("the test's signing key: %v", err)
	}
	priv, ok := key.(*ed25519.PrivateKey)
	if !ok {
		t.Fatalf("the test's signing key is a %T, not ed25519", key)
	}
	return priv.Seed()
}

func TestAppendVerifyFindAsPrograms(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "measurement-log")
	wd, _ := os.Getwd()
	must(t, runIn(t, wd, "go", "build", "-o", bin, "."))
	must(t, runIn(t, dir, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "operator", "-f", "key"))
	pub, _ := os.ReadFile(filepath.Join(dir, "key.pub"))
	f := strings.Fields(string(pub))
	if err := os.WriteFile(filepath.Join(dir, "signers"), []byte("operator "+f[0]+" "+f[1]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var outputs []string
	record := func(r run) run { outputs = append(outputs, r.stdout, r.stderr); return r }

	for i := 1; i <= 3; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("e%d.json", i)), []byte(entryJSON(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		out := must(t, record(runIn(t, dir, bin, "append", "--log", "log", "--signing-key", "key", "--entry", fmt.Sprintf("e%d.json", i))))
		if !strings.Contains(out, `"added": true`) || !strings.Contains(out, fmt.Sprintf(`"path": "entries/00000%d.json"`, i)) {
			t.Errorf("append %d printed %s", i, out)
		}
	}
	first := strings.TrimSpace(must(t, runIn(t, dir, "git", "--git-dir=log", "rev-list", "--max-parents=0", "main")))

	out := must(t, record(runIn(t, dir, bin, "verify", "--log", "log", "--allowed-signers", "signers")))
	for _, check := range []string{"head", "linear", "append-only", "entries", "signatures"} {
		if !strings.Contains(out, "ok   "+check+":") {
			t.Errorf("verify says no ok line for %s:\n%s", check, out)
		}
	}
	out = must(t, record(runIn(t, dir, bin, "verify", "--log", "log", "--allowed-signers", "signers", first, "main")))
	if !strings.Contains(out, "ok   extends: OLD "+first[:12]) {
		t.Errorf("verify OLD NEW:\n%s", out)
	}

	// A clone with an unsigned fourth entry: exit 1, the commit named.
	must(t, runIn(t, dir, "git", "clone", "-q", "--", "log", "work"))
	work := filepath.Join(dir, "work")
	if err := os.WriteFile(filepath.Join(work, "entries", "000004.json"), []byte(entryJSON(4)), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, runIn(t, work, "git", "add", "--", "entries/000004.json"))
	must(t, runIn(t, work, "git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "--no-gpg-sign", "-m", "unsigned"))
	unsigned := strings.TrimSpace(must(t, runIn(t, work, "git", "rev-parse", "HEAD")))
	r := record(runIn(t, dir, bin, "verify", "--log", "work", "--allowed-signers", "signers", "--old", first))
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL signatures: commit "+unsigned[:12]+": unsigned") || !strings.Contains(r.stdout, "FAIL entries: commit "+unsigned[:12]+" entries/000004.json") || !strings.Contains(r.stderr, "does not verify") {
		t.Errorf("verify of a log with an unsigned, non-canonical entry: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	out = must(t, record(runIn(t, dir, bin, "find", "--log", "log", "--allowed-signers", "signers", "--measurement", strings.Repeat("52", 48))))
	if !strings.Contains(out, `"relay": "relay-2"`) || !strings.Contains(out, `"path": "entries/000002.json"`) {
		t.Errorf("find printed %s", out)
	}
	r = record(runIn(t, dir, bin, "find", "--log", "log", "--allowed-signers", "signers", "--measurement", strings.Repeat("52", 48), "--relay", "relay-1"))
	if r.code != 1 || !strings.Contains(r.stderr, "not in the log") {
		t.Errorf("find with another relay: exit %d %s", r.code, r.stderr)
	}
	if r := runIn(t, dir, bin, "verify", "--log", "log"); r.code != 2 {
		t.Errorf("verify without --allowed-signers: exit %d", r.code)
	}

	// The private key is nowhere but its own file: not in any file of the
	// log, not in any of its objects (decompressed by git cat-file), not in
	// anything the program printed.
	keyFile, err := os.ReadFile(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	seed := ed25519Seed(t, keyFile)
	objects := must(t, runIn(t, dir, "git", "--git-dir=log", "cat-file", "--batch-all-objects", "--batch"))
	haystacks := append(outputs, objects)
	_ = filepath.Walk(filepath.Join(dir, "log"), func(path string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			data, _ := os.ReadFile(path)
			haystacks = append(haystacks, string(data))
		}
		return nil
	})
	// The seed in three spellings, and every line of the key file: its body,
	// and its armor lines, which no public output has a reason to hold.
	needles := []string{string(seed), hex.EncodeToString(seed), base64.StdEncoding.EncodeToString(seed)[:40]}
	for _, line := range strings.Split(string(keyFile), "\n") {
		if len(line) > 20 {
			needles = append(needles, line)
		}
	}
	for _, h := range haystacks {
		for i, n := range needles {
			if strings.Contains(h, n) {
				// Says which needle, never the key bytes themselves.
				t.Fatalf("private key material (needle %d) found in the log or the output", i)
			}
		}
	}
	if len(haystacks) < 10 || !strings.Contains(objects, "relay-3") {
		t.Fatalf("searched too little: %d haystacks", len(haystacks))
	}
}
