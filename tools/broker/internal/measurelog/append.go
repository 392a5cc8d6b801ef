package measurelog

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Branch is the log's one branch.
const Branch = "refs/heads/main"

// The identity every entry commit carries: the signature, not the name,
// says who made it.
const (
	committerName  = "diskless-relays measurement log"
	committerEmail = "measurement-log@diskless-relays.invalid"
)

// AppendOptions says what to append and with which key.
type AppendOptions struct {
	// SigningKey is the OpenSSH private key file (the image signing key),
	// mode 0600 and not a symlink.
	SigningKey string
	// AllowedSigners, when set, is the allowed-signers file the existing log
	// is verified against before appending. When empty, the signing key's
	// own public key is the only allowed signer.
	AllowedSigners string
	Entry          Entry
}

// AppendResult says what Append did.
type AppendResult struct {
	// Added is false when the log already held the same image (all fields
	// but the time equal) and nothing was appended.
	Added bool
	// Logged is the new entry, or the one already there.
	Logged Logged
}

// Append adds opt.Entry to the log at dir as one signed commit, creating the
// log (a bare git repository) when dir does not exist or is empty. It first
// verifies the existing log and refuses to extend one that does not verify,
// and refuses an entry whose relay and image digest the log already holds
// with other values. The new commit is verified before the branch moves to
// it, and the branch moves only if no one else moved it meanwhile.
func Append(dir string, opt AppendOptions) (AppendResult, error) {
	if err := CheckSigningKey(opt.SigningKey); err != nil {
		return AppendResult{}, err
	}
	if err := opt.Entry.Check(); err != nil {
		return AppendResult{}, fmt.Errorf("entry: %v", err)
	}
	key, err := filepath.Abs(opt.SigningKey)
	if err != nil {
		return AppendResult{}, err
	}
	// One append at a time: pulumi up logs every relay's image at once, and
	// a second appender would find the branch moved under it.
	unlock, err := lockLog(dir)
	if err != nil {
		return AppendResult{}, err
	}
	defer unlock()
	r, err := openOrCreate(dir)
	if err != nil {
		return AppendResult{}, err
	}

	tmp, err := os.MkdirTemp("", "measurement-log-")
	if err != nil {
		return AppendResult{}, err
	}
	defer os.RemoveAll(tmp)
	signers := opt.AllowedSigners
	if signers == "" {
		if signers, err = ownSigners(key, tmp); err != nil {
			return AppendResult{}, err
		}
	}
	if signers, err = allowedSigners(signers); err != nil {
		return AppendResult{}, err
	}

	head, err := r.resolve(Branch)
	if err != nil {
		return AppendResult{}, err
	}
	var existing []Logged
	if head != "" {
		verdicts, log, err := r.verify(signers, "", head)
		if err != nil {
			return AppendResult{}, err
		}
		if log == nil {
			return AppendResult{}, fmt.Errorf("the log at %s does not verify at its head %s, so nothing is appended to it:\n%s", dir, short(head), failedLines(verdicts))
		}
		existing = log.entries
	}
	for _, e := range existing {
		if e.Relay != opt.Entry.Relay || e.ImageDigest != opt.Entry.ImageDigest {
			continue
		}
		if e.SameImage(opt.Entry) {
			return AppendResult{Added: false, Logged: e}, nil
		}
		return AppendResult{}, fmt.Errorf("relay %s image %s is already in the log as %s (commit %s) with other values; an image's launch is logged once, and a changed measurement means a new image digest", e.Relay, e.ImageDigest, e.Path, short(e.Commit))
	}

	path := EntryPath(len(existing) + 1)
	commit, err := r.commitEntry(key, head, path, opt.Entry)
	if err != nil {
		return AppendResult{}, err
	}
	verdicts, _, err := r.verify(signers, head, commit)
	if err != nil {
		return AppendResult{}, err
	}
	if !AllOK(verdicts) {
		return AppendResult{}, fmt.Errorf("the new commit %s does not verify (is the signing key's public key in %s?); the log is unchanged:\n%s", short(commit), signers, failedLines(verdicts))
	}
	// The old value makes the move conditional; an empty one means the
	// branch must not exist yet (the log's first entry).
	if _, err := r.run(nil, nil, "update-ref", "-m", "measurement-log append "+path, "--", Branch, commit, head); err != nil {
		return AppendResult{}, fmt.Errorf("moving %s to the new commit (did another append run at the same time? run it again): %v", Branch, err)
	}
	return AppendResult{Added: true, Logged: Logged{Entry: opt.Entry, Path: path, Commit: commit}}, nil
}

// CheckSigningKey refuses a private key file that is a symlink, not a plain
// file, or readable or writable by anyone but its owner.
func CheckSigningKey(path string) error {
	st, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("signing key: %v (make one with ssh-keygen -t ed25519 -f FILE)", err)
	}
	if st.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("signing key %s is a symlink; name the key file itself", path)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("signing key %s is not a plain file", path)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		return fmt.Errorf("signing key %s has mode %04o; a private key must be 0600 (chmod 600 %s)", path, perm, path)
	}
	return nil
}

// openOrCreate opens the bare log repository at dir, creating it when dir
// does not exist or is empty. A log with a work tree is refused: appending
// writes objects and moves the branch, and would leave a checkout stale.
// lockLog holds an exclusive flock on the log's directory (made when
// missing) until the returned function runs. The lock is on the directory
// itself, so the log needs no file of its own that git would not know.
func lockLog(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("the log %s: %v", dir, err)
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("the log %s: %v", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking the log %s: %v", dir, err)
	}
	return func() { f.Close() }, nil
}

func openOrCreate(dir string) (repo, error) {
	names, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(names) == 0) {
		if _, err := runGit([]string{"init", "--quiet", "--bare", "--initial-branch=main", "--", dir}, nil, nil); err != nil {
			return repo{}, fmt.Errorf("creating the log at %s: %v", dir, err)
		}
		// Published from here, the repository itself refuses a push that
		// rewrites or deletes history (volunteers check that too, but a
		// log that cannot be rewritten by a stray push is better).
		for _, kv := range [][2]string{{"receive.denyNonFastForwards", "true"}, {"receive.denyDeletes", "true"}} {
			if _, err := runGit([]string{"--git-dir=" + dir, "config", "--", kv[0], kv[1]}, nil, nil); err != nil {
				return repo{}, fmt.Errorf("configuring the log at %s: %v", dir, err)
			}
		}
	} else if err != nil {
		return repo{}, err
	}
	r, err := openRepo(dir)
	if err != nil {
		return repo{}, err
	}
	out, err := r.run(nil, nil, "rev-parse", "--is-bare-repository")
	if err != nil {
		return repo{}, err
	}
	if strings.TrimSpace(string(out)) != "true" {
		return repo{}, fmt.Errorf("%s has a work tree; the log is a bare repository (appending never touches a checkout): append to the bare repository it was cloned from, or make one with git clone --bare", dir)
	}
	return r, nil
}

// ownSigners writes an allowed-signers file holding only the signing key's
// public key (ssh-keygen -y derives it and prints only the public half).
func ownSigners(key, tmp string) (string, error) {
	out, err := exec.Command("ssh-keygen", "-y", "-f", key).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return "", fmt.Errorf("ssh-keygen -y -f %s: cannot read the signing key: %s", key, strings.TrimSpace(string(exit.Stderr)))
		}
		return "", fmt.Errorf("running ssh-keygen (OpenSSH 8.8 or newer must be on PATH): %v", err)
	}
	fields := strings.Fields(string(out))
	if len(fields) < 2 {
		return "", fmt.Errorf("ssh-keygen -y -f %s printed no public key", key)
	}
	path := filepath.Join(tmp, "allowed_signers")
	line := fmt.Sprintf("measurement-log namespaces=\"git\" %s %s\n", fields[0], fields[1])
	return path, os.WriteFile(path, []byte(line), 0o644)
}

// commitEntry writes the entry's blob, the trees holding it and a commit
// signed with key (git commit-tree -S, gpg.format=ssh), and returns the
// commit. Plumbing only: no index, no work tree, no hooks.
func (r repo) commitEntry(key, parent, path string, e Entry) (string, error) {
	blob, err := r.run(nil, e.Encode(), "hash-object", "-w", "--stdin")
	if err != nil {
		return "", err
	}
	listing := ""
	if parent != "" {
		// The entries so far: a verified log's tree holds entries/ only.
		out, err := r.run(nil, nil, "ls-tree", "-z", "--full-tree", parent+":entries")
		if err != nil {
			return "", err
		}
		listing = string(out)
	}
	listing += fmt.Sprintf("100644 blob %s\t%s\x00", strings.TrimSpace(string(blob)), strings.TrimPrefix(path, "entries/"))
	entriesTree, err := r.run(nil, []byte(listing), "mktree", "-z")
	if err != nil {
		return "", err
	}
	rootTree, err := r.run(nil, []byte(fmt.Sprintf("040000 tree %s\tentries\x00", strings.TrimSpace(string(entriesTree)))), "mktree", "-z")
	if err != nil {
		return "", err
	}
	// The commit's dates are the entry's time, so the commit is a function
	// of the entry, its parent and the key.
	date := e.Time
	env := []string{
		"GIT_AUTHOR_NAME=" + committerName, "GIT_AUTHOR_EMAIL=" + committerEmail, "GIT_AUTHOR_DATE=" + date,
		"GIT_COMMITTER_NAME=" + committerName, "GIT_COMMITTER_EMAIL=" + committerEmail, "GIT_COMMITTER_DATE=" + date,
	}
	args := []string{"commit-tree", "-S", "-m", commitMessage(path, e)}
	if parent != "" {
		args = append(args, "-p", parent)
	}
	args = append(args, strings.TrimSpace(string(rootTree)))
	out, err := r.runEnv([]string{"-c", "user.signingkey=" + key}, env, nil, args...)
	if err != nil {
		return "", fmt.Errorf("signing the entry's commit with %s: %v", key, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func commitMessage(path string, e Entry) string {
	return fmt.Sprintf("Add %s: relay %s, image %s\n\nmeasurement %s\npolicy %s, %d vCPUs %s\nbuild record sha256 %s\n",
		path, e.Relay, e.ImageDigest, e.Measurement, e.Policy, e.VCPUs, e.VCPUType, e.BuildRecordSHA256)
}

func failedLines(verdicts []Verdict) string {
	var lines []string
	for _, v := range verdicts {
		if !v.OK {
			lines = append(lines, "  "+v.String())
		}
	}
	return strings.Join(lines, "\n")
}
