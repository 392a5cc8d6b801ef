package measurelog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// repo is one log repository, always named by its git directory: git never
// searches upward from it, so a directory that is not a log can never be
// mistaken for the repository around it (say, the project's own checkout).
type repo struct{ gitDir string }

// openRepo finds the git directory of the log at dir: dir itself for a bare
// repository, dir/.git for a clone with a work tree.
func openRepo(dir string) (repo, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return repo{}, err
	}
	gitDir := abs
	if st, err := os.Stat(filepath.Join(abs, ".git")); err == nil && st.IsDir() {
		gitDir = filepath.Join(abs, ".git")
	}
	r := repo{gitDir: gitDir}
	out, err := r.run(nil, nil, "rev-parse", "--is-shallow-repository")
	if err != nil {
		return repo{}, fmt.Errorf("%s is not a git repository (a bare log, or a clone of one): %v", dir, err)
	}
	// A shallow clone cuts the history at a commit that looks like a root,
	// and a grafts file gives commits other parents than they were signed
	// with: either would have the history checked be another than the log's.
	if strings.TrimSpace(string(out)) == "true" {
		return repo{}, fmt.Errorf("%s is a shallow clone: the log is checked from its root; run git -C %s fetch --unshallow, or clone it without --depth", dir, dir)
	}
	if _, err := os.Lstat(filepath.Join(gitDir, "info", "grafts")); err == nil {
		return repo{}, fmt.Errorf("%s has an info/grafts file, which rewrites commits' parents; check a fresh clone of the log instead", dir)
	}
	return r, nil
}

// gitEnv is the environment git runs in: the caller's, less every GIT_
// variable (a GIT_DIR or GIT_INDEX_FILE set by an enclosing git would
// redirect it), with no system or global configuration (nothing of the
// user's git setup, say commit.gpgsign or another gpg.ssh.program, takes
// part, and nothing of it is written), no replace refs, and messages in
// English.
func gitEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GIT_") || strings.HasPrefix(kv, "LC_ALL=") {
			continue
		}
		env = append(env, kv)
	}
	// GIT_NO_REPLACE_OBJECTS: a refs/replace/ ref in a copy handed over
	// would otherwise make git show another object in a commit's place.
	env = append(env, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_TERMINAL_PROMPT=0", "GIT_NO_REPLACE_OBJECTS=1", "LC_ALL=C")
	return append(env, extra...)
}

// baseConfig is set on every git command line. Command-line -c outranks the
// repository's own config file, so a log directory handed over with a
// crafted .git/config cannot swap the signature program or run hooks.
var baseConfig = []string{
	"-c", "gpg.format=ssh",
	"-c", "gpg.ssh.program=ssh-keygen",
	"-c", "core.hooksPath=" + os.DevNull,
	"-c", "core.fsmonitor=false",
}

// gitError is a git command that exited non-zero.
type gitError struct {
	args   []string
	code   int
	stderr string
}

func (e *gitError) Error() string {
	msg := strings.TrimSpace(e.stderr)
	if msg == "" {
		msg = fmt.Sprintf("exit status %d", e.code)
	}
	return fmt.Sprintf("git %s: %s", strings.Join(e.args, " "), msg)
}

// exitCode is the exit status of a failed git command, or -1 for another
// error (git missing, say).
func exitCode(err error) int {
	var ge *gitError
	if errors.As(err, &ge) {
		return ge.code
	}
	return -1
}

// run runs git with the arguments as a vector, the given extra config (-c
// pairs) and environment, stdin as input, and returns its stdout.
func (r repo) run(config []string, stdin []byte, args ...string) ([]byte, error) {
	return r.runEnv(config, nil, stdin, args...)
}

func (r repo) runEnv(config, env []string, stdin []byte, args ...string) ([]byte, error) {
	return runGit(append(append([]string{"--git-dir=" + r.gitDir}, config...), args...), env, stdin)
}

func runGit(args, env []string, stdin []byte) ([]byte, error) {
	full := append(append([]string{}, baseConfig...), args...)
	cmd := exec.Command("git", full...)
	cmd.Env = gitEnv(env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return stdout.Bytes(), &gitError{args: args, code: exit.ExitCode(), stderr: stderr.String()}
		}
		return nil, fmt.Errorf("running git (git 2.34 or newer must be on PATH): %v", err)
	}
	return stdout.Bytes(), nil
}

// resolve names the commit that rev names, or "" when it names none.
func (r repo) resolve(rev string) (string, error) {
	out, err := r.run(nil, nil, "rev-parse", "--verify", "--quiet", "--end-of-options", rev+"^{commit}")
	if err != nil {
		if exitCode(err) == 1 {
			return "", nil
		}
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// isAncestor reports whether a is an ancestor of (or equal to) b.
func (r repo) isAncestor(a, b string) (bool, error) {
	_, err := r.run(nil, nil, "merge-base", "--is-ancestor", "--", a, b)
	if err == nil {
		return true, nil
	}
	if exitCode(err) == 1 {
		return false, nil
	}
	return false, err
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}
