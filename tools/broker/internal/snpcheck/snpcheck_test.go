package snpcheck_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/verify/trust"

	"diskless-relays/tools/broker/internal/kdscache"
	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/snpcheck"
	"diskless-relays/tools/broker/internal/snpsim"
)

func TestSimulatedReportVerifies(t *testing.T) {
	dir := t.TempDir()
	if err := snpsim.Init(dir, snpsim.InitOptions{RSABits: 2048}); err != nil {
		t.Fatal(err)
	}
	m := bytes.Repeat([]byte{0xab}, 48)
	sim, err := snpsim.Load(dir, snpsim.Options{Measurement: m, Policy: 0x20000})
	if err != nil {
		t.Fatal(err)
	}
	var rd [64]byte
	rd[0] = 1
	rep, certs, err := sim.Report(rd)
	if err != nil {
		t.Fatal(err)
	}
	pemData, _ := os.ReadFile(filepath.Join(dir, snpsim.ArkAskFile))
	line, root, err := snpcheck.ParseRootsPEM(pemData)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := snpcheck.AMDRoots()
	if err != nil {
		t.Fatal(err)
	}
	p := &snpcheck.Policy{Roots: roots}
	if _, ref := p.Check(rep, certs, rd, [][]byte{m}); ref == nil || ref.Code != snpcheck.CodeVerification {
		t.Fatalf("want verification refusal without simulated roots, got %v", ref)
	}
	p.SimulatedRoots = map[string][]*trust.AMDRootCerts{line: {root}}
	res, ref := p.Check(rep, certs, rd, [][]byte{m})
	if ref != nil {
		t.Fatalf("refused: %v", ref)
	}
	// The log and status say which root verified it: never AMD's for the simulator.
	if !res.Verified || res.Root != "simulated/"+line {
		t.Fatalf("verified %v by %q, want simulated/%s", res.Verified, res.Root, line)
	}
}

func TestParseTCB(t *testing.T) {
	p, err := snpcheck.ParseTCB("bl=3, tee=1,snp=22,ucode=213")
	if err != nil || p != (kds.TCBParts{BlSpl: 3, TeeSpl: 1, SnpSpl: 22, UcodeSpl: 213}) {
		t.Fatalf("%+v %v", p, err)
	}
	v, _ := kds.ComposeTCBParts(p)
	q, err := snpcheck.ParseTCB(fmt.Sprintf("0x%x", uint64(v)))
	if err != nil || q != p {
		t.Fatalf("hex: %+v %v", q, err)
	}
	if p, err := snpcheck.ParseTCB(""); err != nil || p != (kds.TCBParts{}) {
		t.Fatal("empty TCB")
	}
	for _, bad := range []string{"bl", "bl=x", "foo=1", "snp=200", "0xzz", "bl=256"} {
		if _, err := snpcheck.ParseTCB(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if !strings.Contains(snpcheck.FormatTCB(uint64(v)), "snp=22") {
		t.Error(snpcheck.FormatTCB(uint64(v)))
	}
}

func TestRoots(t *testing.T) {
	roots, err := snpcheck.AMDRoots()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"Milan", "Genoa", "Turin"} {
		if len(roots[line]) != 1 || roots[line][0].ProductCerts.Ark == nil || roots[line][0].ProductCerts.Ask == nil {
			t.Errorf("%s roots missing", line)
		}
	}
	for _, bad := range [][]byte{nil, []byte("garbage"), trustPEM(t)[:200]} {
		if _, _, err := snpcheck.ParseRootsPEM(bad); err == nil {
			t.Errorf("bad roots accepted: %q", bad)
		}
	}
	// An ASK not signed by the ARK that comes with it is refused.
	askA, _ := splitPEM(t, trustPEM(t))
	_, arkB := splitPEM(t, otherPEM(t))
	if _, _, err := snpcheck.ParseRootsPEM(append(append([]byte(nil), askA...), arkB...)); err == nil {
		t.Error("mismatched ASK/ARK accepted")
	}
	if _, _, err := snpcheck.ParseRootsPEM(trustPEM(t)); err != nil {
		t.Errorf("good roots refused: %v", err)
	}
}

var chains = map[string][]byte{}

func chainPEM(t *testing.T, name string) []byte {
	t.Helper()
	if c, ok := chains[name]; ok {
		return c
	}
	dir := filepath.Join(t.TempDir(), name)
	if err := snpsim.Init(dir, snpsim.InitOptions{RSABits: 2048}); err != nil {
		t.Fatal(err)
	}
	c, err := os.ReadFile(filepath.Join(dir, snpsim.ArkAskFile))
	if err != nil {
		t.Fatal(err)
	}
	chains[name] = c
	return c
}

func trustPEM(t *testing.T) []byte { return chainPEM(t, "a") }
func otherPEM(t *testing.T) []byte { return chainPEM(t, "b") }

func splitPEM(t *testing.T, data []byte) ([]byte, []byte) {
	t.Helper()
	_, rest := pem.Decode(data)
	return data[:len(data)-len(rest)], rest
}

func TestReportDataAndTCBChecks(t *testing.T) {
	dir := t.TempDir()
	if err := snpsim.Init(dir, snpsim.InitOptions{RSABits: 2048}); err != nil {
		t.Fatal(err)
	}
	pemData, _ := os.ReadFile(filepath.Join(dir, snpsim.ArkAskFile))
	line, root, err := snpcheck.ParseRootsPEM(pemData)
	if err != nil {
		t.Fatal(err)
	}
	m := bytes.Repeat([]byte{1}, 48)
	high := kds.TCBParts{BlSpl: 10, SnpSpl: 30, UcodeSpl: 250}
	sim, err := snpsim.Load(dir, snpsim.Options{Measurement: m, TCB: &high})
	if err != nil {
		t.Fatal(err)
	}
	rd := protocol.ReportData("r", strings.Repeat("0", 64), "boot", make([]byte, 32), "age1x", nil)
	rep, certs, err := sim.Report(rd)
	if err != nil {
		t.Fatal(err)
	}
	p := &snpcheck.Policy{Roots: map[string][]*trust.AMDRootCerts{line: {root}}, AllowSMT: true, MinTCB: high}
	if res, ref := p.Check(rep, certs, rd, [][]byte{m}); ref != nil || res.MeasurementHex() != hex.EncodeToString(m) {
		t.Fatalf("refused: %v", ref)
	}
	other := rd
	other[0] ^= 1
	if _, ref := p.Check(rep, certs, other, [][]byte{m}); ref == nil || ref.Code != snpcheck.CodeReportData {
		t.Fatalf("report data: %v", ref)
	}
	p.MinTCB.UcodeSpl = 251
	if _, ref := p.Check(rep, certs, rd, [][]byte{m}); ref == nil || ref.Code != snpcheck.CodeTCB {
		t.Fatalf("tcb: %v", ref)
	}
	p.MinTCB.UcodeSpl = 0
	// A report with its signature flipped.
	bad := append([]byte(nil), rep...)
	bad[0x2A0+5] ^= 1
	if _, ref := p.Check(bad, certs, rd, [][]byte{m}); ref == nil || ref.Code != snpcheck.CodeVerification {
		t.Fatalf("bad signature: %v", ref)
	}
	// A changed field (the measurement) breaks the signature too.
	bad = append([]byte(nil), rep...)
	bad[0x90] ^= 1
	if _, ref := p.Check(bad, certs, rd, [][]byte{m}); ref == nil || ref.Code != snpcheck.CodeVerification {
		t.Fatalf("altered measurement: %v", ref)
	}
	// No certificate table (and no network fetching): refused.
	if _, ref := p.Check(rep, nil, rd, [][]byte{m}); ref == nil || ref.Code != snpcheck.CodeVerification {
		t.Fatalf("no certs: %v", ref)
	}
	if _, ref := p.Check(rep, []byte{1, 2, 3}, rd, [][]byte{m}); ref == nil || ref.Code != snpcheck.CodeBadCerts {
		t.Fatalf("garbage certs: %v", ref)
	}
	if _, ref := p.Check(rep[:100], certs, rd, [][]byte{m}); ref == nil || ref.Code != snpcheck.CodeBadReport {
		t.Fatalf("short report: %v", ref)
	}
}

// --min-tcb: a published floor by name, a floor for every line, a line's
// own; later values only raise, and a line's floor never drops below the
// one for every line.
func TestParseMinTCBs(t *testing.T) {
	all, byLine, err := snpcheck.ParseMinTCBs([]string{"amd-sb-3019", "bl=2", "Genoa:snp=25", "Milan:snp=1"})
	if err != nil {
		t.Fatal(err)
	}
	if all != (kds.TCBParts{BlSpl: 2}) {
		t.Errorf("floor for every line: %+v", all)
	}
	if byLine["Milan"] != (kds.TCBParts{BlSpl: 2, SnpSpl: 24, UcodeSpl: 213}) || byLine["Genoa"] != (kds.TCBParts{BlSpl: 2, SnpSpl: 25}) {
		t.Errorf("per line: %+v", byLine)
	}
	for _, bad := range []string{"Pentium:snp=1", "Milan:", "snp=x", "amd-sb-9999"} {
		if _, _, err := snpcheck.ParseMinTCBs([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// With a KDS cache, a report without certificates whose VCEK the cache does
// not hold (and, offline, cannot get) is vcek-unavailable, for the relay to
// retry, only if a pinned root could verify its product line at all;
// otherwise there is nothing to wait for.
func TestMissingVCEKFromCache(t *testing.T) {
	dir := t.TempDir()
	if err := snpsim.Init(dir, snpsim.InitOptions{RSABits: 2048}); err != nil {
		t.Fatal(err)
	}
	m := bytes.Repeat([]byte{0xcd}, 48)
	sim, err := snpsim.Load(dir, snpsim.Options{Measurement: m, Policy: 0x20000, NoCertTable: true})
	if err != nil {
		t.Fatal(err)
	}
	var rd [64]byte
	rep, certs, err := sim.Report(rd)
	if err != nil || certs != nil {
		t.Fatalf("report %v, certs %d bytes", err, len(certs))
	}
	roots, err := snpcheck.AMDRoots()
	if err != nil {
		t.Fatal(err)
	}
	withoutMilan := map[string][]*trust.AMDRootCerts{"Genoa": roots["Genoa"], "Turin": roots["Turin"]}
	for _, tc := range []struct {
		roots map[string][]*trust.AMDRootCerts
		want  string
	}{
		{roots, snpcheck.CodeVCEKUnavailable},
		{withoutMilan, snpcheck.CodeVerification},
	} {
		cache, err := kdscache.Open(filepath.Join(t.TempDir(), "kds"), kdscache.Anchors("amd", tc.roots), kdscache.Options{Offline: true})
		if err != nil {
			t.Fatal(err)
		}
		p := &snpcheck.Policy{Roots: tc.roots, KDS: cache, FetchCerts: true}
		if err := p.Prepare(context.Background(), rep, nil, rd, [][]byte{m}); err == nil {
			t.Error("offline cache prepared a VCEK it cannot have")
		}
		if _, ref := p.Check(rep, nil, rd, [][]byte{m}); ref == nil || ref.Code != tc.want {
			t.Errorf("lines %d: refusal %v, want %s", len(tc.roots), ref, tc.want)
		}
	}
}

// Checks gives every refusal, in Check's order, for a verifier that prints
// one line per check; Check gives the first. The report here breaks three
// rules at once: it chains to no trusted root, its policy allows debugging
// and its TCB is below the floor.
func TestChecksGivesEveryRefusal(t *testing.T) {
	dir := t.TempDir()
	if err := snpsim.Init(dir, snpsim.InitOptions{RSABits: 2048}); err != nil {
		t.Fatal(err)
	}
	m := bytes.Repeat([]byte{0xab}, 48)
	sim, err := snpsim.Load(dir, snpsim.Options{Measurement: m, Policy: 0x20000 | 1<<19}) // bit 17 is always set; bit 19: DEBUG
	if err != nil {
		t.Fatal(err)
	}
	var rd [64]byte
	rep, certs, err := sim.Report(rd)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := snpcheck.AMDRoots()
	if err != nil {
		t.Fatal(err)
	}
	p := &snpcheck.Policy{Roots: roots, MinTCB: kds.TCBParts{SnpSpl: 200}}
	res, refusals := p.Checks(rep, certs, rd, [][]byte{m})
	var codes []string
	for _, r := range refusals {
		codes = append(codes, r.Code)
	}
	want := []string{snpcheck.CodeVerification, snpcheck.CodePolicyDebug, snpcheck.CodeTCB}
	if strings.Join(codes, " ") != strings.Join(want, " ") || res.Verified {
		t.Fatalf("refusals %v (verified %v), want %v", codes, res.Verified, want)
	}
	if _, first := p.Check(rep, certs, rd, [][]byte{m}); first == nil || first.Code != want[0] {
		t.Fatalf("Check: %v, want the first refusal %s", first, want[0])
	}
}
