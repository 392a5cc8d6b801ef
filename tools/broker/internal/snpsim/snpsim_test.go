package snpsim

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
)

func TestInitLoadReport(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sim")
	if err := Init(dir, InitOptions{RSABits: 2048, ProductName: "Genoa-B1"}); err != nil {
		t.Fatal(err)
	}
	if err := Init(dir, InitOptions{RSABits: 2048}); err == nil {
		t.Fatal("init over an existing chain")
	}
	for _, f := range []string{AskKeyFile, VcekKeyFile} {
		st, _ := os.Stat(filepath.Join(dir, f))
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", f, st.Mode().Perm())
		}
	}
	// ark-ask.pem is public: ASK then ARK, no private key.
	chain, _ := os.ReadFile(filepath.Join(dir, ArkAskFile))
	if bytes.Contains(chain, []byte("PRIVATE")) {
		t.Fatal("private key in ark-ask.pem")
	}
	ask, rest := pem.Decode(chain)
	ark, _ := pem.Decode(rest)
	askCert, _ := x509.ParseCertificate(ask.Bytes)
	arkCert, _ := x509.ParseCertificate(ark.Bytes)
	if askCert.Subject.CommonName != "SEV-Genoa" || arkCert.Subject.CommonName != "ARK-Genoa" {
		t.Fatalf("chain names %q %q", askCert.Subject.CommonName, arkCert.Subject.CommonName)
	}

	if _, err := Load(dir, Options{Measurement: []byte{1}}); err == nil {
		t.Error("short measurement accepted")
	}
	if _, err := Load(dir, Options{Measurement: make([]byte, 48), Policy: 0x1}); err == nil {
		t.Error("policy without the reserved bit accepted")
	}
	chip := bytes.Repeat([]byte{0x5a}, 64)
	tcb := kds.TCBParts{BlSpl: 9, SnpSpl: 30, UcodeSpl: 250}
	m := bytes.Repeat([]byte{3}, 48)
	s, err := Load(dir, Options{Measurement: m, Policy: 0x30000, ChipID: chip, TCB: &tcb})
	if err != nil {
		t.Fatal(err)
	}
	var rd [64]byte
	rd[5] = 5
	raw, certs, err := s.Report(rd)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := abi.ReportToProto(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rep.Measurement, m) || !bytes.Equal(rep.ChipId, chip) || rep.Policy != 0x30000 || !bytes.Equal(rep.ReportData, rd[:]) {
		t.Fatalf("report fields: %+v", rep)
	}
	if kds.DecomposeTCBVersion(kds.TCBVersion(rep.ReportedTcb)) != tcb {
		t.Fatalf("reported TCB %x", rep.ReportedTcb)
	}
	// The VCEK in the table carries the same HWID and TCB.
	table := new(abi.CertTable)
	if err := table.Unmarshal(certs); err != nil {
		t.Fatal(err)
	}
	vder, err := table.GetByGUIDString(abi.VcekGUID)
	if err != nil {
		t.Fatal(err)
	}
	vcek, _ := x509.ParseCertificate(vder)
	exts, err := kds.VcekCertificateExtensions(vcek)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(exts.HWID, chip) || kds.DecomposeTCBVersion(exts.TCBVersion) != tcb || exts.ProductName != "Genoa-B1" {
		t.Fatalf("VCEK extensions %+v", exts)
	}
	if err := vcek.CheckSignatureFrom(askCert); err != nil {
		t.Fatalf("VCEK not signed by the ASK: %v", err)
	}
}
