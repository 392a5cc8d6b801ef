package relayproof_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"

	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/relayproof"
	"diskless-relays/tools/broker/internal/torid"
)

// The evidence decoder reads what any relay, or anyone pretending to be one,
// sends a volunteer's verify-relay: it must never panic, what it accepts must
// hold every limit and survive a round trip, and Check must never pass an
// answer whose signed parts differ from the one genuine answer in the seeds.
func FuzzDecodeEvidence(f *testing.F) {
	keys, err := torid.LoadRelayKeys(filepath.Join(keysDir, "relay-a"))
	if err != nil {
		f.Fatal(err)
	}
	nonce := bytes.Repeat([]byte{7}, 32)
	// The fuzzing workers are separate processes, each making its own
	// genuine answer: its report must be the same in each, so it is an
	// unsigned one in the real layout (Check does not judge the SNP
	// signature; snpcheck does), and ed25519 signatures are deterministic.
	genuine, err := relayproof.Make(context.Background(), unsignedReport, keys, nonce, relayproof.Image{Relay: "relay-a", Digest: imageDigest, BuildRecord: "https://example.org/build.json"})
	if err != nil {
		f.Fatal(err)
	}
	seed, err := genuine.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	x := expected(f, "relay-a", nonce, imageDigest)
	f.Add(seed)
	f.Add([]byte(`{"nonce":"","report":null}`))
	f.Add([]byte(`{"nonce":"AAAA","nonce":"AAAA"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := relayproof.Decode(data)
		if err != nil {
			return
		}
		if len(data) > relayproof.MaxEvidenceSize || e.Validate() != nil {
			t.Fatalf("accepted an invalid document (%d bytes): %v", len(data), e.Validate())
		}
		again, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := relayproof.Decode(again)
		if err != nil || !reflect.DeepEqual(back, e) {
			t.Fatalf("no round trip: %v", err)
		}
		vs, err := relayproof.Check(e, x)
		if err != nil || len(vs) != 4 {
			t.Fatalf("a decoded answer got no verdicts: %v", err)
		}
		if vs.OK() && !(bytes.Equal(e.Nonce, genuine.Nonce) && bytes.Equal(e.Report, genuine.Report) &&
			bytes.Equal(e.SigningCert, genuine.SigningCert) && bytes.Equal(e.Signature, genuine.Signature)) {
			t.Fatal("an answer other than the genuine one passed")
		}
	})
}

// unsignedReport lays out a report carrying rd, with nothing random in it.
func unsignedReport(_ context.Context, rd [protocol.ReportDataSize]byte) ([]byte, []byte, error) {
	ma := bytes.Repeat([]byte{0xff}, abi.ReportIDMASize)
	raw, err := abi.ReportToAbiBytes(&spb.Report{
		Version:         abi.ReportVersion3,
		Policy:          0x30000,
		FamilyId:        make([]byte, abi.FamilyIDSize),
		ImageId:         make([]byte, abi.ImageIDSize),
		SignatureAlgo:   abi.SignEcdsaP384Sha384,
		SignerInfo:      abi.ComposeSignerInfo(abi.SignerInfo{SigningKey: abi.VcekReportSigner}),
		ReportData:      rd[:],
		Measurement:     measurement,
		HostData:        make([]byte, abi.HostDataSize),
		IdKeyDigest:     make([]byte, abi.IDKeyDigestSize),
		AuthorKeyDigest: make([]byte, abi.AuthorKeyDigestSize),
		ReportId:        make([]byte, abi.ReportIDSize),
		ReportIdMa:      ma,
		ChipId:          make([]byte, abi.ChipIDSize),
		Signature:       make([]byte, abi.SignatureSize),
	})
	return raw, nil, err
}

// The endpoint's request decoder reads what anyone on the network sends a
// relay: it must never panic, and what it accepts is exactly a 32-byte
// nonce that the canonical encoding gives back.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{
		`{"nonce":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="}`,
		` { "nonce" : "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=" } `,
		`{"nonce":"BwcH","nonce":"BwcH"}`, `{"Nonce":""}`, `[]`, `{}`, `null`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := relayproof.DecodeRequest(data)
		if err != nil {
			return
		}
		if len(data) > relayproof.MaxRequestSize || len(r.Nonce) != protocol.NonceSize {
			t.Fatalf("accepted %d bytes with a %d-byte nonce", len(data), len(r.Nonce))
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := relayproof.DecodeRequest(again)
		if err != nil || !bytes.Equal(r2.Nonce, r.Nonce) {
			t.Fatalf("round trip of %q: %v", again, err)
		}
	})
}
