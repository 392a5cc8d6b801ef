package snpcheck_test

import (
	"context"
	"os"
	"testing"

	"github.com/google/go-sev-guest/abi"

	"diskless-relays/tools/broker/internal/kdscache"
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

// With a KDS cache, Prepare reads the same client bytes before the broker's
// lock is taken, and goes as far as the cache when the report binds the
// session and carries a registered measurement: the fuzzer gets those for
// free (they are taken from its own report). Nothing a client sends may
// panic, be called genuine, or land in the cache.
func FuzzPrepareCheck(f *testing.F) {
	roots, err := snpcheck.AMDRoots()
	if err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	cache, err := kdscache.Open(dir, kdscache.Anchors("amd", roots), kdscache.Options{Offline: true})
	if err != nil {
		f.Fatal(err)
	}
	p := &snpcheck.Policy{Roots: roots, KDS: cache, FetchCerts: true, CheckRevocations: true}
	rep := make([]byte, abi.ReportSize)
	rep[0] = 3 // version 3
	f.Add(rep, []byte{})
	f.Add(rep, make([]byte, 24))
	f.Add([]byte{1, 2, 3}, []byte{})
	f.Fuzz(func(t *testing.T, report, certs []byte) {
		var rd [protocol.ReportDataSize]byte
		m := make([]byte, 48)
		if len(report) == abi.ReportSize {
			if r, err := abi.ReportToProto(report); err == nil {
				copy(rd[:], r.GetReportData())
				m = r.GetMeasurement()
			}
		}
		_ = p.Prepare(context.Background(), report, certs, rd, [][]byte{m})
		res, ref := p.Check(report, certs, rd, [][]byte{m})
		if ref == nil || res.Verified {
			t.Fatalf("random bytes passed: %+v %v", res, ref)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("the cache stored %v from client bytes", ents)
		}
	})
}
