package broker_test

// What an unauthenticated client on the internet can do to the broker, and
// what it must not be able to: each test here failed against the broker
// before these limits existed.

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"diskless-relays/tools/broker/internal/broker"
	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/snpcheck"
	"diskless-relays/tools/broker/internal/snpsim"
	"diskless-relays/tools/broker/internal/store"
)

// enrolledSNP enrols relay with keys and one SNP image; returns the image's digest and measurement.
func enrolledSNP(t *testing.T, e *env, relay string) (digest string, m []byte) {
	t.Helper()
	digest, m = randDigest(t), measurement(t)
	e.uploadKeys(relay, relayFiles(t))
	e.registerSNP(relay, digest, m)
	return digest, m
}

func ageIdentity(t *testing.T) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func logFileSize(t *testing.T, e *env, name string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(e.dataDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// One 1 MiB attest with an unknown field once put 6 MB into the log, and the
// admin log API answered 500 from then on.
func TestLogPoisoningIsBounded(t *testing.T) {
	e := newEnv(t, envOptions{})
	field := strings.Repeat("a", int(protocol.MaxRequestSize)-64)
	status, _ := e.do(http.MethodPost, "/v1/relays/victim/attest", "", json.RawMessage(`{"session":"x","`+field+`":1}`))
	if status != http.StatusBadRequest {
		t.Fatalf("attest with an unknown field: %d", status)
	}
	if size := logFileSize(t, e, store.LogFile); size > 4<<10 {
		t.Fatalf("one refused request put %d bytes into the log", size)
	}
	status, data := e.do(http.MethodGet, "/v1/admin/log", e.adminToken, nil)
	if status != http.StatusOK {
		t.Fatalf("admin log after the request: %d %s", status, data)
	}
	var entry store.LogEntry
	if err := json.Unmarshal(data, &entry); err != nil || len(entry.Detail) > store.MaxLogDetail+32 || !strings.Contains(entry.Detail, "bytes more]") {
		t.Fatalf("logged detail (%d bytes) is not cut: %v %.200s", len(entry.Detail), err, data)
	}
}

// A field name with a newline, quoted by the JSON decoder's error, once
// started a line of its own in the operator's log.
func TestOperatorLogCannotBeForged(t *testing.T) {
	e := newEnv(t, envOptions{})
	status, _ := e.do(http.MethodPost, "/v1/relays/victim/attest", "", json.RawMessage(`{"session":"x","a\nkey-broker: released relay=forged":1}`))
	if status != http.StatusBadRequest {
		t.Fatalf("attest: %d", status)
	}
	out := e.logBuf.String()
	if strings.Contains(out, "\nkey-broker: released relay=forged") {
		t.Fatalf("a client wrote a line of its own into the operator's log:\n%s", out)
	}
	if !strings.Contains(out, `a\nkey-broker: released relay=forged`) {
		t.Fatalf("the refusal is not logged with the newline escaped:\n%s", out)
	}
}

// A line longer than the reader's limit (an older broker's) is skipped, and
// the log still reads.
func TestLogReaderSkipsOverlongLines(t *testing.T) {
	e := newEnv(t, envOptions{})
	long := `{"relay":"victim","verdict":"refused","detail":"` + strings.Repeat("x", 2<<20) + `"}` + "\n"
	if err := os.WriteFile(filepath.Join(e.dataDir, store.LogFile), []byte(long), 0o600); err != nil {
		t.Fatal(err)
	}
	e.do(http.MethodPost, "/v1/relays/victim/attest", "", protocol.AttestRequest{Session: "nope"})
	entries := e.logEntries("victim")
	if len(entries) != 1 || entries[0].Reason != "unknown-session" {
		t.Fatalf("log after an over-long line: %+v", entries)
	}
}

// The log rotates: it never holds more than twice its bound, and reads
// across both files, oldest first.
func TestLogRotates(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.st.MaxLogBytes = 32 << 10
	for i := 0; i < 400; i++ {
		e.do(http.MethodPost, "/v1/relays/victim/attest", "", protocol.AttestRequest{Session: strings.Repeat("s", 60)})
	}
	if cur, old := logFileSize(t, e, store.LogFile), logFileSize(t, e, store.LogFile+".1"); cur > 32<<10 || old > 32<<10 {
		t.Fatalf("log files of %d and %d bytes, bound %d", cur, old, 32<<10)
	}
	entries := e.logEntries("victim")
	if len(entries) < 100 || len(entries) >= 400 {
		t.Fatalf("%d entries read back across the rotated files", len(entries))
	}
}

// Challenges went to any well-formed name: 64 invented names × 64 filled
// every slot, and a genuine relay got 503. Now only an enrolled relay's
// registered image gets one.
func TestChallengesOnlyForRegisteredImages(t *testing.T) {
	e := newEnv(t, envOptions{})
	d := randDigest(t)
	e.uploadKeys("genuine", relayFiles(t))
	e.registerSNP("genuine", d, measurement(t))
	for i := 0; i < 64; i++ {
		for j := 0; j < 64; j++ {
			status, body := e.do(http.MethodPost, "/v1/relays/invented-"+strconv.Itoa(i)+"/challenge", "", protocol.ChallengeRequest{ImageDigest: d, Purpose: "boot"})
			if status != http.StatusForbidden || !strings.Contains(string(body), broker.CodeNotEnrolled) {
				t.Fatalf("challenge for an invented relay: %d %s", status, body)
			}
		}
	}
	// An enrolled relay, with a digest nobody registered: refused too.
	if status, body := e.do(http.MethodPost, "/v1/relays/genuine/challenge", "", protocol.ChallengeRequest{ImageDigest: randDigest(t), Purpose: "boot"}); status != http.StatusForbidden || !strings.Contains(string(body), broker.CodeUnregisteredImage) {
		t.Fatalf("challenge for an unregistered image: %d %s", status, body)
	}
	e.challenge("genuine", d, "boot")
}

// One address gets DefaultSourceBurst requests at once and then a few a
// second; the bucket refills with time.
func TestPerSourceRateLimit(t *testing.T) {
	e := newEnv(t, envOptions{sourceRate: 1, sourceBurst: 5})
	d, _ := enrolledSNP(t, e, "r")
	for i := 0; i < 5; i++ {
		e.challenge("r", d, "boot")
	}
	status, body := e.do(http.MethodPost, "/v1/relays/r/challenge", "", protocol.ChallengeRequest{ImageDigest: d, Purpose: "boot"})
	if status != http.StatusTooManyRequests || !strings.Contains(string(body), "too many requests from this address") {
		t.Fatalf("6th request at once: %d %s", status, body)
	}
	// Attests count against the same budget.
	if status, _ := e.do(http.MethodPost, "/v1/relays/r/attest", "", protocol.AttestRequest{Session: "x"}); status != http.StatusTooManyRequests {
		t.Fatalf("attest over the limit: %d", status)
	}
	e.clock.Advance(2 * time.Second)
	e.challenge("r", d, "boot")
	e.challenge("r", d, "boot")
	if status, _ := e.do(http.MethodPost, "/v1/relays/r/challenge", "", protocol.ChallengeRequest{ImageDigest: d, Purpose: "boot"}); status != http.StatusTooManyRequests {
		t.Fatalf("a third request after 2 s at 1/s: %d", status)
	}
}

// Anyone could take a challenge for an enrolled relay and send junk; the
// refusal then became the relay's lastRefusal, which status and the rollout
// gate show. Only genuine evidence sets it now.
func TestLastRefusalNeedsGenuineEvidence(t *testing.T) {
	e := newEnv(t, envOptions{})
	d, _ := enrolledSNP(t, e, "r")
	forged := randBytes(t, 1184)
	ch := e.challenge("r", d, "boot")
	id := ageIdentity(t)
	if status, eb, _ := e.attest("r", protocol.AttestRequest{Session: ch.Session, Recipient: id.Recipient().String(), Evidence: protocol.Evidence{Kind: "snp", Report: forged}}); status == http.StatusOK {
		t.Fatalf("a forged report was accepted: %+v", eb)
	}
	if rs := e.relayStatus("r"); rs.LastRefusal != nil {
		t.Fatalf("a forged report set the relay's last refusal: %+v", rs.LastRefusal)
	}
	// A genuine report refused for its measurement does set it, with the root that verified it.
	ch = e.challenge("r", d, "boot")
	rep, certs, err := simFor(t, trustedSimDir, measurement(t), policyNoSMT).Report(protocol.ReportData("r", d, "boot", ch.Nonce, id.Recipient().String(), nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, eb, _ := e.attest("r", protocol.AttestRequest{Session: ch.Session, Recipient: id.Recipient().String(), Evidence: protocol.Evidence{Kind: "snp", Report: rep, Certs: certs}}); eb.Error.Code != snpcheck.CodeMeasurement {
		t.Fatalf("genuine report, wrong measurement: %+v", eb)
	}
	rs := e.relayStatus("r")
	if rs.LastRefusal == nil || rs.LastRefusal.Reason != snpcheck.CodeMeasurement || !strings.HasPrefix(rs.LastRefusal.Root, "simulated/") {
		t.Fatalf("last refusal after a genuine report: %+v", rs.LastRefusal)
	}
	if le := e.lastAttestLog("r"); !strings.HasPrefix(le.Root, "simulated/") {
		t.Fatalf("the log does not say the simulator's root verified the report: %+v", le)
	}
}

// A report requested below VMPL 0 does not speak for the whole guest.
func TestReportBelowVMPL0IsRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	d, m := enrolledSNP(t, e, "r")
	sim, err := snpsim.Load(trustedSimDir, snpsim.Options{Measurement: m, Policy: policyNoSMT, VMPL: 1})
	if err != nil {
		t.Fatal(err)
	}
	err = e.newAgent(agentSetup{relay: "r", digest: d, attestation: "snp", torDir: filepath.Join(t.TempDir(), "tor"), source: simSource(sim)}).Fetch(context.Background())
	mustRefusal(t, err, snpcheck.CodeVMPL)
}

// A push within every push limit could make the merged bundle (with the
// identity and family keys the operator shipped) exceed MaxBundleSize; the
// relay's own agent then refused its next boot. The broker refuses such a
// push and keeps the bundle it had.
func TestPushThatWouldOverflowTheBundleIsRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	relay, digest, m := "r", randDigest(t), measurement(t)
	files := relayFiles(t)
	// What a push keeps of the stored bundle: the shipped files (a push replaces every mutable one).
	total := 0
	for name, data := range files {
		if protocol.IsShippedFile(name) {
			total += len(data)
		}
	}
	// Family keys fill the bundle to just under its limit.
	for i := 0; total+protocol.MaxFileSize < protocol.MaxBundleSize-4096; i++ {
		files["keys/family"+strconv.Itoa(i)+".secret_family_key"] = randBytes(t, protocol.MaxFileSize)
		total += protocol.MaxFileSize
	}
	e.uploadKeys(relay, files)
	e.registerSNP(relay, digest, m)
	state := randBytes(t, protocol.MaxBundleSize-total+1)
	if len(state) > protocol.MaxFileSize {
		t.Fatalf("test set-up: a state of %d bytes is over the per-file limit itself", len(state))
	}
	req := pushRequest(t, e, relay, digest, m, protocol.PushPlaintext{Relay: relay, Files: protocol.Files{"state": state}})
	if status, eb, _ := e.attest(relay, req); status != http.StatusForbidden || eb.Error.Code != broker.CodePushTooLarge {
		t.Fatalf("push overflowing the merged bundle: %d %+v", status, eb)
	}
	stored, err := e.st.LoadBundle(relay)
	if err != nil || string(stored["state"]) != string(files["state"]) {
		t.Fatalf("the stored bundle changed: %v", err)
	}
}
