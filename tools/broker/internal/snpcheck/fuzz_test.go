package snpcheck_test

import (
	"testing"

	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/snpcheck"
)

// Report and certificate-table bytes come straight from an unauthenticated
// attest: the check must refuse what is not a genuine report, never panic,
// and never call a report genuine (Verified) that no trusted root signed.
func FuzzCheck(f *testing.F) {
	roots, err := snpcheck.AMDRoots()
	if err != nil {
		f.Fatal(err)
	}
	p := &snpcheck.Policy{Roots: roots}
	f.Add(make([]byte, 1184), []byte{})
	f.Add(make([]byte, 1184), make([]byte, 24))
	f.Add([]byte{1, 2, 3}, []byte{})
	f.Fuzz(func(t *testing.T, report, certs []byte) {
		var rd [protocol.ReportDataSize]byte
		res, ref := p.Check(report, certs, rd, [][]byte{make([]byte, 48)})
		if ref == nil || res.Verified {
			t.Fatalf("random bytes passed: %+v %v", res, ref)
		}
	})
}
