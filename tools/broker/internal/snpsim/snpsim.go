// Package snpsim is a TEST-ONLY stand-in for an AMD secure processor: it
// holds a made-up ARK → ASK → VCEK chain and signs SEV-SNP attestation
// reports in the real ABI layout with it. It runs on the host; the guest only
// ever sees the reports and certificates, never a key.
//
// A broker trusts its chain only when started with
// --allow-simulated-attestation --simulated-ark-ask DIR/ark-ask.pem.
package snpsim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	sevtest "github.com/google/go-sev-guest/testing"
	"github.com/google/uuid"

	"diskless-relays/tools/broker/internal/fsutil"
)

// Files written by Init.
const (
	ArkAskFile  = "ark-ask.pem"    // ASK then ARK certificate (public): what the broker pins
	AskKeyFile  = "ask.key"        // ASK private key: certifies VCEKs for a chip ID and TCB
	VcekKeyFile = "vcek.key"       // VCEK private key: signs reports
	InfoFile    = "simulator.json" // product name and default chip ID
	// ArkKeyFile is the ARK private key, kept only with InitOptions.KeepArkKey:
	// the KDS double (internal/kdssim) signs its CRL with it, as AMD's ARK
	// signs AMD's.
	ArkKeyFile = "ark.key"
)

// DefaultProductName is the product the simulator claims to be.
const DefaultProductName = "Milan-B1"

// DefaultPolicy is QEMU's default sev-snp-guest policy: reserved bit 17 and
// SMT allowed.
const DefaultPolicy = 0x30000

// DefaultTCB is the TCB_VERSION reported unless --tcb says otherwise.
var DefaultTCB = kds.TCBParts{BlSpl: 3, TeeSpl: 0, SnpSpl: 24, UcodeSpl: 213}

type info struct {
	ProductName string `json:"productName"`
	ChipID      string `json:"chipId"`
	CreatedAt   string `json:"createdAt"`
	Warning     string `json:"warning"`
}

// InitOptions tune Init; zero values give the defaults.
type InitOptions struct {
	ProductName string
	// RSABits is the ARK/ASK key size; AMD uses 4096.
	RSABits int
	// KeepArkKey writes the ARK private key to ArkKeyFile, for a KDS double
	// that must sign CRLs. The local stack's simulator never keeps it.
	KeepArkKey bool
}

// Init creates a new test-only chain in dir (created 0700; it must not hold
// a chain already).
func Init(dir string, o InitOptions) error {
	if o.ProductName == "" {
		o.ProductName = DefaultProductName
	}
	if o.RSABits == 0 {
		o.RSABits = 4096
	}
	if _, err := kds.ParseProductName(o.ProductName, abi.VcekReportSigner); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []string{ArkAskFile, AskKeyFile, VcekKeyFile, InfoFile, ArkKeyFile} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("%s already exists; refusing to overwrite", filepath.Join(dir, f))
		}
	}
	ark, err := rsa.GenerateKey(rand.Reader, o.RSABits)
	if err != nil {
		return err
	}
	ask, err := rsa.GenerateKey(rand.Reader, o.RSABits)
	if err != nil {
		return err
	}
	vcek, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return err
	}
	created := time.Now().Add(-24 * time.Hour).UTC()
	b := &sevtest.AmdSignerBuilder{
		// The ASVK (VLEK intermediate) is unused here; the builder needs
		// a key for it, so it shares the ASK's.
		Keys:             &sevtest.AmdKeys{Ark: ark, Ask: ask, Asvk: ask, Vcek: vcek},
		ProductName:      o.ProductName,
		ArkCreationTime:  created,
		AskCreationTime:  created,
		AsvkCreationTime: created,
		VcekCreationTime: created,
	}
	signer, err := b.TestOnlyCertChain()
	if err != nil {
		return err
	}
	var chain []byte
	chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: signer.Ask.Raw})...)
	chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: signer.Ark.Raw})...)
	askDER, err := x509.MarshalPKCS8PrivateKey(ask)
	if err != nil {
		return err
	}
	vcekDER, err := x509.MarshalPKCS8PrivateKey(vcek)
	if err != nil {
		return err
	}
	chip := make([]byte, abi.ChipIDSize)
	if _, err := rand.Read(chip); err != nil {
		return err
	}
	inf, _ := json.MarshalIndent(info{
		ProductName: o.ProductName,
		ChipID:      hex.EncodeToString(chip),
		CreatedAt:   time.Now().UTC().Format(time.RFC3339),
		Warning:     "TEST-ONLY simulated AMD SEV-SNP chain; never trust it in production",
	}, "", "  ")
	// The ARK private key is not kept unless asked for: like AMD's root, it
	// signs the ASK once and is gone (a KDS double also signs CRLs with it).
	type file struct {
		name string
		data []byte
		perm os.FileMode
	}
	files := []file{
		{AskKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: askDER}), 0o600},
		{VcekKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: vcekDER}), 0o600},
		{InfoFile, append(inf, '\n'), 0o600},
		{ArkAskFile, chain, 0o644},
	}
	if o.KeepArkKey {
		arkDER, err := x509.MarshalPKCS8PrivateKey(ark)
		if err != nil {
			return err
		}
		files = append(files, file{ArkKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: arkDER}), 0o600})
	}
	for _, w := range files {
		if err := fsutil.CreateExclusive(filepath.Join(dir, w.name), w.data, w.perm); err != nil {
			return err
		}
	}
	return nil
}

// Options choose what the simulated guest looks like.
type Options struct {
	// Measurement is the 48-byte launch measurement to report.
	Measurement []byte
	// Policy is the guest policy to report (default DefaultPolicy).
	Policy uint64
	// ChipID overrides the chip ID from simulator.json (64 bytes).
	ChipID []byte
	// TCB overrides DefaultTCB (reported, current, committed and launch).
	TCB *kds.TCBParts
	// VMPL is the privilege level the report is requested at (tests of a
	// lower level's report; a guest asks at 0).
	VMPL uint32
	// NoCertTable answers reports without a certificate table, like a host
	// that does not provision the extended report's certificates: the
	// broker then needs the VCEK from AMD's KDS (or its cache).
	NoCertTable bool
}

// Simulator signs reports.
type Simulator struct {
	product     *spb.SevProduct
	vcekKey     *ecdsa.PrivateKey
	certTable   []byte
	measurement []byte
	policy      uint64
	chipID      []byte
	tcb         uint64
	vmpl        uint32
	noCerts     bool
}

// Load reads a chain made by Init and issues a VCEK certificate for the
// chip ID and TCB (as AMD's KDS would).
func Load(dir string, o Options) (*Simulator, error) {
	if len(o.Measurement) != abi.MeasurementSize {
		return nil, fmt.Errorf("measurement must be %d bytes", abi.MeasurementSize)
	}
	if o.Policy == 0 {
		o.Policy = DefaultPolicy
	}
	if _, err := abi.ParseSnpPolicy(o.Policy); err != nil {
		return nil, fmt.Errorf("policy: %v", err)
	}
	infData, err := os.ReadFile(filepath.Join(dir, InfoFile))
	if err != nil {
		return nil, err
	}
	var inf info
	if err := json.Unmarshal(infData, &inf); err != nil {
		return nil, fmt.Errorf("%s: %v", InfoFile, err)
	}
	product, err := kds.ParseProductName(inf.ProductName, abi.VcekReportSigner)
	if err != nil {
		return nil, err
	}
	chip := o.ChipID
	if chip == nil {
		chip, err = hex.DecodeString(inf.ChipID)
		if err != nil {
			return nil, fmt.Errorf("%s: chipId: %v", InfoFile, err)
		}
	}
	if len(chip) != abi.ChipIDSize {
		return nil, fmt.Errorf("chip ID must be %d bytes", abi.ChipIDSize)
	}
	tcbParts := DefaultTCB
	if o.TCB != nil {
		tcbParts = *o.TCB
	}
	tcb, err := kds.ComposeTCBParts(tcbParts)
	if err != nil {
		return nil, err
	}
	iss, err := LoadIssuer(dir)
	if err != nil {
		return nil, err
	}
	vcekDER, err := iss.VCEK(chip, tcbParts)
	if err != nil {
		return nil, err
	}
	table := abi.CertTable{Entries: []abi.CertTableEntry{
		{GUID: uuid.MustParse(abi.ArkGUID), RawCert: iss.Ark.Raw},
		{GUID: uuid.MustParse(abi.AskGUID), RawCert: iss.Ask.Raw},
		{GUID: uuid.MustParse(abi.VcekGUID), RawCert: vcekDER},
	}}
	return &Simulator{
		product:     product,
		vcekKey:     iss.vcekKey,
		certTable:   table.Marshal(),
		measurement: append([]byte(nil), o.Measurement...),
		policy:      o.Policy,
		chipID:      append([]byte(nil), chip...),
		tcb:         uint64(tcb),
		vmpl:        o.VMPL,
		noCerts:     o.NoCertTable,
	}, nil
}

// Issuer certifies what AMD's KDS serves for a chain made by Init: a VCEK
// certificate for any chip ID and TCB and, when the ARK key was kept, the
// product line's CRL. The simulator and the KDS double both issue through it.
type Issuer struct {
	ProductName string
	// ChainPEM is ark-ask.pem: the ASK then the ARK, as KDS's cert_chain.
	ChainPEM []byte
	Ark, Ask *x509.Certificate
	askKey   *rsa.PrivateKey
	arkKey   *rsa.PrivateKey // nil unless Init kept it
	vcekKey  *ecdsa.PrivateKey
}

// LoadIssuer reads the chain in dir.
func LoadIssuer(dir string) (*Issuer, error) {
	infData, err := os.ReadFile(filepath.Join(dir, InfoFile))
	if err != nil {
		return nil, err
	}
	var inf info
	if err := json.Unmarshal(infData, &inf); err != nil {
		return nil, fmt.Errorf("%s: %v", InfoFile, err)
	}
	chainPEM, err := os.ReadFile(filepath.Join(dir, ArkAskFile))
	if err != nil {
		return nil, err
	}
	askDER, arkDER, err := kds.ParseProductCertChain(chainPEM)
	if err != nil {
		return nil, err
	}
	askCert, err := x509.ParseCertificate(askDER)
	if err != nil {
		return nil, err
	}
	arkCert, err := x509.ParseCertificate(arkDER)
	if err != nil {
		return nil, err
	}
	askKey, err := readKey(filepath.Join(dir, AskKeyFile))
	if err != nil {
		return nil, err
	}
	askRSA, ok := askKey.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("ASK key is not RSA")
	}
	vk, err := readKey(filepath.Join(dir, VcekKeyFile))
	if err != nil {
		return nil, err
	}
	vcekKey, ok := vk.(*ecdsa.PrivateKey)
	if !ok || vcekKey.Curve != elliptic.P384() {
		return nil, errors.New("VCEK key is not ECDSA P-384")
	}
	iss := &Issuer{ProductName: inf.ProductName, ChainPEM: chainPEM, Ark: arkCert, Ask: askCert, askKey: askRSA, vcekKey: vcekKey}
	if _, err := os.Stat(filepath.Join(dir, ArkKeyFile)); err == nil {
		k, err := readKey(filepath.Join(dir, ArkKeyFile))
		if err != nil {
			return nil, err
		}
		if iss.arkKey, ok = k.(*rsa.PrivateKey); !ok {
			return nil, errors.New("ARK key is not RSA")
		}
	}
	return iss, nil
}

// VCEK certifies the chain's VCEK key for chip and tcb (DER), as KDS does.
func (i *Issuer) VCEK(chip []byte, tcb kds.TCBParts) ([]byte, error) {
	return issueVCEK(i.Ask, i.askKey, i.vcekKey, i.ProductName, chip, tcb)
}

// CRL issues the product line's certificate revocation list, signed by the
// ARK (RSASSA-PSS/SHA-384 like AMD's), revoking the given serial numbers.
// It needs the ARK key (InitOptions.KeepArkKey).
func (i *Issuer) CRL(number int64, thisUpdate, nextUpdate time.Time, revoked []*big.Int) ([]byte, error) {
	if i.arkKey == nil {
		return nil, fmt.Errorf("this chain kept no %s (InitOptions.KeepArkKey): cannot sign a CRL", ArkKeyFile)
	}
	var entries []x509.RevocationListEntry
	for _, sn := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: sn, RevocationTime: thisUpdate})
	}
	return x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		SignatureAlgorithm:        x509.SHA384WithRSAPSS,
		Number:                    big.NewInt(number),
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
		RevokedCertificateEntries: entries,
	}, i.Ark, i.arkKey)
}

func readKey(path string) (crypto.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PKCS#8 private key", path)
	}
	return x509.ParsePKCS8PrivateKey(blk.Bytes)
}

// issueVCEK certifies the VCEK for one chip ID and TCB the way AMD's KDS
// lays out a VCEK certificate: subject CN "SEV-VCEK", RSASSA-PSS/SHA-384 by
// the ASK, and the KDS extensions (product name, SPLs, HWID).
func issueVCEK(ask *x509.Certificate, askKey *rsa.PrivateKey, vcek *ecdsa.PrivateKey, productName string, chip []byte, tcb kds.TCBParts) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         "SEV-VCEK",
			Organization:       []string{"Advanced Micro Devices"},
			OrganizationalUnit: []string{"Engineering"},
			Country:            []string{"US"},
			Locality:           []string{"Santa Clara"},
			Province:           []string{"CA"},
			SerialNumber:       fmt.Sprintf("%x", serial),
		},
		NotBefore:          now.Add(-24 * time.Hour),
		NotAfter:           now.Add(7 * 365 * 24 * time.Hour),
		SignatureAlgorithm: x509.SHA384WithRSAPSS,
		ExtraExtensions:    sevtest.CustomExtensions(tcb, chip, "", productName),
	}
	return x509.CreateCertificate(rand.Reader, tmpl, ask, &vcek.PublicKey, askKey)
}

// CertTable returns the certificate table (ARK, ASK, VCEK) in the GHCB
// extended-report layout.
func (s *Simulator) CertTable() []byte { return append([]byte(nil), s.certTable...) }

// Report returns a signed 1184-byte ATTESTATION_REPORT (version 3) carrying
// reportData, and the certificate table (nil with NoCertTable).
func (s *Simulator) Report(reportData [abi.ReportDataSize]byte) ([]byte, []byte, error) {
	reportID := make([]byte, abi.ReportIDSize)
	if _, err := rand.Read(reportID); err != nil {
		return nil, nil, err
	}
	ma := make([]byte, abi.ReportIDMASize)
	for i := range ma {
		ma[i] = 0xff // no migration agent
	}
	rep := &spb.Report{
		Version:          abi.ReportVersion3,
		GuestSvn:         0,
		Policy:           s.policy,
		FamilyId:         make([]byte, abi.FamilyIDSize),
		ImageId:          make([]byte, abi.ImageIDSize),
		Vmpl:             s.vmpl,
		SignatureAlgo:    abi.SignEcdsaP384Sha384,
		CurrentTcb:       s.tcb,
		PlatformInfo:     0,
		SignerInfo:       abi.ComposeSignerInfo(abi.SignerInfo{SigningKey: abi.VcekReportSigner}),
		ReportData:       append([]byte(nil), reportData[:]...),
		Measurement:      append([]byte(nil), s.measurement...),
		HostData:         make([]byte, abi.HostDataSize),
		IdKeyDigest:      make([]byte, abi.IDKeyDigestSize),
		AuthorKeyDigest:  make([]byte, abi.AuthorKeyDigestSize),
		ReportId:         reportID,
		ReportIdMa:       ma,
		ReportedTcb:      s.tcb,
		Cpuid1EaxFms:     abi.MaskedCpuid1EaxFromSevProduct(s.product),
		ChipId:           append([]byte(nil), s.chipID...),
		CommittedTcb:     s.tcb,
		CurrentBuild:     21,
		CurrentMinor:     55,
		CurrentMajor:     1,
		CommittedBuild:   21,
		CommittedMinor:   55,
		CommittedMajor:   1,
		LaunchTcb:        s.tcb,
		Signature:        make([]byte, abi.SignatureSize),
		LaunchMitVector:  0,
		CurrentMitVector: 0,
	}
	raw, err := abi.ReportToAbiBytes(rep)
	if err != nil {
		return nil, nil, err
	}
	digest := sha512.Sum384(abi.SignedComponent(raw))
	r, sv, err := ecdsa.Sign(rand.Reader, s.vcekKey, digest[:])
	if err != nil {
		return nil, nil, err
	}
	if err := abi.SetSignature(r, sv, raw); err != nil {
		return nil, nil, err
	}
	if s.noCerts {
		return raw, nil, nil
	}
	return raw, s.CertTable(), nil
}
