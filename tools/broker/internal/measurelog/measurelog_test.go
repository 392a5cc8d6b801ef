package measurelog

// The machinery here is real: git and OpenSSH's ssh-keygen make the keys,
// the signatures and (with plain git commands, not this package) every
// tampered history; plain git is also the oracle that each tamper is real
// (git verify-commit refuses the commit, git merge-base --is-ancestor says
// no). Verify must refuse each, naming the check and the commit.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// tool runs a program with an argument vector in dir and fails the test on
// a non-zero exit. git runs with no system or global config.
func tool(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	out, err := toolErr(dir, nil, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func toolErr(dir string, stdin []byte, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull, "LC_ALL=C")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// sshKey makes an ed25519 key with ssh-keygen and returns the private key
// file and an allowed-signers line for its public key.
func sshKey(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	path := filepath.Join(dir, name)
	tool(t, dir, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path)
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(pub))
	return path, fmt.Sprintf("%s %s %s\n", name, f[0], f[1])
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// sampleEntry is the i-th of a set of distinct, valid entries.
func sampleEntry(i int) Entry {
	return Entry{
		Relay:             fmt.Sprintf("relay-%d", i),
		ImageDigest:       strings.Repeat(fmt.Sprintf("%02x", i), 32),
		Measurement:       strings.Repeat(fmt.Sprintf("%02x", 0x40+i), 48),
		Policy:            "0x30000",
		VCPUs:             2,
		VCPUType:          "EPYC-v4",
		BuildRecordSHA256: strings.Repeat(fmt.Sprintf("%02x", 0x80+i), 32),
		Time:              fmt.Sprintf("2026-12-06T07:%02d:00Z", i),
	}
}

// fixture is a log of three entries appended by Append, with the key that
// signed it and an allowed-signers file holding that key.
type fixture struct {
	dir, log, key, signers string
	heads                  []string // the head after each append
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	dir := t.TempDir()
	key, line := sshKey(t, dir, "operator")
	f := fixture{dir: dir, log: filepath.Join(dir, "log"), key: key, signers: writeFile(t, filepath.Join(dir, "allowed_signers"), line)}
	for i := 1; i <= 3; i++ {
		res, err := Append(f.log, AppendOptions{SigningKey: key, Entry: sampleEntry(i)})
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if !res.Added || res.Logged.Path != fmt.Sprintf("entries/00000%d.json", i) {
			t.Fatalf("append %d: %+v", i, res)
		}
		f.heads = append(f.heads, strings.TrimSpace(tool(t, dir, "git", "--git-dir="+f.log, "rev-parse", "refs/heads/main")))
	}
	return f
}

// clone makes a work-tree clone of the log to tamper with using plain git,
// committing as the tamperer with the given key (or unsigned when "").
func (f fixture) clone(t *testing.T) string {
	t.Helper()
	work := filepath.Join(t.TempDir(), "work")
	tool(t, f.dir, "git", "clone", "-q", "--", f.log, work)
	return work
}

func commit(t *testing.T, work, key, msg string, extra ...string) string {
	t.Helper()
	args := []string{"-c", "user.name=tamperer", "-c", "user.email=t@example.invalid", "-c", "gpg.format=ssh"}
	if key != "" {
		args = append(args, "-c", "user.signingkey="+key, "commit", "-S")
	} else {
		args = append(args, "commit", "--no-gpg-sign")
	}
	args = append(args, "-q", "-m", msg)
	tool(t, work, "git", append(args, extra...)...)
	return strings.TrimSpace(tool(t, work, "git", "rev-parse", "HEAD"))
}

// gitSaysSigned is the oracle for signatures: plain git verify-commit.
func gitSaysSigned(t *testing.T, work, signers, c string) bool {
	t.Helper()
	_, err := toolErr(work, nil, "git", "-c", "gpg.ssh.allowedSignersFile="+signers, "verify-commit", c)
	return err == nil
}

// gitSaysAncestor is the oracle for extension: plain git merge-base.
func gitSaysAncestor(t *testing.T, work, a, b string) bool {
	t.Helper()
	_, err := toolErr(work, nil, "git", "merge-base", "--is-ancestor", a, b)
	return err == nil
}

func verdictOf(verdicts []Verdict, check string) (Verdict, bool) {
	for _, v := range verdicts {
		if v.Check == check {
			return v, true
		}
	}
	return Verdict{}, false
}

// wantRefused asserts that Verify fails check, and that its line says each
// of the phrases (the commit's short id among them).
func wantRefused(t *testing.T, verdicts []Verdict, log *Log, check string, phrases ...string) {
	t.Helper()
	if log != nil || AllOK(verdicts) {
		t.Fatalf("the log verified:\n%s", lines(verdicts))
	}
	v, ok := verdictOf(verdicts, check)
	if !ok || v.OK {
		t.Fatalf("check %s did not fail:\n%s", check, lines(verdicts))
	}
	for _, p := range phrases {
		if !strings.Contains(v.String(), p) {
			t.Errorf("verdict %q does not say %q", v.String(), p)
		}
	}
}

func lines(verdicts []Verdict) string {
	var b strings.Builder
	for _, v := range verdicts {
		b.WriteString(v.String() + "\n")
	}
	return b.String()
}

func TestCleanThreeEntryLogVerifies(t *testing.T) {
	f := newFixture(t)
	verdicts, log, err := Verify(f.log, VerifyOptions{AllowedSigners: f.signers})
	if err != nil {
		t.Fatal(err)
	}
	if log == nil || !AllOK(verdicts) {
		t.Fatalf("clean log refused:\n%s", lines(verdicts))
	}
	for _, check := range []string{CheckHead, CheckLinear, CheckAppendOnly, CheckEntries, CheckSignatures} {
		if _, ok := verdictOf(verdicts, check); !ok {
			t.Errorf("no verdict line for %s", check)
		}
	}
	// Plain git agrees: three commits, each verified by git verify-commit,
	// the tree holds exactly the three entry files, and each file is the
	// entry that was appended.
	commits := strings.Fields(tool(t, f.dir, "git", "--git-dir="+f.log, "rev-list", "refs/heads/main"))
	if len(commits) != 3 {
		t.Fatalf("git rev-list: %d commits, want 3", len(commits))
	}
	for _, c := range commits {
		if !gitSaysSigned(t, f.log, f.signers, c) {
			t.Errorf("git verify-commit refuses %s", c)
		}
	}
	files := strings.Fields(tool(t, f.dir, "git", "--git-dir="+f.log, "ls-tree", "-r", "--name-only", "refs/heads/main"))
	if strings.Join(files, " ") != "entries/000001.json entries/000002.json entries/000003.json" {
		t.Errorf("tree holds %v", files)
	}
	if log.Head() != f.heads[2] || len(log.Entries()) != 3 {
		t.Fatalf("log head %s entries %d", log.Head(), len(log.Entries()))
	}
	for i, e := range log.Entries() {
		if e.Entry != sampleEntry(i+1) || e.Commit != commits[2-i] {
			t.Errorf("entry %d: %+v", i+1, e)
		}
		shown := tool(t, f.dir, "git", "--git-dir="+f.log, "show", "refs/heads/main:"+e.Path)
		for _, want := range []string{`"relay": "` + sampleEntry(i+1).Relay + `"`, `"measurement": "` + sampleEntry(i+1).Measurement + `"`, `"policy": "0x30000"`, `"vcpus": 2`} {
			if !strings.Contains(shown, want) {
				t.Errorf("%s does not hold %s:\n%s", e.Path, want, shown)
			}
		}
	}
}

func TestOldToNewExtensionVerifies(t *testing.T) {
	f := newFixture(t)
	verdicts, log, err := Verify(f.log, VerifyOptions{AllowedSigners: f.signers, Old: f.heads[0], New: f.heads[2]})
	if err != nil {
		t.Fatal(err)
	}
	if log == nil {
		t.Fatalf("OLD..NEW refused:\n%s", lines(verdicts))
	}
	if !gitSaysAncestor(t, f.log, f.heads[0], f.heads[2]) {
		t.Fatal("oracle: git says OLD is not an ancestor of NEW")
	}
	v, _ := verdictOf(verdicts, CheckSignatures)
	if !strings.Contains(v.Detail, "2 commits after OLD "+short(f.heads[0])) {
		t.Errorf("signatures verdict %q: want the 2 commits after OLD", v.Detail)
	}
	// Commits up to OLD are not re-checked against the signers: a log
	// whose first entry was signed under an earlier key still extends.
	dir := t.TempDir()
	_, otherLine := sshKey(t, dir, "rotated")
	onlyNew := writeFile(t, filepath.Join(dir, "signers"), otherLine)
	if _, log, _ := Verify(f.log, VerifyOptions{AllowedSigners: onlyNew, Old: f.heads[2], New: f.heads[2]}); log == nil {
		t.Error("OLD == NEW with no commit to sign was refused")
	}
}

func TestTamperedHistoriesAreRefused(t *testing.T) {
	f := newFixture(t)
	oldHead := f.heads[2]
	otherKey, _ := sshKey(t, f.dir, "intruder")

	t.Run("amended head", func(t *testing.T) {
		work := f.clone(t)
		writeFile(t, filepath.Join(work, "entries/000003.json"), string(withMeasurement(sampleEntry(3), "ff").Encode()))
		tool(t, work, "git", "add", "--", "entries/000003.json")
		amended := commit(t, work, f.key, "amended", "--amend")
		if gitSaysAncestor(t, work, oldHead, amended) || !gitSaysSigned(t, work, f.signers, amended) {
			t.Fatal("oracle: the amended commit should be validly signed and not extend OLD")
		}
		verdicts, log, err := Verify(work, VerifyOptions{AllowedSigners: f.signers, Old: oldHead, New: "HEAD"})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, verdicts, log, CheckExtends, short(oldHead), "not an ancestor", "rewritten")
	})

	t.Run("reset and recommitted", func(t *testing.T) {
		work := f.clone(t)
		tool(t, work, "git", "reset", "-q", "--hard", "HEAD~2")
		writeFile(t, filepath.Join(work, "entries/000002.json"), string(withMeasurement(sampleEntry(2), "ee").Encode()))
		tool(t, work, "git", "add", "--", "entries/000002.json")
		commit(t, work, f.key, "replaced entry 2")
		writeFile(t, filepath.Join(work, "entries/000003.json"), string(sampleEntry(3).Encode()))
		tool(t, work, "git", "add", "--", "entries/000003.json")
		head := commit(t, work, f.key, "entry 3 again")
		if gitSaysAncestor(t, work, oldHead, head) {
			t.Fatal("oracle: git says the recommitted history extends OLD")
		}
		verdicts, log, err := Verify(work, VerifyOptions{AllowedSigners: f.signers, Old: oldHead})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, verdicts, log, CheckExtends, short(oldHead), short(head), "not an ancestor")
		// The other checks still ran, on NEW from its root.
		if v, ok := verdictOf(verdicts, CheckSignatures); !ok || !v.OK || !strings.Contains(v.Detail, "3 commits from the root") {
			t.Errorf("signatures after a failed extends: %v", v)
		}
		// Without OLD the rewritten copy is a well-formed log: only the
		// comparison with a head seen before shows the rewrite.
		if _, log, _ := Verify(work, VerifyOptions{AllowedSigners: f.signers}); log == nil {
			t.Error("the recommitted history, signed by the operator, should verify on its own")
		}
	})

	t.Run("new is older than old", func(t *testing.T) {
		verdicts, log, err := Verify(f.log, VerifyOptions{AllowedSigners: f.signers, Old: f.heads[2], New: f.heads[1]})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, verdicts, log, CheckExtends, "NEW is older than OLD")
	})

	t.Run("old commit missing from the copy", func(t *testing.T) {
		verdicts, log, err := Verify(f.log, VerifyOptions{AllowedSigners: f.signers, Old: strings.Repeat("ab", 20)})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, verdicts, log, CheckHead, "names no commit")
	})

	// appendFourth adds entries/000004.json signed with key ("" for unsigned).
	appendFourth := func(t *testing.T, work, key string, e Entry) string {
		writeFile(t, filepath.Join(work, "entries/000004.json"), string(e.Encode()))
		tool(t, work, "git", "add", "--", "entries/000004.json")
		return commit(t, work, key, "entry 4")
	}

	t.Run("signed by another key", func(t *testing.T) {
		work := f.clone(t)
		c := appendFourth(t, work, otherKey, sampleEntry(4))
		if gitSaysSigned(t, work, f.signers, c) {
			t.Fatal("oracle: git verify-commit accepts the intruder's commit")
		}
		verdicts, log, err := Verify(work, VerifyOptions{AllowedSigners: f.signers, Old: oldHead})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, verdicts, log, CheckSignatures, short(c), "not in the allowed signers", "SHA256:")
		if v, _ := verdictOf(verdicts, CheckExtends); !v.OK {
			t.Errorf("the history does extend OLD: %s", v)
		}
	})

	t.Run("unsigned commit", func(t *testing.T) {
		work := f.clone(t)
		c := appendFourth(t, work, "", sampleEntry(4))
		if gitSaysSigned(t, work, f.signers, c) {
			t.Fatal("oracle: git verify-commit accepts an unsigned commit")
		}
		verdicts, log, err := Verify(work, VerifyOptions{AllowedSigners: f.signers})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, verdicts, log, CheckSignatures, short(c), "unsigned")
	})

	t.Run("commit changed after signing", func(t *testing.T) {
		work := f.clone(t)
		raw := tool(t, work, "git", "cat-file", "commit", "HEAD")
		forged := strings.Replace(raw, "Add entries/000003.json", "Add entries/000003.json (edited)", 1)
		if forged == raw {
			t.Fatal("the commit message changed shape")
		}
		out, err := toolErr(work, []byte(forged), "git", "hash-object", "-t", "commit", "-w", "--stdin")
		if err != nil {
			t.Fatal(out)
		}
		c := strings.TrimSpace(out)
		tool(t, work, "git", "update-ref", "refs/heads/forged", c)
		if gitSaysSigned(t, work, f.signers, c) {
			t.Fatal("oracle: git verify-commit accepts the edited commit")
		}
		verdicts, log, err := Verify(work, VerifyOptions{AllowedSigners: f.signers, New: "refs/heads/forged"})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, verdicts, log, CheckSignatures, short(c), "bad signature")
	})

	t.Run("old entry edited", func(t *testing.T) {
		work := f.clone(t)
		writeFile(t, filepath.Join(work, "entries/000001.json"), string(withMeasurement(sampleEntry(1), "dd").Encode()))
		tool(t, work, "git", "add", "--", "entries/000001.json")
		c := commit(t, work, f.key, "edit entry 1")
		verdicts, log, err := Verify(work, VerifyOptions{AllowedSigners: f.signers, Old: oldHead})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, verdicts, log, CheckAppendOnly, short(c), `modifies "entries/000001.json"`)
		if v, _ := verdictOf(verdicts, CheckSignatures); !v.OK {
			t.Errorf("the edit is signed by the operator's key: %s", v)
		}
	})

	t.Run("entry deleted", func(t *testing.T) {
		work := f.clone(t)
		tool(t, work, "git", "rm", "-q", "--", "entries/000002.json")
		c := commit(t, work, f.key, "drop entry 2")
		verdicts, log, err := Verify(work, VerifyOptions{AllowedSigners: f.signers})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, verdicts, log, CheckAppendOnly, short(c), `deletes "entries/000002.json"`)
	})

	t.Run("file outside entries", func(t *testing.T) {
		work := f.clone(t)
		writeFile(t, filepath.Join(work, "README"), "hello\n")
		tool(t, work, "git", "add", "--", "README")
		c := commit(t, work, f.key, "readme")
		verdicts, log, err := Verify(work, VerifyOptions{AllowedSigners: f.signers})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, verdicts, log, CheckAppendOnly, short(c), `"README", not an entry`)
	})

	t.Run("entry number skipped", func(t *testing.T) {
		work := f.clone(t)
		writeFile(t, filepath.Join(work, "entries/000005.json"), string(sampleEntry(4).Encode()))
		tool(t, work, "git", "add", "--", "entries/000005.json")
		c := commit(t, work, f.key, "skip")
		verdicts, log, err := Verify(work, VerifyOptions{AllowedSigners: f.signers})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, verdicts, log, CheckAppendOnly, short(c), "adds entries/000005.json where entries/000004.json is next")
	})

	t.Run("merge", func(t *testing.T) {
		work := f.clone(t)
		tool(t, work, "git", "checkout", "-q", "-b", "side", "HEAD~1")
		appendFourth(t, work, f.key, sampleEntry(4))
		tool(t, work, "git", "checkout", "-q", "main")
		tool(t, work, "git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "gpg.format=ssh", "-c", "user.signingkey="+f.key, "merge", "-q", "-S", "--no-ff", "-m", "merge", "side")
		c := strings.TrimSpace(tool(t, work, "git", "rev-parse", "HEAD"))
		verdicts, log, err := Verify(work, VerifyOptions{AllowedSigners: f.signers})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, verdicts, log, CheckLinear, short(c), "merge")
	})

	t.Run("entry not canonical", func(t *testing.T) {
		work := f.clone(t)
		c := appendFourthRaw(t, work, f.key, strings.Replace(string(sampleEntry(4).Encode()), "  ", "\t", -1))
		verdicts, log, err := Verify(work, VerifyOptions{AllowedSigners: f.signers})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, verdicts, log, CheckEntries, short(c), "entries/000004.json", "canonical")
	})

	t.Run("oversized entry", func(t *testing.T) {
		work := f.clone(t)
		c := appendFourthRaw(t, work, f.key, string(sampleEntry(4).Encode())+strings.Repeat(" ", MaxEntrySize))
		verdicts, log, err := Verify(work, VerifyOptions{AllowedSigners: f.signers})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, verdicts, log, CheckEntries, short(c), "entries/000004.json: more than an entry's 4096 bytes")
	})

	t.Run("entry as a symlink", func(t *testing.T) {
		work := f.clone(t)
		if err := os.Symlink("000001.json", filepath.Join(work, "entries/000004.json")); err != nil {
			t.Fatal(err)
		}
		tool(t, work, "git", "add", "--", "entries/000004.json")
		c := commit(t, work, f.key, "link")
		verdicts, log, err := Verify(work, VerifyOptions{AllowedSigners: f.signers})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, verdicts, log, CheckAppendOnly, short(c), "mode 120000")
	})

	t.Run("same relay and image again", func(t *testing.T) {
		work := f.clone(t)
		c := appendFourth(t, work, f.key, withMeasurement(sampleEntry(2), "cc"))
		verdicts, log, err := Verify(work, VerifyOptions{AllowedSigners: f.signers})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, verdicts, log, CheckEntries, short(c), "already logged in entries/000002.json")
	})
}

func appendFourthRaw(t *testing.T, work, key, content string) string {
	writeFile(t, filepath.Join(work, "entries/000004.json"), content)
	tool(t, work, "git", "add", "--", "entries/000004.json")
	return commit(t, work, key, "entry 4")
}

func withMeasurement(e Entry, byteHex string) Entry {
	e.Measurement = strings.Repeat(byteHex, 48)
	return e
}

func TestAppendRefusesSameImageWithOtherValues(t *testing.T) {
	f := newFixture(t)
	count := func() string {
		return strings.TrimSpace(tool(t, f.dir, "git", "--git-dir="+f.log, "rev-list", "--count", "refs/heads/main"))
	}
	changed := withMeasurement(sampleEntry(2), "aa")
	if _, err := Append(f.log, AppendOptions{SigningKey: f.key, Entry: changed}); err == nil || !strings.Contains(err.Error(), "already in the log as entries/000002.json") {
		t.Fatalf("append of relay-2's image with another measurement: %v", err)
	}
	// The same launch again (a later time only) is already there: no commit.
	again := sampleEntry(2)
	again.Time = "2027-01-01T00:00:00Z"
	res, err := Append(f.log, AppendOptions{SigningKey: f.key, Entry: again})
	if err != nil || res.Added || res.Logged.Path != "entries/000002.json" || res.Logged.Commit != f.heads[1] {
		t.Fatalf("re-append of the same image: %+v, %v", res, err)
	}
	if n := count(); n != "3" {
		t.Errorf("git rev-list --count: %s commits, want 3", n)
	}
}

func TestAppendRefusesALogThatDoesNotVerify(t *testing.T) {
	f := newFixture(t)
	work := f.clone(t)
	writeFile(t, filepath.Join(work, "entries/000004.json"), string(sampleEntry(4).Encode()))
	tool(t, work, "git", "add", "--", "entries/000004.json")
	unsigned := commit(t, work, "", "unsigned entry 4")
	tool(t, work, "git", "push", "-q", "origin", "main")
	_, err := Append(f.log, AppendOptions{SigningKey: f.key, Entry: sampleEntry(5)})
	if err == nil || !strings.Contains(err.Error(), "does not verify") || !strings.Contains(err.Error(), short(unsigned)) {
		t.Fatalf("append to a log with an unsigned head: %v", err)
	}
	if head := strings.TrimSpace(tool(t, f.dir, "git", "--git-dir="+f.log, "rev-parse", "refs/heads/main")); head != unsigned {
		t.Errorf("the branch moved to %s", head)
	}
}

func TestAppendRefusesLooseLinkedOrUnlistedKey(t *testing.T) {
	f := newFixture(t)
	if err := os.Chmod(f.key, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := Append(f.log, AppendOptions{SigningKey: f.key, Entry: sampleEntry(4)}); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Errorf("key mode 0640: %v", err)
	}
	if err := os.Chmod(f.key, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(f.dir, "link")
	if err := os.Symlink(f.key, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Append(f.log, AppendOptions{SigningKey: link, Entry: sampleEntry(4)}); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("key behind a symlink: %v", err)
	}
	// A work-tree clone is not appended to.
	if _, err := Append(f.clone(t), AppendOptions{SigningKey: f.key, Entry: sampleEntry(4)}); err == nil || !strings.Contains(err.Error(), "work tree") {
		t.Errorf("append to a clone with a work tree: %v", err)
	}
	// A signing key that is not among the allowed signers: the new commit
	// does not verify, and the branch does not move to it.
	otherKey, _ := sshKey(t, f.dir, "other")
	if _, err := Append(f.log, AppendOptions{SigningKey: otherKey, AllowedSigners: f.signers, Entry: sampleEntry(4)}); err == nil || !strings.Contains(err.Error(), "does not verify") || !strings.Contains(err.Error(), "not in the allowed signers") {
		t.Errorf("append signed by a key outside the allowed signers: %v", err)
	}
	if n := strings.TrimSpace(tool(t, f.dir, "git", "--git-dir="+f.log, "rev-list", "--count", "refs/heads/main")); n != "3" {
		t.Errorf("%s commits after refused appends, want 3", n)
	}
}

func TestFindLooksUpAVerifiedLog(t *testing.T) {
	f := newFixture(t)
	_, log, err := Verify(f.log, VerifyOptions{AllowedSigners: f.signers})
	if err != nil || log == nil {
		t.Fatalf("verify: %v", err)
	}
	m2 := bytes.Repeat([]byte{0x42}, 48) // sampleEntry(2)'s measurement, written out
	if found := log.Find(m2, ""); len(found) != 1 || found[0].Relay != "relay-2" || found[0].Path != "entries/000002.json" {
		t.Errorf("Find(measurement 2): %+v", found)
	}
	if found := log.Find(m2, "relay-2"); len(found) != 1 {
		t.Errorf("Find(measurement 2, relay-2): %+v", found)
	}
	if found := log.Find(m2, "relay-1"); len(found) != 0 {
		t.Errorf("Find(measurement 2, relay-1): %+v", found)
	}
	if found := log.Find(bytes.Repeat([]byte{0x99}, 48), ""); len(found) != 0 {
		t.Errorf("Find(absent measurement): %+v", found)
	}
	if e, ok := log.Image("relay-3", strings.Repeat("03", 32)); !ok || e.Path != "entries/000003.json" || e.Measurement != strings.Repeat("43", 48) {
		t.Errorf("Image(relay-3): %+v %v", e, ok)
	}
	if _, ok := log.Image("relay-2", strings.Repeat("03", 32)); ok {
		t.Error("Image(relay-2, relay-3's digest) found an entry")
	}
}

func TestCopiesThatHideHistoryAreNotChecked(t *testing.T) {
	f := newFixture(t)
	// A shallow clone's oldest commit looks like a root.
	shallow := filepath.Join(t.TempDir(), "shallow")
	tool(t, f.dir, "git", "clone", "-q", "--depth", "1", "file://"+f.log, shallow)
	if _, _, err := Verify(shallow, VerifyOptions{AllowedSigners: f.signers}); err == nil || !strings.Contains(err.Error(), "shallow") {
		t.Errorf("shallow clone: %v", err)
	}
	// A grafts file gives commits other parents.
	grafted := f.clone(t)
	writeFile(t, filepath.Join(grafted, ".git", "info", "grafts"), f.heads[2]+"\n")
	if _, _, err := Verify(grafted, VerifyOptions{AllowedSigners: f.signers}); err == nil || !strings.Contains(err.Error(), "grafts") {
		t.Errorf("grafted clone: %v", err)
	}
	// A replace ref is ignored: the commit checked is the one in the log.
	replaced := f.clone(t)
	tool(t, replaced, "git", "replace", "-f", f.heads[1], f.heads[0])
	if out := tool(t, replaced, "git", "rev-list", "--count", "HEAD"); strings.TrimSpace(out) != "2" {
		t.Fatalf("oracle: git does not see the replacement (%s commits, want 2)", out)
	}
	if _, log, err := Verify(replaced, VerifyOptions{AllowedSigners: f.signers}); err != nil || log == nil || len(log.Entries()) != 3 {
		t.Errorf("clone with a replace ref: %v", err)
	}
}

func TestLogRepositoryRefusesARewritingPush(t *testing.T) {
	f := newFixture(t)
	work := f.clone(t)
	tool(t, work, "git", "reset", "-q", "--hard", "HEAD~1")
	if out, err := toolErr(work, nil, "git", "push", "-q", "--force", "origin", "main"); err == nil || !strings.Contains(out, "non-fast-forward") {
		t.Errorf("force push to the log: %v %s", err, out)
	}
	if out, err := toolErr(work, nil, "git", "push", "-q", "origin", ":main"); err == nil || !strings.Contains(out, "deletion") {
		t.Errorf("deleting the log's branch: %v %s", err, out)
	}
}

// pulumi up logs every relay's image at once: appends made together, to a
// log that does not exist yet, all land, one commit each, and the log
// verifies (failed before the lock: the second appender found the branch
// moved under it).
func TestConcurrentAppendsAllLand(t *testing.T) {
	dir := t.TempDir()
	key, line := sshKey(t, dir, "operator")
	signers := writeFile(t, filepath.Join(dir, "allowed_signers"), line)
	log := filepath.Join(dir, "log")
	errs := make(chan error, 4)
	for i := 1; i <= 4; i++ {
		go func(i int) {
			_, err := Append(log, AppendOptions{SigningKey: key, Entry: sampleEntry(i)})
			errs <- err
		}(i)
	}
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Errorf("append: %v", err)
		}
	}
	verdicts, l, err := Verify(log, VerifyOptions{AllowedSigners: signers})
	if err != nil || l == nil || !AllOK(verdicts) {
		t.Fatalf("log after concurrent appends: %v\n%s", err, lines(verdicts))
	}
	if n := strings.TrimSpace(tool(t, dir, "git", "--git-dir="+log, "rev-list", "--count", "refs/heads/main")); n != "4" {
		t.Fatalf("%s commits, want 4", n)
	}
}
