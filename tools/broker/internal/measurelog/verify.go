package measurelog

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The checks Verify makes, one verdict line each.
const (
	CheckHead       = "head"        // NEW (and OLD) name commits of the log
	CheckExtends    = "extends"     // OLD is an ancestor of NEW
	CheckLinear     = "linear"      // one root, one parent each
	CheckAppendOnly = "append-only" // each commit adds exactly the next entries/NNNNNN.json
	CheckEntries    = "entries"     // each entry decodes; no relay and image twice
	CheckSignatures = "signatures"  // each commit is signed by an allowed key
)

// maxProblems bounds the problems one verdict line lists.
const maxProblems = 5

// Verdict is one check's outcome.
type Verdict struct {
	Check  string
	OK     bool
	Detail string
}

// String is the verdict line: "ok   CHECK: detail" or "FAIL CHECK: detail".
func (v Verdict) String() string {
	word := "ok  "
	if !v.OK {
		word = "FAIL"
	}
	return fmt.Sprintf("%s %s: %s", word, v.Check, v.Detail)
}

// AllOK reports whether every verdict holds (and there is at least one).
func AllOK(verdicts []Verdict) bool {
	for _, v := range verdicts {
		if !v.OK {
			return false
		}
	}
	return len(verdicts) > 0
}

// VerifyOptions says what to check.
type VerifyOptions struct {
	// AllowedSigners is an OpenSSH allowed-signers file (ssh-keygen(1),
	// ALLOWED SIGNERS) holding the image signing key's public key.
	AllowedSigners string
	// Old, when set, is a head seen before: it must be an ancestor of New,
	// and only the commits after it need signatures by AllowedSigners (the
	// older ones were checked when Old was, perhaps under an older key).
	Old string
	// New is the head to check; HEAD when empty.
	New string
}

// Logged is an entry as the log holds it.
type Logged struct {
	Entry
	// Path is the entry's file, entries/NNNNNN.json.
	Path string
	// Commit is the commit that added it.
	Commit string
}

// Log is a verified log: only Verify makes one, and only when every check
// held, so holding a *Log means its entries are the signed, append-only ones.
type Log struct {
	head    string
	entries []Logged
}

// Head is the verified head commit.
func (l *Log) Head() string { return l.head }

// Entries are all entries, oldest first.
func (l *Log) Entries() []Logged { return append([]Logged(nil), l.entries...) }

// Find returns the entries whose measurement is measurement (48 bytes) and,
// when relay is not empty, whose relay is relay. None means the log does not
// hold that measurement: a verifier refuses the relay.
func (l *Log) Find(measurement []byte, relay string) []Logged {
	var found []Logged
	for _, e := range l.entries {
		if bytes.Equal(e.MeasurementBytes(), measurement) && (relay == "" || e.Relay == relay) {
			found = append(found, e)
		}
	}
	return found
}

// Image returns the entry of relay's image imageDigest, if the log holds it.
func (l *Log) Image(relay, imageDigest string) (Logged, bool) {
	for _, e := range l.entries {
		if e.Relay == relay && e.ImageDigest == imageDigest {
			return e, true
		}
	}
	return Logged{}, false
}

// Verify checks the log at dir and returns one verdict per check, and the
// verified Log when all hold. An error means the checks could not run (no
// git, no repository, an unreadable allowed-signers file), not that the log
// is bad.
func Verify(dir string, opt VerifyOptions) ([]Verdict, *Log, error) {
	signers, err := allowedSigners(opt.AllowedSigners)
	if err != nil {
		return nil, nil, err
	}
	r, err := openRepo(dir)
	if err != nil {
		return nil, nil, err
	}
	return r.verify(signers, opt.Old, opt.New)
}

// allowedSigners checks that path is a file and returns it absolute (git
// runs ssh-keygen with it from elsewhere).
func allowedSigners(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() {
		return "", fmt.Errorf("allowed signers %s: not a readable file (one line per key: PRINCIPAL KEYTYPE KEY, see ssh-keygen(1) ALLOWED SIGNERS)", path)
	}
	return filepath.Abs(path)
}

func (r repo) verify(signers, oldRev, newRev string) ([]Verdict, *Log, error) {
	if newRev == "" {
		newRev = "HEAD"
	}
	var verdicts []Verdict
	fail := func(check, format string, args ...any) ([]Verdict, *Log, error) {
		return append(verdicts, Verdict{Check: check, Detail: fmt.Sprintf(format, args...)}), nil, nil
	}

	newCommit, err := r.resolve(newRev)
	if err != nil {
		return nil, nil, err
	}
	if newCommit == "" {
		return fail(CheckHead, "NEW %q names no commit in this copy of the log", newRev)
	}
	// signedFrom is OLD once it is known to be an ancestor of NEW: only the
	// commits after it need signatures by the allowed signers. When OLD is
	// missing or not an ancestor, that check fails, and the others still run
	// on NEW from its root, so the volunteer sees all that is wrong.
	signedFrom := ""
	if oldRev != "" {
		oldCommit, err := r.resolve(oldRev)
		if err != nil {
			return nil, nil, err
		}
		if oldCommit == "" {
			verdicts = append(verdicts, Verdict{CheckHead, false, fmt.Sprintf("OLD %q names no commit in this copy of the log: the history that held it is gone (rewritten), or this copy was fetched without it; NEW %s is checked from the root", oldRev, short(newCommit))})
		} else {
			verdicts = append(verdicts, Verdict{CheckHead, true, fmt.Sprintf("OLD %s, NEW %s", short(oldCommit), short(newCommit))})
			ok, err := r.isAncestor(oldCommit, newCommit)
			if err != nil {
				return nil, nil, err
			}
			if ok {
				signedFrom = oldCommit
				verdicts = append(verdicts, Verdict{CheckExtends, true, fmt.Sprintf("OLD %s is an ancestor of NEW %s: the new copy only extends the old one", short(oldCommit), short(newCommit))})
			} else {
				why := "the history after it was rewritten (a commit amended, removed or replaced)"
				if back, err := r.isAncestor(newCommit, oldCommit); err == nil && back {
					why = "NEW is older than OLD: this copy lost entries that OLD had"
				}
				verdicts = append(verdicts, Verdict{CheckExtends, false, fmt.Sprintf("OLD %s is not an ancestor of NEW %s: %s", short(oldCommit), short(newCommit), why)})
			}
		}
	} else {
		verdicts = append(verdicts, Verdict{CheckHead, true, fmt.Sprintf("NEW %s, checked from the root", short(newCommit))})
	}

	// The whole history, oldest first, each commit with its parents.
	out, err := r.run(nil, nil, "rev-list", "--reverse", "--topo-order", "--parents", newCommit, "--")
	if err != nil {
		return nil, nil, err
	}
	var commits []string
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		commit, parents := fields[0], fields[1:]
		switch {
		case len(commits) == 0 && len(parents) != 0:
			problems = append(problems, fmt.Sprintf("commit %s: the oldest commit has a parent", short(commit)))
		case len(commits) > 0 && len(parents) == 0:
			problems = append(problems, fmt.Sprintf("commit %s: a second root (a history with no parent grafted in)", short(commit)))
		case len(parents) > 1:
			problems = append(problems, fmt.Sprintf("commit %s: a merge of %d parents", short(commit), len(parents)))
		case len(commits) > 0 && parents[0] != commits[len(commits)-1]:
			problems = append(problems, fmt.Sprintf("commit %s: its parent %s is not the commit before it", short(commit), short(parents[0])))
		}
		commits = append(commits, commit)
	}
	if len(problems) > 0 {
		return fail(CheckLinear, "%s", listProblems(problems))
	}
	verdicts = append(verdicts, Verdict{CheckLinear, true, fmt.Sprintf("%s, each with one parent but the root", count(len(commits), "commit"))})

	// Each commit adds exactly the next entry, as a plain file. One git
	// diff-tree and two git cat-file for the whole history: a process per
	// commit would make a long log slow to check.
	changes, err := r.changesOf(commits)
	if err != nil {
		return nil, nil, err
	}
	added := make([]addedFile, len(commits))
	for i, commit := range commits {
		entry, problem := addedEntry(changes[commit], i+1)
		if problem != "" {
			problems = append(problems, fmt.Sprintf("commit %s: %s", short(commit), problem))
			continue
		}
		added[i] = entry
	}
	blobs, err := r.smallBlobs(added)
	if err != nil {
		return nil, nil, err
	}
	var entries []Logged
	var entryProblems []string
	for i, entry := range added {
		if entry.blob == "" {
			continue
		}
		data, ok := blobs[entry.blob]
		if !ok {
			entryProblems = append(entryProblems, fmt.Sprintf("commit %s %s: more than an entry's %d bytes", short(commits[i]), entry.path, MaxEntrySize))
			continue
		}
		e, err := DecodeLogged(data)
		if err != nil {
			entryProblems = append(entryProblems, fmt.Sprintf("commit %s %s: %v", short(commits[i]), entry.path, err))
			continue
		}
		entries = append(entries, Logged{Entry: e, Path: entry.path, Commit: commits[i]})
	}
	// The signatures are still checked after a failure here: a volunteer
	// learns both that an entry was changed and whether a signer did it.
	if len(problems) > 0 {
		verdicts = append(verdicts, Verdict{CheckAppendOnly, false, listProblems(problems)})
	} else {
		verdicts = append(verdicts, Verdict{CheckAppendOnly, true, fmt.Sprintf("each of the %s adds one file, the next entries/NNNNNN.json, and changes nothing else", count(len(commits), "commit"))})
	}

	seen := map[[2]string]Logged{}
	for _, e := range entries {
		key := [2]string{e.Relay, e.ImageDigest}
		if first, ok := seen[key]; ok {
			entryProblems = append(entryProblems, fmt.Sprintf("commit %s %s: relay %s image %s is already logged in %s", short(e.Commit), e.Path, e.Relay, e.ImageDigest, first.Path))
			continue
		}
		seen[key] = e
	}
	if len(entryProblems) > 0 {
		verdicts = append(verdicts, Verdict{CheckEntries, false, listProblems(entryProblems)})
	} else {
		verdicts = append(verdicts, Verdict{CheckEntries, true, fmt.Sprintf("%s decode, no relay and image twice", count(len(entries), "entry"))})
	}

	// Signatures: the commits after OLD, or all.
	toSign := commits
	from := "from the root"
	if signedFrom != "" {
		for i, c := range commits {
			if c == signedFrom {
				toSign = commits[i+1:]
				break
			}
		}
		from = "after OLD " + short(signedFrom)
	}
	sigProblems, err := r.signatureProblems(signers, toSign)
	if err != nil {
		return nil, nil, err
	}
	if len(sigProblems) > 0 {
		verdicts = append(verdicts, Verdict{CheckSignatures, false, listProblems(sigProblems)})
	} else {
		verdicts = append(verdicts, Verdict{CheckSignatures, true, fmt.Sprintf("%s %s to NEW %s, each signed by a key in %s", count(len(toSign), "commit"), from, short(newCommit), signers)})
	}
	if !AllOK(verdicts) {
		return verdicts, nil, nil
	}
	return verdicts, &Log{head: newCommit, entries: entries}, nil
}

type addedFile struct{ path, blob string }

// rawChange is one record of git diff-tree --raw.
type rawChange struct{ newMode, blob, status, path string }

// changesOf reads what each commit changed against its parent (the root
// against nothing), with one git diff-tree --stdin for all of them.
func (r repo) changesOf(commits []string) (map[string][]rawChange, error) {
	out, err := r.run(nil, []byte(strings.Join(commits, "\n")+"\n"), "diff-tree", "--stdin", "--always", "--root", "-r", "-z", "--raw", "--no-renames", "--full-index")
	if err != nil {
		return nil, err
	}
	// -z output: "COMMIT\0", then per changed file
	// ":OLDMODE NEWMODE OLDSHA NEWSHA STATUS\0PATH\0".
	changes := make(map[string][]rawChange, len(commits))
	fields := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	current := ""
	for i := 0; i < len(fields); i++ {
		if !strings.HasPrefix(fields[i], ":") {
			current = fields[i]
			changes[current] = nil
			continue
		}
		meta := strings.Fields(strings.TrimPrefix(fields[i], ":"))
		if len(meta) != 5 || i+1 >= len(fields) || current == "" {
			return nil, fmt.Errorf("git diff-tree: unexpected record %q", fields[i])
		}
		changes[current] = append(changes[current], rawChange{newMode: meta[1], blob: meta[3], status: meta[4], path: fields[i+1]})
		i++
	}
	for _, c := range commits {
		if _, ok := changes[c]; !ok {
			return nil, fmt.Errorf("git diff-tree said nothing of commit %s", c)
		}
	}
	return changes, nil
}

// smallBlobs reads the blobs of the added files that are no larger than an
// entry may be (git cat-file --batch-check for the sizes, then --batch for
// the contents), so an oversized file in a hostile log is never loaded.
func (r repo) smallBlobs(files []addedFile) (map[string][]byte, error) {
	var ids []string
	for _, f := range files {
		if f.blob != "" {
			ids = append(ids, f.blob)
		}
	}
	blobs := map[string][]byte{}
	if len(ids) == 0 {
		return blobs, nil
	}
	out, err := r.run(nil, []byte(strings.Join(ids, "\n")+"\n"), "cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize)")
	if err != nil {
		return nil, err
	}
	var small []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[1] != "blob" {
			return nil, fmt.Errorf("git cat-file --batch-check: unexpected line %q", line)
		}
		if size, err := strconv.Atoi(f[2]); err == nil && size <= MaxEntrySize {
			small = append(small, f[0])
		}
	}
	if len(small) == 0 {
		return blobs, nil
	}
	out, err = r.run(nil, []byte(strings.Join(small, "\n")+"\n"), "cat-file", "--batch")
	if err != nil {
		return nil, err
	}
	// "OID blob SIZE\n", SIZE bytes, "\n", for each.
	for len(out) > 0 {
		nl := bytes.IndexByte(out, '\n')
		f := strings.Fields(string(out[:max(nl, 0)]))
		if nl < 0 || len(f) != 3 {
			return nil, fmt.Errorf("git cat-file --batch: unexpected output")
		}
		size, err := strconv.Atoi(f[2])
		if err != nil || nl+1+size+1 > len(out) {
			return nil, fmt.Errorf("git cat-file --batch: unexpected size %q", f[2])
		}
		blobs[f[0]] = out[nl+1 : nl+1+size]
		out = out[nl+1+size+1:]
	}
	return blobs, nil
}

// addedEntry checks that a commit's changes are exactly one added plain
// file, the want-th entry, and returns it, or says what is wrong.
func addedEntry(raw []rawChange, want int) (addedFile, string) {
	if len(raw) == 0 {
		return addedFile{}, "changes no file (an empty commit)"
	}
	var changes []string
	var added addedFile
	for _, c := range raw {
		path := c.path
		switch c.status {
		case "A":
			if c.newMode != "100644" {
				changes = append(changes, fmt.Sprintf("adds %s with mode %s (an entry is a plain 100644 file)", strconv.Quote(path), c.newMode))
			} else {
				added = addedFile{path: path, blob: c.blob}
				changes = append(changes, "")
			}
		case "D":
			changes = append(changes, "deletes "+strconv.Quote(path))
		case "M":
			changes = append(changes, "modifies "+strconv.Quote(path))
		case "T":
			changes = append(changes, "changes the type of "+strconv.Quote(path))
		default:
			changes = append(changes, fmt.Sprintf("changes %s (status %s)", strconv.Quote(path), c.status))
		}
	}
	var wrong []string
	for _, c := range changes {
		if c != "" {
			wrong = append(wrong, c)
		}
	}
	if len(wrong) > 0 {
		return addedFile{}, strings.Join(wrong, ", ")
	}
	if len(changes) != 1 {
		return addedFile{}, fmt.Sprintf("adds %d files (an entry commit adds one)", len(changes))
	}
	if added.path != EntryPath(want) {
		if n := entryNumber(added.path); n != 0 {
			return addedFile{}, fmt.Sprintf("adds %s where %s is next", added.path, EntryPath(want))
		}
		return addedFile{}, fmt.Sprintf("adds %s, not an entry (the next is %s)", strconv.Quote(added.path), EntryPath(want))
	}
	return added, ""
}

// signatureProblems asks git verify-commit (ssh-keygen -Y verify
// underneath) whether each commit is signed by a key in signers, in one git
// process per thousand commits; only when it refuses does it look at each
// commit to say which failed and how. nil means all are signed.
func (r repo) signatureProblems(signers string, commits []string) ([]string, error) {
	config := []string{"-c", "gpg.ssh.allowedSignersFile=" + signers}
	var problems []string
	for len(commits) > 0 {
		batch := commits[:min(len(commits), 1000)]
		commits = commits[len(batch):]
		_, err := r.run(config, nil, append([]string{"verify-commit", "--"}, batch...)...)
		if err == nil {
			continue
		}
		if exitCode(err) < 0 {
			return nil, err
		}
		for _, c := range batch {
			problem, err := r.signatureProblem(config, c)
			if err != nil {
				return nil, err
			}
			if problem != "" {
				problems = append(problems, fmt.Sprintf("commit %s: %s", short(c), problem))
			}
		}
		if len(problems) == 0 {
			return nil, fmt.Errorf("git verify-commit refused a commit, and none refuses alone: %v", err)
		}
	}
	return problems, nil
}

// signatureProblem says why commit's signature fails, "" if it does not.
func (r repo) signatureProblem(config []string, commit string) (string, error) {
	_, err := r.run(config, nil, "verify-commit", "--", commit)
	if err == nil {
		return "", nil
	}
	if exitCode(err) < 0 {
		return "", err
	}
	// %G? is git's own classification of the same verification.
	out, ferr := r.run(config, nil, "show", "-s", "--format=%G?%x00%GK%x00", commit, "--")
	status, key := "", ""
	if ferr == nil {
		if parts := strings.Split(string(out), "\x00"); len(parts) >= 2 {
			status, key = strings.TrimSpace(parts[0]), parts[1]
		}
	}
	switch status {
	case "N":
		return "unsigned", nil
	case "B":
		return "bad signature: the commit was changed after it was signed", nil
	case "U", "E":
		if key != "" {
			return fmt.Sprintf("signed by key %s, which is not in the allowed signers", key), nil
		}
		return "signed by a key that is not in the allowed signers", nil
	}
	return fmt.Sprintf("signature does not verify (%s)", strings.TrimSpace(err.Error())), nil
}

func listProblems(problems []string) string {
	if len(problems) > maxProblems {
		return strings.Join(problems[:maxProblems], "; ") + fmt.Sprintf("; and %d more", len(problems)-maxProblems)
	}
	return strings.Join(problems, "; ")
}

// count is "1 commit", "2 commits", "0 entries".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(noun, "y"))
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
