package main

// The program as a volunteer runs it, built with go build, against a relay
// served on loopback by relayproof.Handler: the relay's keys are made by
// real tor (toridtest), its reports by the SNP simulator, the measurement
// log by measurelog.Append with an ssh-keygen key and checked by real git
// and OpenSSH. The expected identities are what tor printed about its keys;
// the consensus path is tested with a real test network's documents.

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-sev-guest/kds"

	"diskless-relays/tools/broker/internal/measurelog"
	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/relayproof"
	"diskless-relays/tools/broker/internal/snpsim"
	"diskless-relays/tools/broker/internal/torid/toridtest"
)

var (
	bin      string // the built program
	keysDir  string // tor-made relay keys: relay-a/, relay-b/
	simDir   string // the simulated chain the volunteer is told to allow
	otherSim string // another simulated chain, trusted by no one
	logDir   string // the measurement log, one entry: relay-a, image, measurement
	signers  string // allowed signers: the log's signing key
	logKey   string // the log's signing key (the test's operator)
	workDir  string

	measurement = bytes.Repeat([]byte{0x42}, 48)
	image       = strings.Repeat("ab", 32)
)

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "verify-relay-test-")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		workDir = dir
		bin = filepath.Join(dir, "verify-relay")
		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			panic(fmt.Sprintf("go build: %v\n%s", err, out))
		}
		keys, cleanup, err := toridtest.Make("../../internal/torid/toridtest/make-fixtures.sh")
		if err != nil {
			panic(err)
		}
		defer cleanup()
		keysDir = keys
		simDir, otherSim = filepath.Join(dir, "sim"), filepath.Join(dir, "other-sim")
		for _, d := range []string{simDir, otherSim} {
			if err := snpsim.Init(d, snpsim.InitOptions{RSABits: 2048}); err != nil {
				panic(err)
			}
		}
		logKey = filepath.Join(dir, "image-signing")
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "operator", "-f", logKey).CombinedOutput(); err != nil {
			panic(fmt.Sprintf("ssh-keygen: %v\n%s", err, out))
		}
		pub, err := os.ReadFile(logKey + ".pub")
		if err != nil {
			panic(err)
		}
		f := strings.Fields(string(pub))
		signers = filepath.Join(dir, "allowed_signers")
		if err := os.WriteFile(signers, []byte("operator "+f[0]+" "+f[1]+"\n"), 0o644); err != nil {
			panic(err)
		}
		logDir = filepath.Join(dir, "log")
		if _, err := measurelog.Append(logDir, measurelog.AppendOptions{SigningKey: logKey, Entry: measurelog.Entry{
			Relay: "relay-a", ImageDigest: image, Measurement: hex.EncodeToString(measurement), Policy: "0x30000",
			VCPUs: 4, VCPUType: "EPYC-Milan", BuildRecordSHA256: strings.Repeat("cd", 32), Time: "2026-12-06T08:00:00Z",
		}}); err != nil {
			panic(err)
		}
		return m.Run()
	}()
	os.Exit(code)
}

// torSays is the value of tor's one "NICKNAME VALUE" line in a key
// fixture, without the spaces tor puts into RSA fingerprints.
func torSays(t *testing.T, relay, file string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(keysDir, relay, file))
	if err != nil {
		t.Fatal(err)
	}
	_, value, ok := strings.Cut(strings.TrimSpace(string(data)), " ")
	if !ok {
		t.Fatalf("%s/%s: not a \"NICKNAME VALUE\" line", relay, file)
	}
	return strings.ReplaceAll(value, " ", "")
}

func fingerprint(t *testing.T, relay string) string {
	return torSays(t, relay, "tor-list-fingerprint-rsa.txt")
}
func ed25519ID(t *testing.T, relay string) string {
	return torSays(t, relay, "tor-list-fingerprint-ed25519.txt")
}

// relay serves relayproof.Handler on loopback for the keys of keyRelay,
// with reports from the simulator chain in chain, as relay-a running image.
func relay(t *testing.T, keyRelay, chain string, o snpsim.Options) string {
	t.Helper()
	if o.Measurement == nil {
		o.Measurement = measurement
	}
	sim, err := snpsim.Load(chain, o)
	if err != nil {
		t.Fatal(err)
	}
	h, err := relayproof.Handler(relayproof.HandlerConfig{
		GetReport: func(_ context.Context, rd [protocol.ReportDataSize]byte) ([]byte, []byte, error) {
			return sim.Report(rd)
		},
		KeyDir: filepath.Join(keysDir, keyRelay),
		Image:  relayproof.Image{Relay: "relay-a", Digest: image, BuildRecord: "https://example.org/relay-a.json"},
		Rate:   100, Burst: 100,
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

type result struct {
	stdout, stderr string
	code           int
	lines          map[string]bool // check → ok
	order          []string
}

func verifyRelay(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull, "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), lines: map[string]bool{}}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		r.code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimRight(r.stdout, "\n"), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || (f[0] != "ok" && f[0] != "FAIL") {
			continue
		}
		r.lines[f[1]] = f[0] == "ok"
		r.order = append(r.order, f[1])
	}
	return r
}

var allChecks = []string{"amd_chain", "policy", "tcb", "freshness", "report_data", "signing_cert", "signature", "measurement_in_log"}

// base is a volunteer's command line for relay-a, trusting the test chain.
func base(t *testing.T, address string) []string {
	return []string{
		"--fingerprint", fingerprint(t, "relay-a"), "--ed25519-id", ed25519ID(t, "relay-a"),
		"--address", address, "--log", logDir, "--allowed-signers", signers,
		"--min-tcb", "amd-sb-3019", "--allow-smt", "--allow-simulated-root", filepath.Join(simDir, snpsim.ArkAskFile),
	}
}

// with replaces flag's value in args (or adds the flag).
func with(args []string, flag string, value ...string) []string {
	out := append([]string(nil), args...)
	for i, a := range out {
		if a == flag {
			if len(value) == 0 {
				return append(out[:i], out[i+1:]...)
			}
			out[i+1] = value[0]
			return out
		}
	}
	return append(out, append([]string{flag}, value...)...)
}

func without(args []string, flag string) []string {
	for i, a := range args {
		if a == flag {
			return append(append([]string(nil), args[:i]...), args[i+2:]...)
		}
	}
	return args
}

// wantFailed checks that every check printed its line, in order, that
// exactly the named ones failed, and the exit code.
func wantFailed(t *testing.T, r result, failed ...string) {
	t.Helper()
	t.Logf("verify-relay printed:\n%s", r.stdout)
	if strings.Join(r.order, " ") != strings.Join(allChecks, " ") {
		t.Fatalf("lines %v, want %v\n%s%s", r.order, allChecks, r.stdout, r.stderr)
	}
	var got []string
	for _, c := range allChecks {
		if !r.lines[c] {
			got = append(got, c)
		}
	}
	sort.Strings(got)
	sort.Strings(failed)
	if strings.Join(got, " ") != strings.Join(failed, " ") {
		t.Fatalf("failed %v, want %v\n%s%s", got, failed, r.stdout, r.stderr)
	}
	wantCode := 1
	if len(failed) == 0 {
		wantCode = 0
	}
	if r.code != wantCode {
		t.Fatalf("exit %d, want %d\n%s%s", r.code, wantCode, r.stdout, r.stderr)
	}
}

func TestGenuineRelayPasses(t *testing.T) {
	r := verifyRelay(t, base(t, relay(t, "relay-a", simDir, snpsim.Options{}))...)
	wantFailed(t, r)
	if !strings.Contains(r.stdout, "SIMULATED ROOT") {
		t.Fatalf("the amd_chain line does not say the root is simulated:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "entries/000001.json") {
		t.Fatalf("the measurement_in_log line does not name the entry:\n%s", r.stdout)
	}
}

// Without --allow-simulated-root only AMD's roots are pinned: the
// simulator's report does not chain, on its own line.
func TestSimulatedRootIsNotTrustedByDefault(t *testing.T) {
	args := without(base(t, relay(t, "relay-a", simDir, snpsim.Options{})), "--allow-simulated-root")
	wantFailed(t, verifyRelay(t, args...), "amd_chain")
}

// A report from a chain no one pinned (another chip, another root).
func TestReportFromAnotherRootFails(t *testing.T) {
	wantFailed(t, verifyRelay(t, base(t, relay(t, "relay-a", otherSim, snpsim.Options{}))...), "amd_chain")
}

// relay-a asked about, relay-b's keys answering (another relay's answer
// presented as this one's): the report binds relay-b's identities and its
// signing key is not certified by relay-a's master identity.
func TestAnotherRelaysAnswerFails(t *testing.T) {
	wantFailed(t, verifyRelay(t, base(t, relay(t, "relay-b", simDir, snpsim.Options{}))...), "report_data", "signing_cert")
}

// The genuine relay, checked against another fingerprint's identity (what
// the directory lists for relay-b).
func TestWrongIdentityFails(t *testing.T) {
	args := base(t, relay(t, "relay-a", simDir, snpsim.Options{}))
	args = with(with(args, "--fingerprint", fingerprint(t, "relay-b")), "--ed25519-id", ed25519ID(t, "relay-b"))
	wantFailed(t, verifyRelay(t, args...), "report_data", "signing_cert")
}

func TestMeasurementNotInLogFails(t *testing.T) {
	r := verifyRelay(t, base(t, relay(t, "relay-a", simDir, snpsim.Options{Measurement: bytes.Repeat([]byte{0x43}, 48)}))...)
	wantFailed(t, r, "measurement_in_log")
	if !strings.Contains(r.stdout, "is not in the log") {
		t.Fatalf("%s", r.stdout)
	}
}

// An image digest other than the log's for this measurement.
func TestOtherImageDigestFails(t *testing.T) {
	args := with(base(t, relay(t, "relay-a", simDir, snpsim.Options{})), "--image-digest", strings.Repeat("ef", 32))
	wantFailed(t, verifyRelay(t, args...), "report_data", "measurement_in_log")
}

func TestTCBBelowMinimumFails(t *testing.T) {
	old := kds.TCBParts{BlSpl: 3, SnpSpl: 22, UcodeSpl: 213} // before AMD-SB-3019's fix (snp 24 on Milan)
	wantFailed(t, verifyRelay(t, base(t, relay(t, "relay-a", simDir, snpsim.Options{TCB: &old}))...), "tcb")
}

func TestDebugPolicyFails(t *testing.T) {
	r := verifyRelay(t, base(t, relay(t, "relay-a", simDir, snpsim.Options{Policy: snpsim.DefaultPolicy | 1<<19}))...)
	// The log records the policy the image launches with (0x30000): a debugging one is not it either.
	wantFailed(t, r, "policy", "measurement_in_log")
	if !strings.Contains(r.stdout, "policy-debug") {
		t.Fatalf("%s", r.stdout)
	}
}

// The measurement does not cover the guest policy: a report whose policy
// passes the policy line (SMT off, stricter than the logged 0x30000) but is
// not the one the log records for the image fails measurement_in_log.
func TestPolicyOtherThanLoggedFails(t *testing.T) {
	r := verifyRelay(t, base(t, relay(t, "relay-a", simDir, snpsim.Options{Policy: snpsim.DefaultPolicy &^ (1 << 16)}))...)
	wantFailed(t, r, "measurement_in_log")
	if !strings.Contains(r.stdout, "with guest policy 0x30000, but the report's policy is 0x20000") {
		t.Fatalf("%s", r.stdout)
	}
}

func TestSMTNeedsItsFlag(t *testing.T) {
	args := with(base(t, relay(t, "relay-a", simDir, snpsim.Options{})), "--allow-smt")
	wantFailed(t, verifyRelay(t, args...), "policy")
}

// A saved answer is checked again later: with the nonce it answered it
// passes; presented as the answer to another nonce (a replay) it fails
// freshness alone.
func TestReplayedAnswerFails(t *testing.T) {
	saved := filepath.Join(t.TempDir(), "answer.json")
	args := with(base(t, relay(t, "relay-a", simDir, snpsim.Options{})), "--save", saved)
	r := verifyRelay(t, args...)
	wantFailed(t, r)
	_, after, ok := strings.Cut(r.stderr, "it answers --nonce ")
	if !ok || len(after) < 64 {
		t.Fatalf("no nonce printed: %q", r.stderr)
	}
	nonce := after[:64]
	again := with(without(without(args, "--address"), "--save"), "--evidence", saved)
	wantFailed(t, verifyRelay(t, with(again, "--nonce", nonce)...))
	other := strings.Repeat("0", 63) + "1"
	wantFailed(t, verifyRelay(t, with(again, "--nonce", other)...), "freshness")
}

// git runs plain git, as the tamperer would.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull, "LC_ALL=C",
		"GIT_AUTHOR_NAME=x", "GIT_AUTHOR_EMAIL=x@example.org", "GIT_COMMITTER_NAME=x", "GIT_COMMITTER_EMAIL=x@example.org")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// rewrittenLog is a copy of the log whose one entry was changed (its time)
// and recommitted, signed by signKey (or unsigned), in place of the
// original.
func rewrittenLog(t *testing.T, signKey string) (copyDir, oldHead string) {
	t.Helper()
	dir := t.TempDir()
	copyDir = filepath.Join(dir, "log")
	git(t, dir, "clone", "--quiet", "--bare", "--", logDir, copyDir)
	oldHead = strings.TrimSpace(git(t, dir, "--git-dir="+copyDir, "rev-parse", "refs/heads/main"))
	work := filepath.Join(dir, "work")
	git(t, dir, "clone", "--quiet", "--", copyDir, work)
	entry := filepath.Join(work, "entries", "000001.json")
	data, err := os.ReadFile(entry)
	if err != nil {
		t.Fatal(err)
	}
	changed := bytes.Replace(data, []byte("2026-12-06T08:00:00Z"), []byte("2026-12-06T09:00:00Z"), 1)
	if bytes.Equal(changed, data) {
		t.Fatal("fixture: the entry's time not found")
	}
	if err := os.WriteFile(entry, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	commit := []string{"commit", "--quiet", "--amend", "--all", "--no-edit"}
	if signKey != "" {
		commit = append([]string{"-c", "gpg.format=ssh", "-c", "user.signingkey=" + signKey}, append(commit, "--gpg-sign")...)
	} else {
		commit = append(commit, "--no-gpg-sign")
	}
	git(t, work, commit...)
	git(t, dir, "--git-dir="+copyDir, "fetch", "--quiet", "--update-head-ok", "--", work, "+refs/heads/main:refs/heads/main")
	return copyDir, oldHead
}

// A log copy whose entry was rewritten: unsigned, it fails the signature
// check; re-signed by the operator's own key, only the head the volunteer
// saw before (--log-seen) shows the rewrite. Either way measurement_in_log
// fails, though the rewritten log still lists the measurement.
func TestRewrittenLogFails(t *testing.T) {
	address := relay(t, "relay-a", simDir, snpsim.Options{})
	unsigned, _ := rewrittenLog(t, "")
	r := verifyRelay(t, with(base(t, address), "--log", unsigned)...)
	wantFailed(t, r, "measurement_in_log")
	if !strings.Contains(r.stdout, "does not verify") {
		t.Fatalf("%s", r.stdout)
	}
	resigned, seen := rewrittenLog(t, logKey)
	wantFailed(t, verifyRelay(t, with(base(t, address), "--log", resigned)...))
	r = verifyRelay(t, with(with(base(t, address), "--log", resigned), "--log-seen", seen)...)
	wantFailed(t, r, "measurement_in_log")
	if !strings.Contains(r.stdout, "extends") {
		t.Fatalf("%s", r.stdout)
	}
	wantFailed(t, verifyRelay(t, with(base(t, address), "--log-seen", seen)...))
}

// The identity from tor's documents: a real test network's consensus and
// microdescriptors (internal/tordoc/testdata). Its relay testauth1 did not
// make this answer, so the answer fails against the identity the
// directory lists for it, and the line names that identity, which tor
// itself wrote into testauth1's fingerprint-ed25519 file.
func TestIdentityFromConsensus(t *testing.T) {
	docs := "../../internal/tordoc/testdata"
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(docs, "auth1", name))
		if err != nil {
			t.Fatal(err)
		}
		_, v, _ := strings.Cut(strings.TrimSpace(string(data)), " ")
		return v
	}
	args := base(t, relay(t, "relay-a", simDir, snpsim.Options{}))
	args = with(without(args, "--ed25519-id"), "--fingerprint", read("fingerprint"))
	args = append(args, "--consensus", filepath.Join(docs, "cached-microdesc-consensus"), "--microdescs", filepath.Join(docs, "cached-microdescs"))
	r := verifyRelay(t, args...)
	wantFailed(t, r, "report_data", "signing_cert")
	if !strings.Contains(r.stdout, read("fingerprint-ed25519")) || !strings.Contains(r.stdout, "microdescriptor") {
		t.Fatalf("the lines do not name testauth1's identity from the consensus:\n%s", r.stdout)
	}
	// The same files as a tor client's DataDirectory.
	dataDir := append(without(without(args, "--consensus"), "--microdescs"), "--tor-data-dir", docs)
	r = verifyRelay(t, dataDir...)
	wantFailed(t, r, "report_data", "signing_cert")
	if !strings.Contains(r.stdout, read("fingerprint-ed25519")) {
		t.Fatalf("--tor-data-dir: the lines do not name testauth1's identity:\n%s", r.stdout)
	}
	// A fingerprint the consensus does not list: no verdicts, an error.
	args = with(args, "--fingerprint", strings.Repeat("AB", 20))
	r = verifyRelay(t, args...)
	if r.code != 1 || !strings.Contains(r.stderr, "is not in this consensus") || r.stdout != "" {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// Without --address, the relay is asked at the IPv4 address the consensus
// lists for its fingerprint, on --port. Here testauth1's "r" line in a copy
// of the consensus is edited to point at a relay on loopback: its answer
// arrives, so the address came from the consensus (the answer is relay-a's,
// not testauth1's, so report_data and signing_cert fail as in
// TestIdentityFromConsensus).
func TestAddressFromConsensus(t *testing.T) {
	docs := "../../internal/tordoc/testdata"
	fp, err := os.ReadFile(filepath.Join(docs, "auth1", "fingerprint"))
	if err != nil {
		t.Fatal(err)
	}
	_, authFP, _ := strings.Cut(strings.TrimSpace(string(fp)), " ")
	addr := relay(t, "relay-a", simDir, snpsim.Options{})
	host, port, _ := strings.Cut(addr, ":")
	consensus, err := os.ReadFile(filepath.Join(docs, "cached-microdesc-consensus"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(consensus), "\n")
	edited := 0
	for i, line := range lines {
		if f := strings.Fields(line); len(f) == 8 && f[0] == "r" && f[1] == "testauth1" {
			f[5] = host
			lines[i], edited = strings.Join(f, " "), edited+1
		}
	}
	if edited != 1 {
		t.Fatalf("%d r lines of testauth1 in the fixture, want 1", edited)
	}
	copyOf := filepath.Join(t.TempDir(), "cached-microdesc-consensus")
	if err := os.WriteFile(copyOf, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	args := without(without(base(t, addr), "--ed25519-id"), "--address")
	args = append(without(args, "--fingerprint"), "--port", port, "--consensus", copyOf, "--microdescs", filepath.Join(docs, "cached-microdescs"), authFP)
	r := verifyRelay(t, args...)
	wantFailed(t, r, "report_data", "signing_cert")
	if !strings.Contains(r.stderr, "asking "+host+":"+port+" (the consensus's address for "+authFP) {
		t.Fatalf("does not say it asks the consensus's address:\n%s", r.stderr)
	}
}

func TestCommandLine(t *testing.T) {
	good := base(t, "127.0.0.1:1")
	for name, args := range map[string][]string{
		"no fingerprint":     without(good, "--fingerprint"),
		"two positionals":    append(without(good, "--fingerprint"), fingerprint(t, "relay-a"), "extra"),
		"id without address": without(good, "--address"),
		"port out of range":  append(good, "--port", "65536"),
		"no min-tcb":         without(good, "--min-tcb"),
		"two identities":     append(good, "--tor-data-dir", "/nonexistent"),
		"evidence and addr":  append(good, "--evidence", "x", "--nonce", "00"),
		"consensus alone":    append(without(good, "--ed25519-id"), "--consensus", "x"),
		"a positional":       append(good, "extra"),
		"nonce with address": append(good, "--nonce", "00"),
	} {
		if r := verifyRelay(t, args...); r.code != 2 || r.stdout != "" {
			t.Errorf("%s: exit %d, want 2\n%s%s", name, r.code, r.stdout, r.stderr)
		}
	}
	// A relay that does not answer: an error, no verdict lines; the same with the fingerprint as the positional argument.
	if r := verifyRelay(t, good...); r.code != 1 || r.stdout != "" {
		t.Errorf("unreachable relay: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := verifyRelay(t, append(without(good, "--fingerprint"), fingerprint(t, "relay-a"))...); r.code != 1 || r.stdout != "" {
		t.Errorf("fingerprint as positional, unreachable relay: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// First, as the README writes it (npm run verify-relay -- FINGERPRINT --tor-data-dir …): the flags after it count.
	first := append([]string{fingerprint(t, "relay-a")}, without(good, "--fingerprint")...)
	if r := verifyRelay(t, first...); r.code != 1 || r.stdout != "" || strings.Contains(r.stderr, "usage") {
		t.Errorf("fingerprint first, unreachable relay: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := verifyRelay(t, append(first, "--", "extra")...); r.code != 2 {
		t.Errorf("a second positional after --: exit %d, want 2", r.code)
	}
}

// The tcb line names the floor that applied, and says so loudly when the
// given --min-tcb sets none for the report's product line (the simulator
// is a Milan).
func TestTCBLineNamesTheFloor(t *testing.T) {
	args := base(t, relay(t, "relay-a", simDir, snpsim.Options{}))
	r := verifyRelay(t, args...)
	wantFailed(t, r)
	if !strings.Contains(r.stdout, "snp=24,ucode=213 (the floor for Milan)") {
		t.Fatalf("amd-sb-3019's Milan floor not named:\n%s", r.stdout)
	}
	r = verifyRelay(t, with(args, "--min-tcb", "Genoa:snp=23")...)
	wantFailed(t, r)
	if !strings.Contains(r.stdout, "NO FLOOR") {
		t.Fatalf("a missing floor is not named:\n%s", r.stdout)
	}
}
