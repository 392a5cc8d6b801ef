package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"diskless-relays/tools/broker/internal/snpsim"
	"diskless-relays/tools/broker/internal/store"
)

// key-broker kds import stores a VCEK and a CRL of the trusted (here: the
// simulated) chain and refuses another chain's, naming the file; status
// then reads them back.
func TestKDSImportCommand(t *testing.T) {
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	if _, err := store.Init(data, "", filepath.Join(tmp, "admin.token")); err != nil {
		t.Fatal(err)
	}
	var iss [2]*snpsim.Issuer
	for i, name := range []string{"trusted", "other"} {
		dir := filepath.Join(tmp, name)
		if err := snpsim.Init(dir, snpsim.InitOptions{RSABits: 2048, KeepArkKey: true}); err != nil {
			t.Fatal(err)
		}
		var err error
		if iss[i], err = snpsim.LoadIssuer(dir); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name string, data []byte, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	chip := make([]byte, 64)
	chip[0] = 7
	now := time.Now()
	der, err := iss[0].VCEK(chip, snpsim.DefaultTCB)
	vcek := write("vcek.der", der, err)
	crlDER, err := iss[0].CRL(1, now, now.Add(24*time.Hour), nil)
	crl := write("crl.der", crlDER, err)
	otherDER, err := iss[1].VCEK(chip, snpsim.DefaultTCB)
	otherVCEK := write("other-vcek.der", otherDER, err)
	otherCRLDER, err := iss[1].CRL(1, now, now.Add(24*time.Hour), nil)
	otherCRL := write("other-crl.der", otherCRLDER, err)
	sim := []string{"--allow-simulated-attestation", "--simulated-ark-ask", filepath.Join(tmp, "trusted", snpsim.ArkAskFile)}

	if err := cmdKDS(append(append([]string{"import", "--data", data}, sim...), vcek, crl)); err != nil {
		t.Fatalf("import: %v", err)
	}
	err = cmdKDS(append(append([]string{"import", "--data", data}, sim...), otherVCEK, otherCRL))
	if err == nil || !strings.Contains(err.Error(), "2 of 2 files refused") {
		t.Fatalf("import of another chain: %v", err)
	}
	// Without the simulated roots, the pinned AMD roots alone refuse it.
	if err := cmdKDS([]string{"import", "--data", data, vcek}); err == nil {
		t.Fatal("a simulated VCEK imported against AMD's roots")
	}
	if err := cmdKDS([]string{"import", "--data", filepath.Join(tmp, "nonesuch"), vcek}); err == nil || !strings.Contains(err.Error(), "key-broker init") {
		t.Fatalf("import into a directory init did not make: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(data, kdsDir))
	if len(ents) != 2 {
		t.Fatalf("cache holds %v, want a VCEK and a CRL", ents)
	}
	for _, e := range ents {
		if fi, _ := e.Info(); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", e.Name(), fi.Mode().Perm())
		}
	}
	if st, _ := os.Stat(filepath.Join(data, kdsDir)); st.Mode().Perm() != 0o700 {
		t.Errorf("cache dir mode %v", st.Mode().Perm())
	}
	if err := cmdKDS(append([]string{"status", "--data", data}, sim...)); err != nil {
		t.Fatalf("status: %v", err)
	}
}
