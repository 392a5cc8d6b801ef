package broker_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/google/go-sev-guest/kds"

	"diskless-relays/tools/broker/internal/agecrypt"
	"diskless-relays/tools/broker/internal/broker"
	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/snpcheck"
)

const (
	policyNoSMT     = 0x20000         // reserved bit 17 only
	policySMT       = 0x30000         // + SMT
	policyDebug     = 0x20000 | 1<<19 // + debug
	policyMigration = 0x20000 | 1<<18 // + migration agent
	policyDebugSMT  = policyDebug | 1<<16
)

func measurement(t testing.TB) []byte { return randBytes(t, 48) }

// checkInstalled asserts that dir holds exactly want, byte for byte, with
// modes 0600 (files) / 0700 (directories) and the tor owner.
func checkInstalled(t *testing.T, dir string, want protocol.Files) {
	t.Helper()
	uid, gid := torIDs()
	for _, d := range []string{dir, filepath.Join(dir, "keys")} {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o700 || !st.IsDir() {
			t.Errorf("%s: mode %v, want dir 0700", d, st.Mode())
		}
		checkOwner(t, d, st, uid, gid)
	}
	got := dirFiles(t, dir)
	if len(got) != len(want) {
		t.Errorf("files in %s: %v, want %s", dir, got, fmtFiles(want))
	}
	for name, data := range want {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(b, data) {
			t.Errorf("%s: content differs from the uploaded/pushed file", name)
		}
		st, _ := os.Stat(p)
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, st.Mode().Perm())
		}
		checkOwner(t, p, st, uid, gid)
	}
}

func checkOwner(t *testing.T, p string, st os.FileInfo, uid, gid int) {
	t.Helper()
	sys := st.Sys().(*syscall.Stat_t)
	if int(sys.Uid) != uid || int(sys.Gid) != gid {
		t.Errorf("%s: owner %d:%d, want %d:%d", p, sys.Uid, sys.Gid, uid, gid)
	}
}

func TestBootReleaseSNP(t *testing.T) {
	e := newEnv(t, envOptions{})
	relay, digest, m := "relay-one", randDigest(t), measurement(t)
	files := relayFiles(t)
	e.uploadKeys(relay, files)
	e.registerSNP(relay, digest, measurement(t), m) // two measurements; the second matches
	torDir := filepath.Join(t.TempDir(), "tor")
	a := e.newAgent(agentSetup{relay: relay, digest: digest, attestation: "snp", torDir: torDir,
		source: simSource(simFor(t, trustedSimDir, m, policyNoSMT))})
	if err := a.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkInstalled(t, torDir, files)

	le := e.lastAttestLog(relay)
	if le.Verdict != "released" || le.Purpose != "boot" || le.ImageDigest != digest || le.Measurement != hex.EncodeToString(m) || le.ReportedTCB == "" || le.Policy != "0x20000" {
		t.Errorf("log entry: %+v", le)
	}
	rs := e.relayStatus(relay)
	if rs.LastAttestation == nil || rs.LastAttestation.Verdict != "released" || rs.LastAttestation.Measurement != hex.EncodeToString(m) || rs.LastAttestation.ReportedTCB == "" {
		t.Errorf("status last attestation: %+v", rs.LastAttestation)
	}
	if rs.Stale || rs.Revoked || !rs.HasKeys || len(rs.Images) != 1 || len(rs.Images[0].Measurements) != 2 {
		t.Errorf("status: %+v", rs)
	}
}

func TestBootReleaseToken(t *testing.T) {
	e := newEnv(t, envOptions{})
	relay, digest := "tok-relay", randDigest(t)
	files := relayFiles(t)
	token := []byte(base64.RawURLEncoding.EncodeToString(randBytes(t, 32)))
	e.uploadKeys(relay, files)
	e.registerToken(relay, digest, token)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, append(token, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	torDir := filepath.Join(t.TempDir(), "tor")
	a := e.newAgent(agentSetup{relay: relay, digest: digest, attestation: "none", torDir: torDir, tokenFile: tokenFile})
	if err := a.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkInstalled(t, torDir, files)
	if le := e.lastAttestLog(relay); le.Verdict != "released" || le.EvidenceKind != "token" {
		t.Errorf("log entry: %+v", le)
	}
	if !e.relayStatus(relay).Images[0].TokenConsumed {
		t.Error("token not marked consumed")
	}

	// Token mode push: authenticated by the per-boot push secret.
	onion := randBytes(t, 96)
	if err := os.WriteFile(filepath.Join(torDir, "keys/secret_onion_key_ntor"), onion, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Push(context.Background()); err != nil {
		t.Fatal(err)
	}
	if le := e.lastAttestLog(relay); le.Verdict != "accepted" || le.Purpose != "push" {
		t.Errorf("log entry: %+v", le)
	}
	b, err := e.st.LoadBundle(relay)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b["keys/secret_onion_key_ntor"], onion) {
		t.Error("pushed onion key not stored")
	}
	// The broker stores only the hash of the push secret.
	secret, _ := os.ReadFile(filepath.Join(filepath.Dir(torDir), "run-tor", "push-secret"))
	if len(secret) != 32 {
		t.Fatalf("push secret file: %d bytes", len(secret))
	}
	scanAtRest(t, e.dataDir, map[string][]byte{"push secret": secret, "token": token})

	// A wrong push secret is refused.
	if err := os.WriteFile(filepath.Join(filepath.Dir(torDir), "run-tor", "push-secret"), randBytes(t, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRefusal(t, a.Push(context.Background()), broker.CodeBadPushSecret)
	if le := e.lastAttestLog(relay); le.Reason != broker.CodeBadPushSecret {
		t.Errorf("log entry: %+v", le)
	}

	// Re-arm: a new token for the same image allows the next boot.
	token2 := []byte(base64.RawURLEncoding.EncodeToString(randBytes(t, 32)))
	e.registerToken(relay, digest, token2)
	if err := os.WriteFile(tokenFile, token2, 0o600); err != nil {
		t.Fatal(err)
	}
	torDir2 := filepath.Join(t.TempDir(), "tor")
	a2 := e.newAgent(agentSetup{relay: relay, digest: digest, attestation: "none", torDir: torDir2, tokenFile: tokenFile})
	if err := a2.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// refusalCase sets up one way of being refused; fetch must fail with code
// and write nothing.
type refusalCase struct {
	name  string
	env   envOptions
	setup func(t *testing.T, e *env, relay string, s *agentSetup)
	code  string
}

// The refusals that come after the evidence proved genuine.
var genuineRefusal = map[string]bool{
	snpcheck.CodeMeasurement: true, snpcheck.CodePolicyDebug: true, snpcheck.CodePolicyMigration: true,
	snpcheck.CodePolicySMT: true, snpcheck.CodeTCB: true, broker.CodeTokenReused: true,
}

func TestRefusals(t *testing.T) {
	snpImage := func(policy uint64, simDir string, registered, reported []byte) func(*testing.T, *env, string, *agentSetup) {
		return func(t *testing.T, e *env, relay string, s *agentSetup) {
			e.registerSNP(relay, s.digest, registered)
			s.attestation = "snp"
			s.source = simSource(simFor(t, simDir, reported, policy))
		}
	}
	m := randBytes(t, 48)
	other := randBytes(t, 48)
	cases := []refusalCase{
		{"wrong measurement", envOptions{}, snpImage(policyNoSMT, trustedSimDir, m, other), snpcheck.CodeMeasurement},
		{"debug policy", envOptions{}, snpImage(policyDebug, trustedSimDir, m, m), snpcheck.CodePolicyDebug},
		{"debug policy even with SMT allowed", envOptions{allowSMT: true}, snpImage(policyDebugSMT, trustedSimDir, m, m), snpcheck.CodePolicyDebug},
		{"migration agent", envOptions{}, snpImage(policyMigration, trustedSimDir, m, m), snpcheck.CodePolicyMigration},
		{"smt not allowed", envOptions{}, snpImage(policySMT, trustedSimDir, m, m), snpcheck.CodePolicySMT},
		{"untrusted chain", envOptions{}, snpImage(policyNoSMT, untrustedSimDir, m, m), snpcheck.CodeVerification},
		{"simulated chain not allowed", envOptions{noSimulatedRoots: true}, snpImage(policyNoSMT, trustedSimDir, m, m), snpcheck.CodeVerification},
		{"tcb below minimum", envOptions{minTCB: "bl=3,tee=0,snp=25,ucode=0"}, snpImage(policyNoSMT, trustedSimDir, m, m), snpcheck.CodeTCB},
		{"tcb below the product line's minimum", envOptions{minTCB: "bl=0 Milan:snp=25"}, snpImage(policyNoSMT, trustedSimDir, m, m), snpcheck.CodeTCB},
		{"firmware older than AMD-SB-3019's fix", envOptions{minTCB: "amd-sb-3019"}, func(t *testing.T, e *env, relay string, s *agentSetup) {
			e.registerSNP(relay, s.digest, m)
			s.attestation = "snp"
			s.source = simSource(simWithTCB(t, trustedSimDir, m, policyNoSMT, &kds.TCBParts{BlSpl: 3, SnpSpl: 23, UcodeSpl: 213}))
		}, snpcheck.CodeTCB},
		{"revoked relay", envOptions{}, func(t *testing.T, e *env, relay string, s *agentSetup) {
			snpImage(policyNoSMT, trustedSimDir, m, m)(t, e, relay, s)
			e.admin(http.MethodPost, "/v1/admin/relays/"+relay+"/revoke", nil)
		}, broker.CodeRevoked},
		{"retired image", envOptions{}, func(t *testing.T, e *env, relay string, s *agentSetup) {
			snpImage(policyNoSMT, trustedSimDir, m, m)(t, e, relay, s)
			e.admin(http.MethodDelete, "/v1/admin/relays/"+relay+"/images/"+s.digest, nil)
		}, broker.CodeRetiredImage},
		{"unregistered image", envOptions{}, func(t *testing.T, e *env, relay string, s *agentSetup) {
			snpImage(policyNoSMT, trustedSimDir, m, m)(t, e, relay, s)
			s.digest = randDigest(t) // the agent runs an image nobody registered
		}, broker.CodeUnregisteredImage},
		{"unknown relay", envOptions{}, func(t *testing.T, e *env, relay string, s *agentSetup) {
			snpImage(policyNoSMT, trustedSimDir, m, m)(t, e, relay, s)
			s.relay = "someone-else"
		}, broker.CodeNotEnrolled},
		{"bad token", envOptions{}, func(t *testing.T, e *env, relay string, s *agentSetup) {
			e.registerToken(relay, s.digest, []byte("the-registered-token-0123456789"))
			s.attestation = "none"
			if err := os.WriteFile(s.tokenFile, []byte("a-different-token-0123456789abc"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, broker.CodeBadToken},
		{"token reuse", envOptions{}, func(t *testing.T, e *env, relay string, s *agentSetup) {
			tok := []byte("the-registered-token-0123456789")
			e.registerToken(relay, s.digest, tok)
			s.attestation = "none"
			if err := os.WriteFile(s.tokenFile, tok, 0o600); err != nil {
				t.Fatal(err)
			}
			first := *s
			first.torDir = filepath.Join(t.TempDir(), "first-boot")
			if err := e.newAgent(first).Fetch(context.Background()); err != nil {
				t.Fatalf("first boot: %v", err)
			}
		}, broker.CodeTokenReused},
		{"snp evidence for a token image", envOptions{}, func(t *testing.T, e *env, relay string, s *agentSetup) {
			e.registerToken(relay, s.digest, []byte("the-registered-token-0123456789"))
			s.attestation = "snp"
			s.source = simSource(simFor(t, trustedSimDir, m, policyNoSMT))
		}, broker.CodeEvidenceKind},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, c.env)
			relay := "relay-x"
			e.uploadKeys(relay, relayFiles(t))
			tmp := t.TempDir()
			s := agentSetup{relay: relay, digest: randDigest(t), torDir: filepath.Join(tmp, "tor"), tokenFile: filepath.Join(tmp, "token")}
			c.setup(t, e, relay, &s)
			err := e.newAgent(s).Fetch(context.Background())
			mustRefusal(t, err, c.code)
			if got := dirFiles(t, s.torDir); len(got) != 0 {
				t.Errorf("agent wrote %v after a refusal", got)
			}
			if s.relay == relay {
				le := e.lastAttestLog(relay)
				if le.Verdict != "refused" || le.Reason != c.code || le.Detail == "" {
					t.Errorf("log entry: %+v", le)
				}
				// Only genuine evidence (a report chained to a trusted root, the
				// registered token) sets the relay's last refusal: anything
				// anyone could send, or a refused challenge, leaves it alone.
				rs := e.relayStatus(relay)
				if genuineRefusal[c.code] {
					if rs.LastRefusal == nil || rs.LastRefusal.Reason != c.code {
						t.Errorf("status last refusal: %+v", rs.LastRefusal)
					}
				} else if rs.LastRefusal != nil {
					t.Errorf("a refusal of %s set the status' last refusal: %+v", c.code, rs.LastRefusal)
				}
			} else {
				// Refusals for relays that are not enrolled are logged too.
				lines, err := e.st.ReadLog(s.relay)
				if err != nil || len(lines) != 1 || !bytes.Contains(lines[0], []byte(c.code)) {
					t.Errorf("log of %s: %q %v", s.relay, lines, err)
				}
			}
			t.Logf("refused as expected: %v", err)
		})
	}
}

// manualBoot does a boot attestation by hand, returning the request so that
// a test can replay or alter it.
func manualBootRequest(t *testing.T, e *env, relay, digest string, m []byte) (protocol.ChallengeResponse, protocol.AttestRequest, *age.X25519Identity) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	ch := e.challenge(relay, digest, "boot")
	rd := protocol.ReportData(relay, digest, "boot", ch.Nonce, id.Recipient().String(), nil)
	rep, certs, err := simFor(t, trustedSimDir, m, policyNoSMT).Report(rd)
	if err != nil {
		t.Fatal(err)
	}
	return ch, protocol.AttestRequest{Session: ch.Session, Recipient: id.Recipient().String(),
		Evidence: protocol.Evidence{Kind: "snp", Report: rep, Certs: certs}}, id
}

func TestSessionReplayExpiryAndBinding(t *testing.T) {
	e := newEnv(t, envOptions{})
	relay, digest, m := "relay-s", randDigest(t), measurement(t)
	files := relayFiles(t)
	e.uploadKeys(relay, files)
	e.registerSNP(relay, digest, m)

	// A good boot, checked end to end by hand: signature, decryption.
	ch, req, id := manualBootRequest(t, e, relay, digest, m)
	status, eb, data := e.attest(relay, req)
	if status != http.StatusOK {
		t.Fatalf("attest: %d %+v", status, eb)
	}
	var br protocol.BootResponse
	if err := json.Unmarshal(data, &br); err != nil {
		t.Fatal(err)
	}
	if !protocol.Verify(e.pub.SigningPublicKey, protocol.BootResponseDigest(relay, digest, ch.Nonce, br.Bundle), br.Signature) {
		t.Fatal("boot response signature does not verify")
	}
	plain, err := agecrypt.Decrypt(br.Bundle, 1<<20, id)
	if err != nil {
		t.Fatal(err)
	}
	var bp protocol.BundlePlaintext
	if err := json.Unmarshal(plain, &bp); err != nil {
		t.Fatal(err)
	}
	for n, d := range files {
		if !bytes.Equal(bp.Files[n], d) {
			t.Errorf("%s differs", n)
		}
	}
	if len(bp.PushSecret) != 0 {
		t.Error("SNP relay got a push secret")
	}

	// Replaying the very same request: refused.
	status, eb, _ = e.attest(relay, req)
	if status != http.StatusForbidden || eb.Error.Code != broker.CodeReplayed {
		t.Errorf("replay: %d %+v", status, eb)
	}
	if le := e.lastAttestLog(relay); le.Reason != broker.CodeReplayed {
		t.Errorf("log: %+v", le)
	}

	// A failed attempt also consumes the session.
	_, req2, _ := manualBootRequest(t, e, relay, digest, m)
	req2.Evidence.Report = req2.Evidence.Report[:100]
	if status, eb, _ = e.attest(relay, req2); eb.Error.Code != snpcheck.CodeBadReport {
		t.Errorf("truncated report: %d %+v", status, eb)
	}
	_, req2b, _ := manualBootRequest(t, e, relay, digest, m)
	req2b.Session = req2.Session
	if status, eb, _ = e.attest(relay, req2b); eb.Error.Code != broker.CodeReplayed {
		t.Errorf("reuse after failure: %d %+v", status, eb)
	}

	// Expired: the nonce is good for 60 s.
	_, req3, _ := manualBootRequest(t, e, relay, digest, m)
	e.clock.Advance(61 * time.Second)
	if status, eb, _ = e.attest(relay, req3); status != http.StatusForbidden || eb.Error.Code != broker.CodeExpired {
		t.Errorf("expired: %d %+v", status, eb)
	}
	if le := e.lastAttestLog(relay); le.Reason != broker.CodeExpired {
		t.Errorf("log: %+v", le)
	}

	// Unknown session.
	_, req4, _ := manualBootRequest(t, e, relay, digest, m)
	req4.Session = "nope"
	if _, eb, _ = e.attest(relay, req4); eb.Error.Code != broker.CodeUnknownSession {
		t.Errorf("unknown session: %+v", eb)
	}

	// A session issued for another relay.
	e.uploadKeys("relay-t", relayFiles(t))
	e.registerSNP("relay-t", digest, m)
	_, req5, _ := manualBootRequest(t, e, "relay-t", digest, m)
	if _, eb, _ = e.attest(relay, req5); eb.Error.Code != broker.CodeSessionRelay {
		t.Errorf("other relay's session: %+v", eb)
	}

	// REPORT_DATA must bind the recipient: swap it after the report.
	_, req6, _ := manualBootRequest(t, e, relay, digest, m)
	attacker, _ := age.GenerateX25519Identity()
	req6.Recipient = attacker.Recipient().String()
	if status, eb, _ = e.attest(relay, req6); status != http.StatusForbidden || eb.Error.Code != snpcheck.CodeReportData {
		t.Errorf("swapped recipient: %d %+v", status, eb)
	}
	le := e.lastAttestLog(relay)
	if le.Reason != snpcheck.CodeReportData || le.Measurement != hex.EncodeToString(m) || !strings.Contains(le.Detail, "REPORT_DATA") {
		t.Errorf("log: %+v", le)
	}

	// Unknown JSON fields and a payload on a boot are refused.
	_, req7, _ := manualBootRequest(t, e, relay, digest, m)
	req7.Payload = []byte("x")
	if _, eb, _ = e.attest(relay, req7); eb.Error.Code != broker.CodeBadPayload {
		t.Errorf("payload on boot: %+v", eb)
	}
	st, body := e.do(http.MethodPost, "/v1/relays/"+relay+"/attest", "", map[string]any{"session": "x", "extra": 1})
	if st != http.StatusBadRequest {
		t.Errorf("unknown field: %d %s", st, body)
	}
	st, body = e.do(http.MethodPost, "/v1/relays/Bad_Name/challenge", "", protocol.ChallengeRequest{ImageDigest: digest, Purpose: "boot"})
	if st != http.StatusBadRequest {
		t.Errorf("bad relay name: %d %s", st, body)
	}
	st, body = e.do(http.MethodPost, "/v1/relays/"+relay+"/challenge", "", protocol.ChallengeRequest{ImageDigest: digest, Purpose: "other"})
	if st != http.StatusBadRequest {
		t.Errorf("bad purpose: %d %s", st, body)
	}
}

func TestPushThenBootReturnsPushedKeys(t *testing.T) {
	e := newEnv(t, envOptions{})
	relay, digest, m := "relay-p", randDigest(t), measurement(t)
	files := relayFiles(t)
	e.uploadKeys(relay, files)
	e.registerSNP(relay, digest, m)
	src := simSource(simFor(t, trustedSimDir, m, policyNoSMT))
	torDir := filepath.Join(t.TempDir(), "tor")
	a := e.newAgent(agentSetup{relay: relay, digest: digest, attestation: "snp", torDir: torDir, source: src})
	if err := a.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	// tor rotated its onion keys and wrote state.
	rotated := protocol.Files{
		"keys/secret_onion_key":          randBytes(t, 140),
		"keys/secret_onion_key_ntor":     randBytes(t, 96),
		"keys/secret_onion_key.old":      files["keys/secret_onion_key"],
		"keys/secret_onion_key_ntor.old": files["keys/secret_onion_key_ntor"],
		"state":                          randBytes(t, 700),
		// The directory documents tor cached: the next boot knows the
		// network at once. A consensus is larger than any key, and than
		// a whole bundle could once be.
		"cached-certs":               append([]byte("dir-key-certificate-version 3\n"), randBytes(t, 4000)...),
		"cached-microdesc-consensus": append([]byte("network-status-version 3 microdesc\n"), randBytes(t, 300<<10)...),
	}
	for n, d := range rotated {
		if err := os.WriteFile(filepath.Join(torDir, n), d, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Push(context.Background()); err != nil {
		t.Fatal(err)
	}
	le := e.lastAttestLog(relay)
	if le.Verdict != "accepted" || le.Purpose != "push" || le.Measurement != hex.EncodeToString(m) {
		t.Errorf("log entry: %+v", le)
	}
	rs := e.relayStatus(relay)
	if rs.LastPush == nil || rs.LastAttestation == nil || rs.LastAttestation.Purpose != "push" {
		t.Errorf("status: %+v", rs)
	}

	// A reboot gets the pushed onion keys and state, and the same identity.
	torDir2 := filepath.Join(t.TempDir(), "tor")
	a2 := e.newAgent(agentSetup{relay: relay, digest: digest, attestation: "snp", torDir: torDir2, source: src})
	if err := a2.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := protocol.Files{}
	for _, n := range protocol.IdentityFiles {
		want[n] = files[n]
	}
	for n, d := range rotated {
		want[n] = d
	}
	checkInstalled(t, torDir2, want)

	// A later push without .old files drops them (the push is the current set).
	if err := os.Remove(filepath.Join(torDir2, "keys/secret_onion_key.old")); err != nil {
		t.Fatal(err)
	}
	if err := a2.Push(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, _ := e.st.LoadBundle(relay)
	if _, ok := b["keys/secret_onion_key.old"]; ok {
		t.Error(".old kept after a push without it")
	}
	for _, n := range protocol.IdentityFiles {
		if !bytes.Equal(b[n], files[n]) {
			t.Errorf("identity file %s changed by a push", n)
		}
	}
}

// pushRequest builds a push by hand (to send what no honest agent sends).
func pushRequest(t *testing.T, e *env, relay, digest string, m []byte, pp protocol.PushPlaintext) protocol.AttestRequest {
	t.Helper()
	pj, _ := json.Marshal(pp)
	rcp, err := agecrypt.ParseRecipient(e.pub.PushRecipient)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := agecrypt.Encrypt(pj, rcp)
	if err != nil {
		t.Fatal(err)
	}
	ch := e.challenge(relay, digest, "push")
	rd := protocol.ReportData(relay, digest, "push", ch.Nonce, "", protocol.PayloadSHA256(payload))
	rep, certs, err := simFor(t, trustedSimDir, m, policyNoSMT).Report(rd)
	if err != nil {
		t.Fatal(err)
	}
	return protocol.AttestRequest{Session: ch.Session, Payload: payload, Evidence: protocol.Evidence{Kind: "snp", Report: rep, Certs: certs}}
}

func TestPushRefusals(t *testing.T) {
	e := newEnv(t, envOptions{})
	relay, digest, m := "relay-q", randDigest(t), measurement(t)
	files := relayFiles(t)
	e.uploadKeys(relay, files)
	e.registerSNP(relay, digest, m)

	cases := []struct {
		name  string
		files protocol.Files
		relay string
		code  string
	}{
		{"identity file", protocol.Files{"keys/secret_id_key": randBytes(t, 32), "state": []byte("x")}, relay, broker.CodePushIdentityFile},
		{"signing key", protocol.Files{"keys/ed25519_signing_secret_key": randBytes(t, 32)}, relay, broker.CodePushIdentityFile},
		{"family key", protocol.Files{"keys/ops.secret_family_key": randBytes(t, 32)}, relay, broker.CodePushIdentityFile},
		{"path trick", protocol.Files{"keys/../state": []byte("x")}, relay, broker.CodePushBadFile},
		{"absolute path", protocol.Files{"/etc/passwd": []byte("x")}, relay, broker.CodePushBadFile},
		{"unknown file", protocol.Files{"torrc": []byte("x")}, relay, broker.CodePushBadFile},
		{"empty", protocol.Files{}, relay, broker.CodePushEmpty},
		{"too large", protocol.Files{"state": make([]byte, protocol.MaxFileSize+1)}, relay, broker.CodePushTooLarge},
		{"directory document too large", protocol.Files{"cached-consensus": append([]byte("network-status-version 3\n"), make([]byte, protocol.MaxDirectoryFileSize)...)}, relay, broker.CodePushTooLarge},
		{"not a directory document", protocol.Files{"cached-certs": []byte("#!/bin/sh\n")}, relay, broker.CodePushBadFile},
		{"directory file outside the list", protocol.Files{"cached-descriptors": []byte("router x\n")}, relay, broker.CodePushBadFile},
		{"other relay in payload", protocol.Files{"state": []byte("x")}, "relay-zzz", broker.CodePayloadRelay},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := pushRequest(t, e, relay, digest, m, protocol.PushPlaintext{Relay: c.relay, Files: c.files})
			status, eb, _ := e.attest(relay, req)
			if status != http.StatusForbidden || eb.Error.Code != c.code {
				t.Fatalf("got %d %+v, want %s", status, eb, c.code)
			}
			if le := e.lastAttestLog(relay); le.Reason != c.code || le.Purpose != "push" {
				t.Errorf("log: %+v", le)
			}
		})
	}
	// Nothing changed.
	b, err := e.st.LoadBundle(relay)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != len(files) {
		t.Fatalf("bundle now has %s", fmtFiles(b))
	}
	for n, d := range files {
		if !bytes.Equal(b[n], d) {
			t.Errorf("%s changed", n)
		}
	}
	// A payload not encrypted to the push recipient.
	req := pushRequest(t, e, relay, digest, m, protocol.PushPlaintext{Relay: relay, Files: protocol.Files{"state": []byte("x")}})
	other, _ := age.GenerateX25519Identity()
	bogus, _ := agecrypt.Encrypt([]byte(`{"relay":"relay-q","files":{"state":"eA=="}}`), other.Recipient())
	req.Payload = bogus // also breaks the REPORT_DATA binding of the payload
	if _, eb, _ := e.attest(relay, req); eb.Error.Code != snpcheck.CodeReportData {
		t.Errorf("swapped payload: %+v", eb)
	}
}

func TestRestartKeepsEverythingAndNoKeyBytesAtRest(t *testing.T) {
	e := newEnv(t, envOptions{})
	relay, digest, m := "relay-r", randDigest(t), measurement(t)
	files := relayFiles(t)
	e.uploadKeys(relay, files)
	e.registerSNP(relay, digest, m)
	tokRelay, tokDigest := "relay-tok", randDigest(t)
	token := []byte("token-for-restart-test-0123456789")
	tokFiles := relayFiles(t)
	e.uploadKeys(tokRelay, tokFiles)
	e.registerToken(tokRelay, tokDigest, token)
	src := simSource(simFor(t, trustedSimDir, m, policyNoSMT))
	torDir := filepath.Join(t.TempDir(), "tor")
	a := e.newAgent(agentSetup{relay: relay, digest: digest, attestation: "snp", torDir: torDir, source: src})
	if err := a.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	pushed := randBytes(t, 96)
	if err := os.WriteFile(filepath.Join(torDir, "keys/secret_onion_key_ntor"), pushed, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Push(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := e.status()
	e.stop()

	// Every key is at rest only in age ciphertext: scan every file.
	secrets := map[string][]byte{"pushed ntor key": pushed, "token": token}
	for n, d := range files {
		secrets[relay+" "+n] = d
	}
	for n, d := range tokFiles {
		secrets[tokRelay+" "+n] = d
	}
	scanAtRest(t, e.dataDir, secrets)
	checkModes(t, e.dataDir)

	// A new broker from the same directory has it all.
	e2 := newEnv(t, envOptions{dataDir: e.dataDir})
	after := e2.status()
	bj, _ := json.Marshal(before.Relays)
	aj, _ := json.Marshal(after.Relays)
	if !bytes.Equal(bj, aj) {
		t.Errorf("status changed across restart:\nbefore %s\nafter  %s", bj, aj)
	}
	if !bytes.Equal(e2.pub.SigningPublicKey, e.pub.SigningPublicKey) || e2.pub.PushRecipient != e.pub.PushRecipient {
		t.Error("broker keys changed across restart")
	}
	torDir2 := filepath.Join(t.TempDir(), "tor")
	a2 := e2.newAgent(agentSetup{relay: relay, digest: digest, attestation: "snp", torDir: torDir2, source: src})
	if err := a2.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := protocol.Files{}
	for n, d := range files {
		want[n] = d
	}
	want["keys/secret_onion_key_ntor"] = pushed
	checkInstalled(t, torDir2, want)
	tokFile := filepath.Join(t.TempDir(), "token")
	_ = os.WriteFile(tokFile, token, 0o600)
	tokDir := filepath.Join(t.TempDir(), "tor")
	if err := e2.newAgent(agentSetup{relay: tokRelay, digest: tokDigest, attestation: "none", torDir: tokDir, tokenFile: tokFile}).Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkInstalled(t, tokDir, tokFiles)
	if n := len(e2.logEntries(relay)); n < 3 {
		t.Errorf("log lost entries across restart: %d", n)
	}
}

// scanAtRest fails if any file under dir holds a secret in the clear.
func scanAtRest(t *testing.T, dir string, secrets map[string][]byte) {
	t.Helper()
	found, n, err := findInClear(dir, secrets)
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("only %d files at rest?", n)
	}
	for _, f := range found {
		t.Error(f)
	}
}

// findInClear looks for each secret, raw, hex (both cases) or base64
// (standard, URL, with or without padding), in every file under dir.
func findInClear(dir string, secrets map[string][]byte) ([]string, int, error) {
	blobs := map[string][]byte{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		blobs[p] = b
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	var found []string
	for name, s := range secrets {
		forms := map[string][]byte{
			"raw":       s,
			"hex":       []byte(hex.EncodeToString(s)),
			"HEX":       []byte(strings.ToUpper(hex.EncodeToString(s))),
			"base64":    []byte(base64.StdEncoding.EncodeToString(s)),
			"rawbase64": []byte(base64.RawStdEncoding.EncodeToString(s)),
			"base64url": []byte(base64.RawURLEncoding.EncodeToString(s)),
		}
		for p, b := range blobs {
			for form, f := range forms {
				if bytes.Contains(b, f) {
					found = append(found, name+" found in the clear ("+form+") in "+p)
				}
			}
		}
	}
	return found, len(blobs), nil
}

// The scan itself must be able to find what it looks for.
func TestFindInClearDetects(t *testing.T) {
	dir := t.TempDir()
	secret := randBytes(t, 40)
	for i, enc := range []string{string(secret), hex.EncodeToString(secret), base64.StdEncoding.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret)} {
		p := filepath.Join(dir, "f"+string(rune('a'+i)))
		if err := os.WriteFile(p, []byte("prefix "+enc+" suffix"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	found, n, err := findInClear(dir, map[string][]byte{"s": secret})
	if err != nil || n != 4 || len(found) < 4 {
		t.Fatalf("found %v in %d files (%v)", found, n, err)
	}
}

func checkModes(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if info.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, info.Mode().Perm(), want)
		}
		if strings.Contains(info.Name(), ".tmp-") {
			t.Errorf("left-over temporary file %s", p)
		}
		return nil
	})
}

func TestAdminAuth(t *testing.T) {
	e := newEnv(t, envOptions{})
	d := randDigest(t)
	endpoints := []struct {
		method, path string
		body         any
	}{
		{http.MethodPut, "/v1/admin/relays/r1/keys", broker.KeysRequest{Files: relayFiles(t)}},
		{http.MethodPost, "/v1/admin/relays/r1/images", broker.ImageRequest{ImageDigest: d, Attestation: "none", TokenSHA256: d}},
		{http.MethodDelete, "/v1/admin/relays/r1/images/" + d, nil},
		{http.MethodPost, "/v1/admin/relays/r1/revoke", nil},
		{http.MethodPost, "/v1/admin/relays/r1/reenroll", nil},
		{http.MethodGet, "/v1/admin/status", nil},
		{http.MethodGet, "/v1/admin/log?relay=r1", nil},
	}
	for _, ep := range endpoints {
		for _, tok := range []string{"", "wrong", e.adminToken + "x", strings.ToUpper(e.adminToken)} {
			status, body := e.do(ep.method, ep.path, tok, ep.body)
			if status != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d %s", ep.method, ep.path, tok, status, body)
			}
		}
	}
	// Nothing was enrolled by the unauthenticated calls.
	if s := e.status(); len(s.Relays) != 0 {
		t.Errorf("unauthenticated calls changed state: %+v", s.Relays)
	}
	for _, ep := range endpoints {
		status, body := e.do(ep.method, ep.path, e.adminToken, ep.body)
		if status == http.StatusUnauthorized {
			t.Errorf("%s %s with the token: %d %s", ep.method, ep.path, status, body)
		}
	}
	// A relay-only handler does not serve the admin API at all.
	ts := httptest.NewServer(e.srv.RelayHandler())
	defer ts.Close()
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v1/admin/status", nil)
	req.Header.Set("Authorization", "Bearer "+e.adminToken)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("admin API on the relay-only handler: %d", resp.StatusCode)
	}
}

func TestAdminValidation(t *testing.T) {
	e := newEnv(t, envOptions{})
	full := relayFiles(t)
	bad := func(method, path string, body any, want int) {
		t.Helper()
		status, data := e.do(method, path, e.adminToken, body)
		if status != want {
			t.Errorf("%s %s: %d %s, want %d", method, path, status, data, want)
		}
	}
	for _, name := range []string{"keys/../keys/secret_id_key", "../state", "/state", "keys//secret_id_key", "keys/ed25519_master_id_secret_key", "torrc", "keys/secret_id_key\x00"} {
		f := protocol.Files{}
		for n, d := range full {
			f[n] = d
		}
		f[name] = []byte("x")
		bad(http.MethodPut, "/v1/admin/relays/r1/keys", broker.KeysRequest{Files: f}, http.StatusBadRequest)
	}
	partial := protocol.Files{"keys/secret_id_key": []byte("x")}
	bad(http.MethodPut, "/v1/admin/relays/r1/keys", broker.KeysRequest{Files: partial}, http.StatusBadRequest)
	big := protocol.Files{}
	for n, d := range full {
		big[n] = d
	}
	big["state"] = make([]byte, protocol.MaxFileSize+1)
	bad(http.MethodPut, "/v1/admin/relays/r1/keys", broker.KeysRequest{Files: big}, http.StatusBadRequest)
	bad(http.MethodPut, "/v1/admin/relays/Not_A_Relay/keys", broker.KeysRequest{Files: full}, http.StatusBadRequest)
	d := randDigest(t)
	bad(http.MethodPost, "/v1/admin/relays/r1/images", broker.ImageRequest{ImageDigest: "xyz", Attestation: "snp", Measurements: []string{strings.Repeat("ab", 48)}}, http.StatusBadRequest)
	bad(http.MethodPost, "/v1/admin/relays/r1/images", broker.ImageRequest{ImageDigest: d, Attestation: "snp"}, http.StatusBadRequest)
	bad(http.MethodPost, "/v1/admin/relays/r1/images", broker.ImageRequest{ImageDigest: d, Attestation: "snp", Measurements: []string{"abcd"}}, http.StatusBadRequest)
	bad(http.MethodPost, "/v1/admin/relays/r1/images", broker.ImageRequest{ImageDigest: d, Attestation: "none"}, http.StatusBadRequest)
	bad(http.MethodPost, "/v1/admin/relays/r1/images", broker.ImageRequest{ImageDigest: d, Attestation: "tpm", TokenSHA256: d}, http.StatusBadRequest)
	bad(http.MethodPost, "/v1/admin/relays/r1/images", map[string]any{"imageDigest": d, "attestation": "none", "tokenSha256": d, "extra": true}, http.StatusBadRequest)
	bad(http.MethodDelete, "/v1/admin/relays/r1/images/"+d, nil, http.StatusNotFound)
	bad(http.MethodPost, "/v1/admin/relays/r1/revoke", nil, http.StatusNotFound)

	// Revoked: no upload, no registration, until re-enrolled.
	e.uploadKeys("r1", full)
	e.admin(http.MethodPost, "/v1/admin/relays/r1/revoke", nil)
	bad(http.MethodPut, "/v1/admin/relays/r1/keys", broker.KeysRequest{Files: full}, http.StatusConflict)
	bad(http.MethodPost, "/v1/admin/relays/r1/images", broker.ImageRequest{ImageDigest: d, Attestation: "none", TokenSHA256: d}, http.StatusConflict)
	if rs := e.relayStatus("r1"); !rs.Revoked || rs.RevokedAt == nil {
		t.Errorf("status: %+v", rs)
	}
}

func TestRevokeAndReenroll(t *testing.T) {
	e := newEnv(t, envOptions{})
	relay, digest, m := "relay-v", randDigest(t), measurement(t)
	files := relayFiles(t)
	e.uploadKeys(relay, files)
	e.registerSNP(relay, digest, m)
	src := simSource(simFor(t, trustedSimDir, m, policyNoSMT))
	boot := func() error {
		return e.newAgent(agentSetup{relay: relay, digest: digest, attestation: "snp", torDir: filepath.Join(t.TempDir(), "tor"), source: src}).Fetch(context.Background())
	}
	if err := boot(); err != nil {
		t.Fatal(err)
	}
	// A push whose challenge came just before the revocation.
	req := pushRequest(t, e, relay, digest, m, protocol.PushPlaintext{Relay: relay, Files: protocol.Files{"state": []byte("x")}})
	e.admin(http.MethodPost, "/v1/admin/relays/"+relay+"/revoke", nil)
	mustRefusal(t, boot(), broker.CodeRevoked)
	// Pushes are refused too: at the attest, and new challenges at once.
	if _, eb, _ := e.attest(relay, req); eb.Error.Code != broker.CodeRevoked {
		t.Errorf("push to revoked relay: %+v", eb)
	}
	if status, body := e.do(http.MethodPost, "/v1/relays/"+relay+"/challenge", "", protocol.ChallengeRequest{ImageDigest: digest, Purpose: "push"}); status != http.StatusForbidden || !strings.Contains(string(body), broker.CodeRevoked) {
		t.Errorf("push challenge of a revoked relay: %d %s", status, body)
	}

	// Re-enrolment (default) deletes the keys and retires the old images.
	e.admin(http.MethodPost, "/v1/admin/relays/"+relay+"/reenroll", nil)
	rs := e.relayStatus(relay)
	if rs.Revoked || rs.HasKeys || !rs.Images[0].Retired {
		t.Errorf("after reenroll: %+v", rs)
	}
	mustRefusal(t, boot(), broker.CodeRetiredImage)
	e.registerSNP(relay, digest, m)
	mustRefusal(t, boot(), broker.CodeNoKeys)
	newFiles := relayFiles(t)
	e.uploadKeys(relay, newFiles)
	torDir := filepath.Join(t.TempDir(), "tor")
	if err := e.newAgent(agentSetup{relay: relay, digest: digest, attestation: "snp", torDir: torDir, source: src}).Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkInstalled(t, torDir, newFiles)

	// keepKeys keeps the bundle.
	e.admin(http.MethodPost, "/v1/admin/relays/"+relay+"/revoke", nil)
	e.admin(http.MethodPost, "/v1/admin/relays/"+relay+"/reenroll", broker.ReenrollRequest{KeepKeys: true})
	if rs := e.relayStatus(relay); !rs.HasKeys {
		t.Errorf("keepKeys: %+v", rs)
	}
	status, _ := e.do(http.MethodPost, "/v1/admin/relays/"+relay+"/reenroll", e.adminToken, nil)
	if status != http.StatusConflict {
		t.Errorf("reenroll of a relay that is not revoked: %d", status)
	}
}

func TestStaleAfter(t *testing.T) {
	e := newEnv(t, envOptions{staleAfter: time.Minute})
	relay, digest, m := "relay-w", randDigest(t), measurement(t)
	e.uploadKeys(relay, relayFiles(t))
	e.registerSNP(relay, digest, m)
	if e.relayStatus(relay).Stale {
		t.Error("stale right after enrolment")
	}
	e.clock.Advance(2 * time.Minute)
	if rs := e.relayStatus(relay); !rs.Stale || rs.LastAttestation != nil {
		t.Errorf("not stale after 2 minutes without attestation: %+v", rs)
	}
	src := simSource(simFor(t, trustedSimDir, m, policyNoSMT))
	torDir := filepath.Join(t.TempDir(), "tor")
	a := e.newAgent(agentSetup{relay: relay, digest: digest, attestation: "snp", torDir: torDir, source: src})
	if err := a.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.relayStatus(relay).Stale {
		t.Error("stale right after an attestation")
	}
	e.clock.Advance(50 * time.Second)
	if err := a.Push(context.Background()); err != nil { // continual attestation
		t.Fatal(err)
	}
	e.clock.Advance(50 * time.Second)
	if e.relayStatus(relay).Stale {
		t.Error("stale although a push re-attested 50 s ago")
	}
	e.clock.Advance(20 * time.Second)
	if !e.relayStatus(relay).Stale {
		t.Error("not stale 70 s after the last attestation")
	}
	// A refusal does not count as an attestation.
	mustRefusal(t, e.newAgent(agentSetup{relay: relay, digest: randDigest(t), attestation: "snp", torDir: filepath.Join(t.TempDir(), "x"), source: src}).Fetch(context.Background()), broker.CodeUnregisteredImage)
	if !e.relayStatus(relay).Stale {
		t.Error("a refusal cleared staleness")
	}
	// Revoked relays are not reported stale.
	e.admin(http.MethodPost, "/v1/admin/relays/"+relay+"/revoke", nil)
	if e.relayStatus(relay).Stale {
		t.Error("revoked relay reported stale")
	}
}

func TestAgentRetriesUntilBrokerIsUp(t *testing.T) {
	e := newEnv(t, envOptions{})
	relay, digest, m := "relay-u", randDigest(t), measurement(t)
	files := relayFiles(t)
	e.uploadKeys(relay, files)
	e.registerSNP(relay, digest, m)
	e.stop()

	// Reserve an address with nothing listening on it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	torDir := filepath.Join(t.TempDir(), "tor")
	a := e.newAgent(agentSetup{relay: relay, digest: digest, attestation: "snp", torDir: torDir, maxAttempts: 200,
		brokerURL: "http://" + addr, source: simSource(simFor(t, trustedSimDir, m, policyNoSMT))})
	done := make(chan error, 1)
	go func() { done <- a.Fetch(context.Background()) }()

	time.Sleep(400 * time.Millisecond) // several failed attempts
	select {
	case err := <-done:
		t.Fatalf("fetch returned while the broker was down: %v", err)
	default:
	}
	if got := dirFiles(t, torDir); len(got) != 0 {
		t.Fatalf("files written while the broker was down: %v", got)
	}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: e.srv.Handler()}
	go func() { _ = hs.Serve(ln2) }()
	defer hs.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("fetch did not succeed after the broker came up")
	}
	checkInstalled(t, torDir, files)
}

func TestAgentGivesUpWithoutKeysOnContextEnd(t *testing.T) {
	e := newEnv(t, envOptions{})
	relay, digest, m := "relay-g", randDigest(t), measurement(t)
	e.uploadKeys(relay, relayFiles(t))
	e.registerSNP(relay, digest, m)
	torDir := filepath.Join(t.TempDir(), "tor")
	// Refused forever (wrong measurement); retried until the context ends.
	a := e.newAgent(agentSetup{relay: relay, digest: digest, attestation: "snp", torDir: torDir, maxAttempts: -1,
		source: simSource(simFor(t, trustedSimDir, measurement(t), policyNoSMT))})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := a.Fetch(ctx); err == nil {
		t.Fatal("fetch succeeded")
	}
	if n := len(e.logEntries(relay)); n < 4 { // 2 admin + at least 2 refusals
		t.Errorf("expected several attempts, log has %d entries", n)
	}
	if got := dirFiles(t, torDir); len(got) != 0 {
		t.Errorf("files written: %v", got)
	}
}

func TestAgentRefusesBadBrokerAnswers(t *testing.T) {
	e := newEnv(t, envOptions{})
	relay, digest, m := "relay-b", randDigest(t), measurement(t)
	files := relayFiles(t)
	e.uploadKeys(relay, files)
	e.registerSNP(relay, digest, m)
	src := simSource(simFor(t, trustedSimDir, m, policyNoSMT))

	// A man in the middle that alters the signature: the agent writes nothing.
	var mode string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequest(r.Method, e.ts.URL+r.URL.Path, r.Body)
		req.Header = r.Header
		resp, err := e.ts.Client().Do(req)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		defer resp.Body.Close()
		var body bytes.Buffer
		_, _ = body.ReadFrom(resp.Body)
		out := body.Bytes()
		if strings.HasSuffix(r.URL.Path, "/attest") && resp.StatusCode == 200 {
			var br protocol.BootResponse
			_ = json.Unmarshal(out, &br)
			switch mode {
			case "signature":
				br.Signature[0] ^= 1
			case "bundle":
				br.Bundle[len(br.Bundle)-1] ^= 1
			}
			out, _ = json.Marshal(br)
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(out)
	}))
	defer proxy.Close()
	for _, mode = range []string{"signature", "bundle"} {
		torDir := filepath.Join(t.TempDir(), "tor")
		err := e.newAgent(agentSetup{relay: relay, digest: digest, attestation: "snp", torDir: torDir, source: src, brokerURL: proxy.URL}).Fetch(context.Background())
		if err == nil || !strings.Contains(err.Error(), "signature") {
			t.Errorf("%s tampered: %v", mode, err)
		}
		if got := dirFiles(t, torDir); len(got) != 0 {
			t.Errorf("%s tampered: files written %v", mode, got)
		}
	}

	// A broker (holding the right signing key) whose bundle lacks an
	// identity file: the agent refuses rather than let tor make new keys.
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nonce := bytes.Repeat([]byte{7}, 32)
		if strings.HasSuffix(r.URL.Path, "/challenge") {
			_ = json.NewEncoder(w).Encode(protocol.ChallengeResponse{Session: "s", Nonce: nonce, ExpiresAt: time.Now().Add(time.Minute)})
			return
		}
		var req protocol.AttestRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		partial := protocol.Files{}
		for n, d := range files {
			if n != "keys/secret_id_key" {
				partial[n] = d
			}
		}
		pj, _ := json.Marshal(protocol.BundlePlaintext{Relay: relay, Files: partial})
		rcp, _ := agecrypt.ParseRecipient(req.Recipient)
		ct, _ := agecrypt.Encrypt(pj, rcp)
		sig := ed25519.Sign(e.st.Secrets.Signing, protocol.BootResponseDigest(relay, digest, nonce, ct))
		_ = json.NewEncoder(w).Encode(protocol.BootResponse{Bundle: ct, Signature: sig})
	}))
	defer fake.Close()
	torDir := filepath.Join(t.TempDir(), "tor")
	err := e.newAgent(agentSetup{relay: relay, digest: digest, attestation: "snp", torDir: torDir, source: src, brokerURL: fake.URL}).Fetch(context.Background())
	if err == nil || !strings.Contains(err.Error(), "keys/secret_id_key") {
		t.Errorf("bundle without secret_id_key: %v", err)
	}
	if got := dirFiles(t, torDir); len(got) != 0 {
		t.Errorf("files written: %v", got)
	}
}

func TestChallengeLimits(t *testing.T) {
	e := newEnv(t, envOptions{})
	d := randDigest(t)
	for _, relay := range []string{"flooded", "other"} {
		e.uploadKeys(relay, relayFiles(t))
		e.registerSNP(relay, d, measurement(t))
	}
	for i := 0; i < 64; i++ {
		e.challenge("flooded", d, "boot")
	}
	status, body := e.do(http.MethodPost, "/v1/relays/flooded/challenge", "", protocol.ChallengeRequest{ImageDigest: d, Purpose: "boot"})
	if status != http.StatusTooManyRequests {
		t.Fatalf("65th outstanding challenge: %d %s", status, body)
	}
	// Other relays are not affected, and expired challenges stop counting.
	e.challenge("other", d, "boot")
	e.clock.Advance(61 * time.Second)
	e.challenge("flooded", d, "boot")
}

// The push carries the relay's health report; the status shows it with the
// image the push attested as and the broker's time of receipt.
func TestPushCarriesHealthReport(t *testing.T) {
	e := newEnv(t, envOptions{})
	relay := "relay-h"
	script := filepath.Join(t.TempDir(), "health")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"image {}\"\necho \"tor 42\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a, _, digest := e.fetchedSNPAgent(relay, relayFiles(t), agentSetup{healthCommand: script})
	if rs := e.relayStatus(relay); rs.LastHealth != nil {
		t.Fatalf("a boot is no health report: %+v", rs.LastHealth)
	}
	if err := a.Push(context.Background()); err != nil {
		t.Fatal(err)
	}
	rs := e.relayStatus(relay)
	if rs.LastHealth == nil || rs.LastHealth.Report != "image {}\ntor 42\n" || rs.LastHealth.ImageDigest != digest || rs.LastPush == nil || !rs.LastHealth.Time.Equal(*rs.LastPush) {
		t.Fatalf("last health: %+v", rs.LastHealth)
	}
	// A failing command still reports, and says why.
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho partial\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := a.Push(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.relayStatus(relay).LastHealth.Report; !strings.HasPrefix(got, "partial\n") || !strings.Contains(got, "health-error exit status 3") {
		t.Fatalf("report of a failing health command: %q", got)
	}
}

// Uploading the shipped keys again (a renewed signing certificate) keeps the
// onion keys and state the relay pushed; an upload that carries onion keys
// (a relay moving from image mode) replaces them.
func TestKeysUploadKeepsPushedOnionKeys(t *testing.T) {
	e := newEnv(t, envOptions{})
	relay := "relay-u"
	files := relayFiles(t)
	a, torDir, _ := e.fetchedSNPAgent(relay, files, agentSetup{})
	pushed := randBytes(t, 96)
	if err := os.WriteFile(filepath.Join(torDir, "keys/secret_onion_key_ntor"), pushed, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Push(context.Background()); err != nil {
		t.Fatal(err)
	}
	renewed := protocol.Files{}
	for _, n := range protocol.IdentityFiles {
		renewed[n] = files[n]
	}
	renewed["keys/ed25519_signing_cert"] = randBytes(t, 172)
	e.uploadKeys(relay, renewed)
	b, err := e.st.LoadBundle(relay)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b["keys/secret_onion_key_ntor"], pushed) || !bytes.Equal(b["keys/ed25519_signing_cert"], renewed["keys/ed25519_signing_cert"]) {
		t.Fatalf("after re-upload: ntor kept=%v, cert renewed=%v", bytes.Equal(b["keys/secret_onion_key_ntor"], pushed), bytes.Equal(b["keys/ed25519_signing_cert"], renewed["keys/ed25519_signing_cert"]))
	}
	migrated := protocol.Files{"keys/secret_onion_key_ntor": randBytes(t, 96), "state": randBytes(t, 300)}
	for n, d := range renewed {
		migrated[n] = d
	}
	e.uploadKeys(relay, migrated)
	b, _ = e.st.LoadBundle(relay)
	if !bytes.Equal(b["keys/secret_onion_key_ntor"], migrated["keys/secret_onion_key_ntor"]) {
		t.Fatal("an upload carrying onion keys did not replace the pushed ones")
	}
	if _, ok := b["keys/secret_onion_key"]; ok {
		t.Fatal("an upload carrying onion keys kept a pushed file it did not carry")
	}
}
