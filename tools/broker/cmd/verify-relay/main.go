// Command verify-relay checks, from anywhere, that a relay runs a published
// image inside an SEV-SNP guest and holds its own Tor keys there: it sends
// the relay a fresh nonce (or reads a saved answer), and prints one verdict
// line per check, exiting 0 only when all hold.
//
// The expected values come from outside the answer: the relay's ed25519
// master identity from a tor client's consensus and microdescriptors
// (internal/tordoc) for the fingerprint asked about, the image from the
// published measurement log (internal/measurelog, verified with git and
// OpenSSH), the AMD roots pinned in the program (internal/snpcheck), the
// nonce from this run.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/verify/trust"

	"diskless-relays/tools/broker/internal/cli"
	"diskless-relays/tools/broker/internal/fsutil"
	"diskless-relays/tools/broker/internal/measurelog"
	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/relayproof"
	"diskless-relays/tools/broker/internal/snpcheck"
	"diskless-relays/tools/broker/internal/tordoc"
	"diskless-relays/tools/broker/internal/torid"
)

const usage = `usage:
  verify-relay [--fingerprint] FP ([--address HOST:PORT | --port N] [--save FILE] | --evidence FILE --nonce HEX)
               (--tor-data-dir DIR | --consensus FILE --microdescs FILE... | --ed25519-id BASE64)
               --log DIR --allowed-signers FILE [--log-seen COMMIT] --min-tcb FLOOR...
               [--image-digest DIGEST]
               [--allow-smt] [--allow-simulated-root FILE]

Asks the relay at HOST:PORT (POST /v1/attestation; by default the IPv4
address the consensus lists for FP, on --port) to answer a
fresh random nonce, or reads an answer saved with --save and the nonce it answered, and
prints one line per check:

  amd_chain           the report is signed by a VCEK chaining to AMD's roots
                      pinned in this program (fetched from AMD's KDS when the
                      answer lacks it)
  policy              the guest policy forbids debugging and a migration
                      agent (and SMT, unless --allow-smt)
  tcb                 the reported TCB is at least --min-tcb (a published
                      floor such as amd-sb-3019, "bl=N,tee=N,snp=N,ucode=N",
                      or LINE:TCB; repeat to combine)
  freshness           the answer is to this run's nonce
  report_data         the report binds the nonce, the relay's identities and
                      the image digest
  signing_cert        the relay's signing key is certified by the ed25519
                      master identity the directory lists for FP
  signature           that signing key signed the nonce and the report
  measurement_in_log  the log verifies (signed, append-only, extending the
                      head given with --log-seen) and lists the report's
                      measurement for this relay and image, with the
                      report's guest policy

Exit 0 only when every line is ok; 1 otherwise; 2 for a bad command line.

The master identity: --tor-data-dir reads a tor client's
cached-microdesc-consensus and cached-microdescs(.new); --consensus and
--microdescs name such files; --ed25519-id gives it directly, taken from a
consensus you trust. --allow-simulated-root trusts a TEST chain (the local
stack's simulator): its amd_chain line says SIMULATED, and a pass then
proves nothing about real hardware.
`

// Names of the verdict lines, in print order.
const (
	checkChain       = "amd_chain"
	checkPolicy      = "policy"
	checkTCB         = "tcb"
	checkMeasurement = "measurement_in_log"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	fingerprint, address, save, evidence, nonce string
	port                                        int
	torDataDir, consensus, ed25519ID            string
	microdescs, minTCB                          cli.Strings
	log, logSeen, allowedSigners, imageDigest   string
	simulatedRoot                               string
	allowSMT                                    bool
}

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("verify-relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	fs.StringVar(&o.fingerprint, "fingerprint", "", "the relay's RSA fingerprint (40 hex digits)")
	fs.StringVar(&o.address, "address", "", "HOST:PORT of the relay's attestation endpoint (default: its consensus address, on --port)")
	fs.IntVar(&o.port, "port", protocol.PublicAttestationPort, "the attestation endpoint's port at the consensus address")
	fs.StringVar(&o.save, "save", "", "write the relay's answer to FILE (with --address)")
	fs.StringVar(&o.evidence, "evidence", "", "a saved answer")
	fs.StringVar(&o.nonce, "nonce", "", "the nonce (64 hex digits) the saved answer was asked with")
	fs.StringVar(&o.torDataDir, "tor-data-dir", "", "a tor client's DataDirectory")
	fs.StringVar(&o.consensus, "consensus", "", "a cached-microdesc-consensus file")
	fs.Var(&o.microdescs, "microdescs", "a cached-microdescs file (repeatable)")
	fs.StringVar(&o.ed25519ID, "ed25519-id", "", "the relay's ed25519 master identity, from a consensus you trust")
	fs.StringVar(&o.log, "log", "", "a copy (git clone) of the measurement log")
	fs.StringVar(&o.logSeen, "log-seen", "", "a log head seen before: the log must extend it")
	fs.StringVar(&o.allowedSigners, "allowed-signers", "", "OpenSSH allowed-signers file with the image signing key")
	fs.Var(&o.minTCB, "min-tcb", "minimum TCB (repeatable)")
	fs.StringVar(&o.imageDigest, "image-digest", "", "require this image digest (64 hex digits)")
	fs.BoolVar(&o.allowSMT, "allow-smt", false, "accept a guest policy that allows SMT")
	fs.StringVar(&o.simulatedRoot, "allow-simulated-root", "", "TEST ONLY: also trust this simulated ASK+ARK PEM chain")
	// The fingerprint may come as the one positional argument, before or
	// after the flags: the flag package stops at the first non-flag, so the
	// rest is parsed again after it.
	var positionals []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return 2
		}
		if rest = fs.Args(); len(rest) == 0 {
			break
		}
		positionals, rest = append(positionals, rest[0]), rest[1:]
	}
	if len(positionals) == 1 && o.fingerprint == "" {
		o.fingerprint, positionals = positionals[0], nil
	}
	if msg := o.usageProblem(len(positionals)); msg != "" {
		fmt.Fprintf(stderr, "verify-relay: %s\n\n%s", msg, usage)
		return 2
	}
	verdicts, err := verify(o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "verify-relay: %v\n", err)
		return 1
	}
	for _, v := range verdicts {
		word := "FAIL"
		if v.OK {
			word = "ok  "
		}
		fmt.Fprintf(stdout, "%s %-18s %s\n", word, v.Check, v.Detail)
	}
	if !verdicts.OK() {
		fmt.Fprintf(stderr, "verify-relay: FAILED: %s\n", strings.Join(verdicts.Failed(), ", "))
		return 1
	}
	return 0
}

// usageProblem says what is wrong with the command line, or "".
func (o options) usageProblem(positional int) string {
	identities := 0
	for _, set := range []bool{o.torDataDir != "", o.consensus != "" || len(o.microdescs) > 0, o.ed25519ID != ""} {
		if set {
			identities++
		}
	}
	switch {
	case positional > 0:
		return "one positional argument at most: the fingerprint (every other value has its flag)"
	case o.fingerprint == "":
		return "the relay's fingerprint is required"
	case o.address != "" && o.evidence != "":
		return "give --address or --evidence, not both"
	case o.address == "" && o.evidence == "" && o.ed25519ID != "":
		return "give --address: with --ed25519-id there is no consensus to find the relay's address in"
	case o.port < 1 || o.port > 65535:
		return "--port must be a TCP port (1-65535)"
	case o.evidence != "" && o.nonce == "":
		return "--evidence needs --nonce: the nonce the saved answer was asked with"
	case o.address != "" && o.nonce != "":
		return "--nonce goes with --evidence; with --address a fresh nonce is drawn"
	case o.save != "" && o.evidence != "":
		return "--save goes with asking the relay, not with --evidence"
	case identities != 1:
		return "give the relay's identity one way: --tor-data-dir, --consensus with --microdescs, or --ed25519-id"
	case (o.consensus == "") != (len(o.microdescs) == 0):
		return "--consensus and --microdescs go together"
	case o.log == "" || o.allowedSigners == "":
		return "--log and --allowed-signers are required"
	case len(o.minTCB) == 0:
		return "--min-tcb is required (for example --min-tcb amd-sb-3019)"
	}
	return ""
}

// verify gathers the expected values and the answer, and runs every check.
// An error means a check could not run at all (bad input, unreachable
// relay), not that one failed.
func verify(o options, stderr io.Writer) (relayproof.Verdicts, error) {
	fp, err := torid.ParseRSAFingerprint(o.fingerprint)
	if err != nil {
		return nil, err
	}
	if o.imageDigest != "" && !protocol.ValidImageDigest(o.imageDigest) {
		return nil, fmt.Errorf("--image-digest %q is not 64 lowercase hex digits", o.imageDigest)
	}
	policy, err := o.snpPolicy()
	if err != nil {
		return nil, err
	}
	master, identitySource, listed, err := o.masterIdentity(fp, stderr)
	if err != nil {
		return nil, err
	}
	if o.address == "" && o.evidence == "" {
		o.address = netip.AddrPortFrom(listed, uint16(o.port)).String()
		fmt.Fprintf(stderr, "verify-relay: asking %s (the consensus's address for %s, port %d)\n", o.address, fp, o.port)
	}
	e, nonce, err := o.answer(stderr)
	if err != nil {
		return nil, err
	}

	vs := snpVerdicts(policy, e, o)
	log, logProblem := o.verifiedLog()
	measurement := reportMeasurement(e.Report)
	expectImage := o.imageDigest
	var entry *measurelog.Logged
	if log != nil {
		entry = findEntry(log, measurement, e.Relay, o.imageDigest, e.ImageDigest)
		if expectImage == "" && entry != nil {
			expectImage = entry.ImageDigest
		}
	}
	if expectImage == "" {
		// Nothing outside the answer names an image: report_data then checks
		// the answer's own claim, and measurement_in_log fails.
		expectImage = e.ImageDigest
	}
	proof, err := relayproof.Check(e, relayproof.Expected{
		Nonce: nonce, RSAFingerprint: fp, Ed25519Master: master, ImageDigest: expectImage, Now: time.Now(),
	})
	if err != nil {
		return nil, err
	}
	for i := range proof {
		if proof[i].Check == relayproof.CheckSigningCert {
			proof[i].Detail += " (identity from " + identitySource + ")"
		}
	}
	vs = append(vs, proof...)
	vs = append(vs, measurementVerdict(log, logProblem, entry, measurement, e, o.imageDigest))
	return vs, nil
}

// snpPolicy is the broker's SNP policy as the volunteer sets it: AMD's
// pinned roots, the given floors, VCEKs fetched from AMD's KDS when an
// answer lacks its own.
func (o options) snpPolicy() (*snpcheck.Policy, error) {
	roots, err := snpcheck.AMDRoots()
	if err != nil {
		return nil, err
	}
	all, byLine, err := snpcheck.ParseMinTCBs(o.minTCB)
	if err != nil {
		return nil, err
	}
	p := &snpcheck.Policy{Roots: roots, AllowSMT: o.allowSMT, MinTCB: all, MinTCBByLine: byLine, FetchCerts: true}
	if o.simulatedRoot != "" {
		data, err := fsutil.ReadBounded(o.simulatedRoot, 64<<10)
		if err != nil {
			return nil, err
		}
		line, root, err := snpcheck.ParseRootsPEM(data)
		if err != nil {
			return nil, fmt.Errorf("--allow-simulated-root %s: %v", o.simulatedRoot, err)
		}
		p.SimulatedRoots = map[string][]*trust.AMDRootCerts{line: {root}}
	}
	return p, nil
}

// masterIdentity is the relay's ed25519 master identity, from outside the
// answer, and where it came from.
func (o options) masterIdentity(fp string, stderr io.Writer) (ed25519.PublicKey, string, netip.Addr, error) {
	if o.ed25519ID != "" {
		key, err := torid.ParseEd25519ID(o.ed25519ID)
		if err != nil {
			return nil, "", netip.Addr{}, fmt.Errorf("--ed25519-id: %v", err)
		}
		return key, "--ed25519-id", netip.Addr{}, nil
	}
	files := tordoc.Files{Consensus: o.consensus, Microdescs: o.microdescs}
	if o.torDataDir != "" {
		files = tordoc.DataDirFiles(o.torDataDir)
	}
	id, err := tordoc.Lookup(files, fp)
	if err != nil {
		return nil, "", netip.Addr{}, err
	}
	// tor itself uses a consensus up to a day past its valid-until; an
	// older one may list an identity the relay has since replaced.
	if age := time.Since(id.ValidUntil); age > 24*time.Hour {
		fmt.Fprintf(stderr, "verify-relay: warning: the consensus expired %s ago (valid-until %s UTC): start tor so that it fetches a current one\n", age.Round(time.Minute), id.ValidUntil.Format("2006-01-02 15:04:05"))
	}
	return id.Ed25519Master, fmt.Sprintf("the consensus valid-after %s UTC, microdescriptor %s", id.ValidAfter.Format("2006-01-02 15:04:05"), id.Source), id.Address, nil
}

// answer asks the relay with a fresh nonce, or reads a saved answer.
func (o options) answer(stderr io.Writer) (*relayproof.Evidence, []byte, error) {
	if o.evidence != "" {
		nonce, err := hex.DecodeString(o.nonce)
		if err != nil || len(nonce) != protocol.NonceSize {
			return nil, nil, fmt.Errorf("--nonce %q is not %d bytes in hex", o.nonce, protocol.NonceSize)
		}
		data, err := fsutil.ReadBounded(o.evidence, relayproof.MaxEvidenceSize)
		if err != nil {
			return nil, nil, err
		}
		e, err := relayproof.Decode(data)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %v", o.evidence, err)
		}
		return e, nonce, nil
	}
	nonce := make([]byte, protocol.NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	e, raw, err := relayproof.Fetch(ctx, nil, o.address, nonce)
	if err != nil {
		return nil, nil, err
	}
	if o.save != "" {
		if err := os.WriteFile(o.save, raw, 0o644); err != nil {
			return nil, nil, err
		}
		fmt.Fprintf(stderr, "verify-relay: saved the answer to %s; it answers --nonce %x\n", o.save, nonce)
	}
	return e, nonce, nil
}

// snpVerdicts are the amd_chain, policy and tcb lines, from snpcheck's
// refusals. REPORT_DATA and the measurement are judged on their own lines
// (report_data, measurement_in_log), so snpcheck is given the report's own
// values for them and refuses neither.
func snpVerdicts(p *snpcheck.Policy, e *relayproof.Evidence, o options) relayproof.Verdicts {
	lines := map[string][]string{}
	var res snpcheck.Result
	var refusals []*snpcheck.Refusal
	rep, err := abi.ReportToProto(e.Report)
	if err != nil {
		refusals = []*snpcheck.Refusal{{Code: snpcheck.CodeBadReport, Detail: err.Error()}}
	} else {
		var own [protocol.ReportDataSize]byte
		copy(own[:], rep.GetReportData())
		res, refusals = p.Checks(e.Report, e.CertTable(), own, [][]byte{rep.GetMeasurement()})
	}
	for _, r := range refusals {
		line := checkChain
		switch r.Code {
		case snpcheck.CodePolicyDebug, snpcheck.CodePolicyMigration, snpcheck.CodePolicySMT, snpcheck.CodeVMPL:
			line = checkPolicy
		case snpcheck.CodeTCB:
			line = checkTCB
		}
		lines[line] = append(lines[line], r.Code+": "+r.Detail)
	}
	unread := rep == nil || (len(refusals) == 1 && (refusals[0].Code == snpcheck.CodeBadReport || refusals[0].Code == snpcheck.CodeBadCerts))
	caveat := ""
	if !res.Verified {
		caveat = " (fields of a report whose chain did not verify)"
	}
	verdict := func(check, okDetail string) relayproof.Verdict {
		if problems := lines[check]; len(problems) > 0 {
			return relayproof.Verdict{Check: check, Detail: strings.Join(problems, "; ")}
		}
		if unread && check != checkChain {
			return relayproof.Verdict{Check: check, Detail: "not checked: the report or its certificates are unreadable"}
		}
		return relayproof.Verdict{Check: check, OK: true, Detail: okDetail}
	}
	chainOK := "the report is signed by a VCEK that chains to AMD's pinned root (" + res.Root + "), and its fields agree with the VCEK"
	if strings.HasPrefix(res.Root, "simulated/") {
		chainOK = "SIMULATED ROOT (" + res.Root + ", from --allow-simulated-root), NOT AMD: this report proves nothing about real hardware"
	}
	floor := tcbFloor(p, res, rep)
	smt := "SMT off"
	if o.allowSMT {
		smt = "SMT allowed (--allow-smt)"
	}
	return relayproof.Verdicts{
		verdict(checkChain, chainOK),
		verdict(checkPolicy, fmt.Sprintf("guest policy %s: no debugging, no migration agent, %s, VMPL 0%s", res.PolicyString(), smt, caveat)),
		verdict(checkTCB, fmt.Sprintf("reported TCB %s is at least %s%s", res.TCBString(), floor, caveat)),
	}
}

// tcbFloor says which floor applied to the report's product line, loudly
// when --min-tcb sets none for it.
func tcbFloor(p *snpcheck.Policy, res snpcheck.Result, rep *spb.Report) string {
	line, ok := strings.CutPrefix(res.Root, "amd/")
	if !ok {
		line, ok = strings.CutPrefix(res.Root, "simulated/")
	}
	if !ok && rep != nil {
		line = kds.ProductLineFromFms(rep.GetCpuid1EaxFms())
	}
	floor, perLine := p.MinTCBByLine[line]
	if !perLine {
		floor = p.MinTCB
	}
	text := fmt.Sprintf("bl=%d,tee=%d,snp=%d,ucode=%d (the floor for %s)", floor.BlSpl, floor.TeeSpl, floor.SnpSpl, floor.UcodeSpl, line)
	if floor == (kds.TCBParts{}) {
		text = "NO FLOOR: --min-tcb sets none for " + line + ", so any firmware passes"
	}
	return text
}

// verifiedLog verifies the log copy; a nil log comes with the reason.
func (o options) verifiedLog() (*measurelog.Log, string) {
	verdicts, log, err := measurelog.Verify(o.log, measurelog.VerifyOptions{AllowedSigners: o.allowedSigners, Old: o.logSeen})
	if err != nil {
		return nil, fmt.Sprintf("the log %s could not be checked: %v", o.log, err)
	}
	if !measurelog.AllOK(verdicts) || log == nil {
		var failed []string
		for _, v := range verdicts {
			if !v.OK {
				failed = append(failed, v.Check+" ("+v.Detail+")")
			}
		}
		return nil, fmt.Sprintf("the log %s does not verify (measurement-log verify): %s", o.log, strings.Join(failed, "; "))
	}
	return log, ""
}

// reportMeasurement is the report's launch measurement, or nil.
func reportMeasurement(report []byte) []byte {
	rep, err := abi.ReportToProto(report)
	if err != nil {
		return nil
	}
	return rep.GetMeasurement()
}

// reportPolicy is the report's guest policy as the log writes it: "0x"
// and lowercase hex without leading zeros ("" for an unreadable report).
func reportPolicy(report []byte) string {
	rep, err := abi.ReportToProto(report)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("0x%x", rep.GetPolicy())
}

// findEntry is the log's entry for the measurement and relay whose image
// is the one required (--image-digest) or else the one the answer names.
func findEntry(log *measurelog.Log, measurement []byte, relay, required, claimed string) *measurelog.Logged {
	want := required
	if want == "" {
		want = claimed
	}
	for _, e := range log.Find(measurement, relay) {
		if e.ImageDigest == want {
			return &e
		}
	}
	return nil
}

func measurementVerdict(log *measurelog.Log, problem string, entry *measurelog.Logged, measurement []byte, e *relayproof.Evidence, required string) relayproof.Verdict {
	v := relayproof.Verdict{Check: checkMeasurement}
	m := hex.EncodeToString(measurement)
	switch {
	case log == nil:
		v.Detail = problem
	case measurement == nil:
		v.Detail = "the report is unreadable: no measurement"
	case entry != nil && entry.Policy != reportPolicy(e.Report):
		// The measurement does not cover the guest policy; the entry records the one the image is launched with.
		v.Detail = fmt.Sprintf("%s lists measurement %s… for relay %s with guest policy %s, but the report's policy is %s: the relay was launched otherwise than logged", entry.Path, m[:16], entry.Relay, entry.Policy, reportPolicy(e.Report))
	case entry != nil:
		v.OK = true
		v.Detail = fmt.Sprintf("measurement %s… is %s (relay %s, image %s, build record sha256 %s…, commit %.12s) in the signed log at head %.12s", m[:16], entry.Path, entry.Relay, entry.ImageDigest, entry.BuildRecordSHA256[:16], entry.Commit, log.Head())
	default:
		var where []string
		for _, l := range log.Find(measurement, "") {
			where = append(where, fmt.Sprintf("%s (relay %s, image %s)", l.Path, l.Relay, l.ImageDigest))
		}
		image := e.ImageDigest
		if required != "" {
			image = required
		}
		if len(where) == 0 {
			v.Detail = fmt.Sprintf("measurement %s is not in the log (head %.12s): the relay runs an image the operator did not publish", m, log.Head())
		} else {
			v.Detail = fmt.Sprintf("the log lists measurement %s… only as %s, not for relay %s with image %s", m[:16], strings.Join(where, ", "), e.Relay, image)
		}
	}
	return v
}
