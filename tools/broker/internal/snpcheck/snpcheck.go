// Package snpcheck decides whether an SEV-SNP attestation report is good
// enough for the broker to release a relay's keys: the report's signature and
// its VCEK chain up to a pinned AMD root (go-sev-guest verify), then its
// fields against the broker's policy (go-sev-guest validate, preceded by
// explicit checks that give each refusal a precise reason).
package snpcheck

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/validate"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"

	"diskless-relays/tools/broker/internal/kdscache"
	"diskless-relays/tools/broker/internal/protocol"
)

// Refusal is a failed check: Code is a stable reason class (returned to the
// client and logged), Detail the full explanation (logged only).
type Refusal struct {
	Code   string
	Detail string
}

func (r *Refusal) Error() string { return r.Code + ": " + r.Detail }

func refuse(code, format string, args ...any) *Refusal {
	return &Refusal{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// Refusal codes.
const (
	CodeBadReport          = "bad-report"
	CodeBadCerts           = "bad-certs"
	CodeVerification       = "snp-verification"
	CodeReportData         = "report-data-mismatch"
	CodePolicyDebug        = "policy-debug"
	CodePolicyMigration    = "policy-migration-agent"
	CodePolicySMT          = "policy-smt"
	CodeTCB                = "tcb-below-minimum"
	CodeMeasurement        = "measurement-mismatch"
	CodeValidation         = "snp-validation"
	CodeNoMeasurementsConf = "no-measurements"
	CodeVMPL               = "vmpl-not-zero"
	// CodeVCEKUnavailable: the report came without its VCEK and the broker
	// could not have it from its KDS cache or AMD's KDS now; the relay
	// retries later.
	CodeVCEKUnavailable = "vcek-unavailable"
	// CodeCRLUnavailable: revocations are checked and the broker holds no CRL
	// younger than --crl-max-age; it fails closed until KDS is reachable
	// again or a current CRL is imported (key-broker kds import).
	CodeCRLUnavailable = "crl-unavailable"
	// CodeCertRevoked: the report's ASK or VCEK is in AMD's CRL.
	CodeCertRevoked = "cert-revoked"
)

// Policy is the broker's SNP acceptance policy.
type Policy struct {
	// Roots are the trusted ARK/ASK pairs by product line: AMD's.
	Roots map[string][]*trust.AMDRootCerts
	// SimulatedRoots are the local stack's test chain, trusted only when the
	// broker is started to allow it; a report they verify says so (Result.Root).
	SimulatedRoots map[string][]*trust.AMDRootCerts
	// AllowSMT accepts guests whose policy permits SMT.
	AllowSMT bool
	// MinTCB is the component-wise minimum REPORTED_TCB for a product line
	// with no floor of its own in MinTCBByLine.
	MinTCB kds.TCBParts
	// MinTCBByLine holds floors per product line ("Milan", "Genoa", …).
	MinTCBByLine map[string]kds.TCBParts
	// PermitProvisionalFirmware accepts committed < current firmware.
	PermitProvisionalFirmware bool
	// FetchCerts completes a report that comes without its VCEK: from KDS
	// (through the cache, when KDS is set); otherwise the certificate table
	// must carry the VCEK.
	FetchCerts bool
	// CheckRevocations refuses a report whose ASK or VCEK is in AMD's CRL.
	CheckRevocations bool
	// KDS is the broker's KDS cache. With it, Check never touches the
	// network: Prepare fetches beforehand what Check will need, and Check
	// reads VCEKs and CRLs from the cache. Without it, go-sev-guest fetches
	// on its own (straight from kdsintf.amd.com, under the caller's locks).
	KDS *kdscache.Cache
}

// Prepare fetches from KDS, through the cache, what Check will need for this
// report: its VCEK if the certificate table lacks it, and a due refresh of
// the CRL of the root its VCEK chains to. It is meant to run outside the
// broker's lock; its errors are only for the log, since Check decides from
// what the cache holds. It fetches nothing for a report that does not bind
// wantReportData or carries none of measurements, checks that cost nothing
// and keep a client from spending the broker's KDS budget with a report that
// Check would refuse anyway.
func (p *Policy) Prepare(ctx context.Context, report, certs []byte, wantReportData [protocol.ReportDataSize]byte, measurements [][]byte) error {
	if p.KDS == nil || (!p.FetchCerts && !p.CheckRevocations) || len(report) != abi.ReportSize || len(certs) > protocol.MaxCertTableSize {
		return nil
	}
	rep, err := abi.ReportToProto(report)
	if err != nil || !bytes.Equal(rep.GetReportData(), wantReportData[:]) {
		return nil
	}
	registered := false
	for _, m := range measurements {
		registered = registered || bytes.Equal(m, rep.GetMeasurement())
	}
	if !registered {
		return nil
	}
	var vcek []byte
	if len(certs) > 0 {
		table := new(abi.CertTable)
		if err := table.Unmarshal(certs); err != nil {
			return nil
		}
		vcek = table.Proto().GetVcekCert()
	}
	if len(vcek) == 0 {
		if !p.FetchCerts {
			return nil
		}
		fms := rep.GetCpuid1EaxFms()
		if fms == 0 {
			return errors.New("a version 2 report names no product line; its VCEK cannot be fetched")
		}
		vcek, err = p.KDS.VCEK(ctx, kds.ProductLineFromFms(fms), rep.GetChipId(), rep.GetReportedTcb())
		if err != nil {
			return err
		}
	}
	if !p.CheckRevocations {
		return nil
	}
	a, err := p.KDS.AnchorOf(vcek)
	if err != nil {
		return nil
	}
	return p.KDS.RefreshCRL(ctx, a.Name)
}

// Result carries what the report says, for the log; filled as far as the
// report could be parsed, also on refusal.
type Result struct {
	Measurement []byte
	ReportedTCB uint64
	Policy      uint64
	// Verified: the report's signature chains to a trusted root, so the
	// report is genuine (whatever the checks after that decided).
	Verified bool
	// Root is the root that verified it: "amd/<line>" or "simulated/<line>".
	Root string
}

// MeasurementHex is the measurement in hex, or "".
func (r Result) MeasurementHex() string { return hex.EncodeToString(r.Measurement) }

// TCBString renders the reported TCB as hex and components.
func (r Result) TCBString() string {
	if r.Measurement == nil {
		return ""
	}
	return FormatTCB(r.ReportedTCB)
}

// PolicyString renders the guest policy as hex.
func (r Result) PolicyString() string {
	if r.Measurement == nil {
		return ""
	}
	return fmt.Sprintf("0x%x", r.Policy)
}

// FormatTCB renders a TCB_VERSION as "0x… (bl=…,tee=…,snp=…,ucode=…)".
func FormatTCB(tcb uint64) string {
	p := kds.DecomposeTCBVersion(kds.TCBVersion(tcb))
	return fmt.Sprintf("0x%016x (bl=%d,tee=%d,snp=%d,ucode=%d)", tcb, p.BlSpl, p.TeeSpl, p.SnpSpl, p.UcodeSpl)
}

// ParseTCB accepts either a hex TCB_VERSION ("0x…") or a component list
// "bl=N,tee=N,snp=N,ucode=N" (omitted components are 0).
func ParseTCB(s string) (kds.TCBParts, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return kds.TCBParts{}, nil
	}
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		v, err := strconv.ParseUint(s[2:], 16, 64)
		if err != nil {
			return kds.TCBParts{}, fmt.Errorf("bad TCB %q: %v", s, err)
		}
		return kds.DecomposeTCBVersion(kds.TCBVersion(v)), nil
	}
	var p kds.TCBParts
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return p, fmt.Errorf("bad TCB component %q (want name=value)", kv)
		}
		n, err := strconv.ParseUint(v, 10, 8)
		if err != nil {
			return p, fmt.Errorf("bad TCB component %q: %v", kv, err)
		}
		switch k {
		case "bl":
			p.BlSpl = uint8(n)
		case "tee":
			p.TeeSpl = uint8(n)
		case "snp":
			p.SnpSpl = uint8(n)
		case "ucode":
			p.UcodeSpl = uint8(n)
		default:
			return p, fmt.Errorf("unknown TCB component %q (bl, tee, snp, ucode)", k)
		}
	}
	if _, err := kds.ComposeTCBParts(p); err != nil {
		return p, err
	}
	return p, nil
}

// AMDRoots returns AMD's production ARK/ASK (and ARK/ASVK) certificates for
// Milan, Genoa and Turin as embedded in go-sev-guest.
func AMDRoots() (map[string][]*trust.AMDRootCerts, error) {
	bundles := []struct {
		line       string
		vcek, vlek []byte
	}{
		{"Milan", trust.AskArkMilanVcekBytes, trust.AskArkMilanVlekBytes},
		{"Genoa", trust.AskArkGenoaVcekBytes, trust.AskArkGenoaVlekBytes},
		{"Turin", trust.AskArkTurinVcekBytes, trust.AskArkTurinVlekBytes},
	}
	roots := map[string][]*trust.AMDRootCerts{}
	for _, b := range bundles {
		r := trust.AMDRootCertsProduct(b.line)
		if err := r.FromKDSCertBytes(b.vcek); err != nil {
			return nil, fmt.Errorf("embedded %s VCEK roots: %v", b.line, err)
		}
		// The VLEK chain has its own intermediate (ASVK) under the same ARK.
		vlek := &trust.ProductCerts{}
		if err := vlek.FromKDSCertBytes(b.vlek); err == nil && vlek.Asvk != nil && vlek.Ark != nil && vlek.Ark.Equal(r.ProductCerts.Ark) {
			r.ProductCerts.Asvk = vlek.Asvk
		}
		roots[b.line] = append(roots[b.line], r)
	}
	return roots, nil
}

// ParseRootsPEM reads an ARK/ASK pair in AMD KDS cert_chain order (the ASK
// PEM block, then the ARK) and returns it under its product line, taken from
// the ARK's common name "ARK-<line>".
func ParseRootsPEM(data []byte) (string, *trust.AMDRootCerts, error) {
	ask, rest := pem.Decode(data)
	if ask == nil {
		return "", nil, errors.New("no PEM certificate found")
	}
	ark, _ := pem.Decode(rest)
	if ark == nil {
		return "", nil, errors.New("want two PEM certificates (ASK then ARK)")
	}
	arkCert, err := x509.ParseCertificate(ark.Bytes)
	if err != nil {
		return "", nil, fmt.Errorf("ARK: %v", err)
	}
	line, ok := strings.CutPrefix(arkCert.Subject.CommonName, "ARK-")
	if !ok {
		return "", nil, fmt.Errorf("ARK common name %q is not ARK-<product line>", arkCert.Subject.CommonName)
	}
	if _, err := kds.ParseProductLine(line); err != nil {
		return "", nil, err
	}
	r := trust.AMDRootCertsProduct(line)
	if err := r.FromKDSCertBytes(data); err != nil {
		return "", nil, err
	}
	if r.ProductCerts.Ark == nil || (r.ProductCerts.Ask == nil && r.ProductCerts.Asvk == nil) {
		return "", nil, errors.New("incomplete ARK/ASK pair")
	}
	if err := r.ProductCerts.Ark.CheckSignatureFrom(r.ProductCerts.Ark); err != nil {
		return "", nil, fmt.Errorf("ARK is not self-signed: %v", err)
	}
	ica := r.ProductCerts.Ask
	if ica == nil {
		ica = r.ProductCerts.Asvk
	}
	if err := ica.CheckSignatureFrom(r.ProductCerts.Ark); err != nil {
		return "", nil, fmt.Errorf("ASK is not signed by the ARK: %v", err)
	}
	return line, r, nil
}

// Check verifies report (the 1184-byte ATTESTATION_REPORT) with its
// certificate table certs (may be empty) against the policy: the report
// must bind wantReportData and carry one of measurements. It returns the
// first refusal of Checks.
func (p *Policy) Check(report, certs []byte, wantReportData [protocol.ReportDataSize]byte, measurements [][]byte) (Result, *Refusal) {
	res, refusals := p.Checks(report, certs, wantReportData, measurements)
	if len(refusals) > 0 {
		return res, refusals[0]
	}
	return res, nil
}

// Checks runs Check's checks and returns every refusal, in Check's order,
// for a verifier that reports each check on its own line. A report that
// cannot be read, or a missing configuration, gives one refusal; a report
// whose chain fails still has its fields checked (its Result says it is not
// Verified); go-sev-guest's full field validation runs only when every
// explicit check held, as its failures would repeat theirs.
func (p *Policy) Checks(report, certs []byte, wantReportData [protocol.ReportDataSize]byte, measurements [][]byte) (Result, []*Refusal) {
	var res Result
	one := func(r *Refusal) []*Refusal { return []*Refusal{r} }
	if len(report) != abi.ReportSize {
		return res, one(refuse(CodeBadReport, "report is %d bytes, want %d", len(report), abi.ReportSize))
	}
	if len(certs) > protocol.MaxCertTableSize {
		return res, one(refuse(CodeBadCerts, "certificate table is %d bytes, limit %d", len(certs), protocol.MaxCertTableSize))
	}
	rep, err := abi.ReportToProto(report)
	if err != nil {
		return res, one(refuse(CodeBadReport, "cannot parse report: %v", err))
	}
	res = Result{Measurement: rep.GetMeasurement(), ReportedTCB: rep.GetReportedTcb(), Policy: rep.GetPolicy()}
	if len(measurements) == 0 {
		return res, one(refuse(CodeNoMeasurementsConf, "image has no registered measurement"))
	}
	chain := &spb.CertificateChain{Extras: map[string][]byte{}}
	if len(certs) > 0 {
		table := new(abi.CertTable)
		if err := table.Unmarshal(certs); err != nil {
			return res, one(refuse(CodeBadCerts, "cannot parse certificate table: %v", err))
		}
		chain = table.Proto()
	}
	att := &spb.Attestation{Report: rep, CertificateChain: chain}

	// 1. Signature and chain to a pinned root. The ARK/ASK in the
	// certificate table are ignored: only p.Roots are trusted.
	vopts := &verify.Options{
		TrustedRoots:        p.Roots,
		DisableCertFetching: !p.FetchCerts,
		CheckRevocations:    p.CheckRevocations,
		Now:                 time.Now(),
	}
	if p.KDS != nil {
		// The cache answers go-sev-guest's KDS requests without network.
		// Revocations are checked below, from the cache: go-sev-guest's own
		// check fetches the CRL whenever its NextUpdate has passed, holds it
		// in memory only, has no age limit and looks at the ASK alone.
		vopts.Getter = p.KDS.Getter()
		vopts.CheckRevocations = false
	}
	if len(p.Roots) == 0 && len(p.SimulatedRoots) == 0 {
		return res, one(refuse(CodeVerification, "no trusted roots configured"))
	}
	var refusals []*Refusal
	line, root, err := p.verifyChain(att, vopts)
	var missing *trust.AttestationRecreationErr
	if l := kds.ProductLineFromFms(rep.GetCpuid1EaxFms()); errors.As(err, &missing) && len(p.Roots[l])+len(p.SimulatedRoots[l]) == 0 {
		// Nothing to wait for: no pinned root would verify this product line.
		refusals = append(refusals, refuse(CodeVerification, "no trusted root for product line %q: %v", l, err))
	} else if errors.As(err, &missing) {
		refusals = append(refusals, refuse(CodeVCEKUnavailable, "the report carries no VCEK and the broker has none for chip %x… at TCB %s: %v; the relay should retry later", rep.GetChipId()[:8], FormatTCB(rep.GetReportedTcb()), err))
	} else if err != nil {
		refusals = append(refusals, refuse(CodeVerification, "%v", err))
	} else {
		res.Verified, res.Root = true, root+"/"+line
	}
	if !res.Verified {
		// The floor of the line the report names (an unverified report's
		// fields are checked all the same, for the verifier's other lines).
		line = kds.ProductLineFromFms(rep.GetCpuid1EaxFms())
	}
	if res.Verified && p.KDS != nil && p.CheckRevocations {
		vcek, err := x509.ParseCertificate(att.GetCertificateChain().GetVcekCert())
		var revoked *kdscache.RevokedError
		if err != nil {
			refusals = append(refusals, refuse(CodeVerification, "VCEK: %v", err))
		} else if err := p.KDS.CheckRevoked(res.Root, vcek); errors.As(err, &revoked) {
			refusals = append(refusals, refuse(CodeCertRevoked, "%v (AMD's CRL for %s)", err, res.Root))
		} else if err != nil {
			refusals = append(refusals, refuse(CodeCRLUnavailable, "revocation cannot be checked: %v", err))
		}
	}

	// 2. Explicit checks, each with its own reason.
	if !bytes.Equal(rep.GetReportData(), wantReportData[:]) {
		refusals = append(refusals, refuse(CodeReportData, "REPORT_DATA %x does not bind this session (want %x)", rep.GetReportData(), wantReportData))
	}
	pol, err := abi.ParseSnpPolicy(rep.GetPolicy())
	if err != nil {
		return res, append(refusals, refuse(CodeBadReport, "guest policy: %v", err))
	}
	if pol.Debug {
		refusals = append(refusals, refuse(CodePolicyDebug, "guest policy 0x%x allows debugging (host can decrypt guest memory)", rep.GetPolicy()))
	}
	if pol.MigrateMA {
		refusals = append(refusals, refuse(CodePolicyMigration, "guest policy 0x%x allows a migration agent", rep.GetPolicy()))
	}
	if pol.SMT && !p.AllowSMT {
		refusals = append(refusals, refuse(CodePolicySMT, "guest policy 0x%x allows SMT and the broker was not started with --allow-smt", rep.GetPolicy()))
	}
	// VMPL 0 is the guest's most privileged level: a report requested from a
	// lower level (an SVSM's guest, say) does not speak for the whole guest.
	if rep.GetVmpl() != 0 {
		refusals = append(refusals, refuse(CodeVMPL, "report was requested at VMPL %d; only VMPL 0 speaks for the guest", rep.GetVmpl()))
	}
	minTCB := p.minTCBFor(line)
	reported := kds.DecomposeTCBVersion(kds.TCBVersion(rep.GetReportedTcb()))
	if !kds.TCBPartsLE(minTCB, reported) {
		refusals = append(refusals, refuse(CodeTCB, "reported TCB %s of this %s is below the minimum %s", FormatTCB(rep.GetReportedTcb()), line, formatParts(minTCB)))
	}
	var matched []byte
	for _, m := range measurements {
		if bytes.Equal(m, rep.GetMeasurement()) {
			matched = m
			break
		}
	}
	if matched == nil {
		refusals = append(refusals, refuse(CodeMeasurement, "measurement %x is not registered for this image", rep.GetMeasurement()))
	}
	if len(refusals) > 0 {
		return res, refusals
	}

	// 3. go-sev-guest's full field validation (TCB consistency between the
	// report and the VCEK, firmware versions, CHIP_ID vs VCEK HWID, …).
	vmopts := &validate.Options{
		GuestPolicy:               abi.SnpPolicy{SMT: p.AllowSMT},
		ReportData:                wantReportData[:],
		Measurement:               matched,
		MinimumTCB:                minTCB,
		PermitProvisionalFirmware: p.PermitProvisionalFirmware,
	}
	if err := validate.SnpAttestation(att, vmopts); err != nil {
		refusals = append(refusals, refuse(CodeValidation, "%v", err))
	}
	return res, refusals
}

// verifyChain checks the report's signature and VCEK chain against one
// product line's roots at a time, AMD's before the simulated ones, and says
// which verified it.
func (p *Policy) verifyChain(att *spb.Attestation, vopts *verify.Options) (line, root string, err error) {
	var errs []string
	for _, set := range []struct {
		name  string
		roots map[string][]*trust.AMDRootCerts
	}{{"amd", p.Roots}, {"simulated", p.SimulatedRoots}} {
		for l, r := range set.roots {
			o := *vopts
			o.TrustedRoots = map[string][]*trust.AMDRootCerts{l: r}
			e := verify.SnpAttestation(att, &o)
			if e == nil {
				return l, set.name, nil
			}
			// A VCEK that cannot be had is missing for every root alike.
			var missing *trust.AttestationRecreationErr
			if errors.As(e, &missing) {
				return "", "", e
			}
			errs = append(errs, fmt.Sprintf("%s %s: %v", set.name, l, e))
		}
	}
	return "", "", errors.New(strings.Join(errs, "; "))
}

func (p *Policy) minTCBFor(line string) kds.TCBParts {
	if m, ok := p.MinTCBByLine[line]; ok {
		return m
	}
	return p.MinTCB
}

func formatParts(t kds.TCBParts) string {
	return fmt.Sprintf("bl=%d,tee=%d,snp=%d,ucode=%d", t.BlSpl, t.TeeSpl, t.SnpSpl, t.UcodeSpl)
}

// PublishedFloors are firmware floors AMD has published, by name, for
// --min-tcb NAME: the lowest TCB per product line that carries a fix.
//
// amd-sb-3019: AMD-SB-3019 (February 2025; CVE-2024-56161, a microcode
// signature flaw that lets a host with ring 0 load malicious microcode and
// so break SEV-SNP). Its fixed SEV firmware is TCB[SNP] 0x18 (24) on Milan
// and 0x17 (23) on Genoa, as microsoft/CCF#6812 reads the bulletin; Milan's
// fixed microcode 0x0A0011D5 is TCB[UCODE] 0xD5 (213). Components the
// bulletin names no floor for stay 0 here.
var PublishedFloors = map[string]map[string]kds.TCBParts{
	"amd-sb-3019": {
		"Milan": {SnpSpl: 24, UcodeSpl: 213},
		"Genoa": {SnpSpl: 23},
	},
}

// ParseMinTCBs reads the --min-tcb values: a published floor's name
// (PublishedFloors), a TCB for every product line ("bl=N,tee=N,snp=N,ucode=N"
// or "0x…"), or "LINE:TCB" for one line. Later values raise earlier ones,
// component by component.
func ParseMinTCBs(values []string) (all kds.TCBParts, byLine map[string]kds.TCBParts, err error) {
	byLine = map[string]kds.TCBParts{}
	raise := func(a, b kds.TCBParts) kds.TCBParts {
		return kds.TCBParts{BlSpl: max(a.BlSpl, b.BlSpl), TeeSpl: max(a.TeeSpl, b.TeeSpl), SnpSpl: max(a.SnpSpl, b.SnpSpl), UcodeSpl: max(a.UcodeSpl, b.UcodeSpl)}
	}
	for _, v := range values {
		if floor, ok := PublishedFloors[v]; ok {
			for line, tcb := range floor {
				byLine[line] = raise(byLine[line], tcb)
			}
			continue
		}
		line, rest, perLine := strings.Cut(v, ":")
		if !perLine {
			rest = v
		} else if _, err := kds.ParseProductLine(line); err != nil {
			return all, nil, fmt.Errorf("--min-tcb %q: %q is not a product line (Milan, Genoa, Turin)", v, line)
		}
		if strings.TrimSpace(rest) == "" {
			return all, nil, fmt.Errorf("--min-tcb %q gives no TCB", v)
		}
		tcb, err := ParseTCB(rest)
		if err != nil {
			return all, nil, fmt.Errorf("--min-tcb %q: %v", v, err)
		}
		if perLine {
			byLine[line] = raise(byLine[line], tcb)
		} else {
			all = raise(all, tcb)
		}
	}
	// A line's own floor never lowers the one for every line.
	for line, tcb := range byLine {
		byLine[line] = raise(tcb, all)
	}
	return all, byLine, nil
}
