package kdssim_test

import (
	"crypto/x509"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"

	"diskless-relays/tools/broker/internal/kdssim"
	"diskless-relays/tools/broker/internal/snpsim"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newDouble(t *testing.T) (*kdssim.Server, *httptest.Server, *snpsim.Issuer, *clock) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sim")
	if err := snpsim.Init(dir, snpsim.InitOptions{RSABits: 2048, KeepArkKey: true}); err != nil {
		t.Fatal(err)
	}
	iss, err := snpsim.LoadIssuer(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Now()}
	d, err := kdssim.New(iss, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(d)
	t.Cleanup(ts.Close)
	return d, ts, iss, c
}

func get(t *testing.T, u string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// The double answers go-sev-guest's own URLs (kds.VCEKCertURL,
// kds.CrlLinkByKey, kds.ProductCertChainURL) with what they name: a VCEK
// whose KDS extensions (read by go-sev-guest's kds parser) carry the chip
// and TCB of the URL, signed by the chain's ASK; a CRL signed by the ARK.
func TestDoubleServesKDSURLs(t *testing.T) {
	_, ts, iss, c := newDouble(t)
	hwid := make([]byte, abi.ChipIDSize)
	hwid[0], hwid[63] = 0xa5, 0x5a
	tcb, _ := kds.ComposeTCBParts(kds.TCBParts{BlSpl: 3, SnpSpl: 24, UcodeSpl: 213})
	atDouble := func(amd string) string { return ts.URL + strings.TrimPrefix(amd, "https://kdsintf.amd.com") }

	status, _, der := get(t, atDouble(kds.VCEKCertURL("Milan", hwid, tcb)))
	if status != http.StatusOK {
		t.Fatalf("VCEK: %d %s", status, der)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	exts, err := kds.VcekCertificateExtensions(cert)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(exts.HWID) != hex.EncodeToString(hwid) || exts.TCBVersion != tcb {
		t.Fatalf("VCEK for %x at %x, want %x at %x", exts.HWID, exts.TCBVersion, hwid, tcb)
	}
	if err := cert.CheckSignatureFrom(iss.Ask); err != nil {
		t.Fatalf("VCEK not signed by the ASK: %v", err)
	}

	c.Advance(10 * time.Second)
	status, _, crlDER := get(t, atDouble(kds.CrlLinkByKey("Milan", abi.VcekReportSigner)))
	if status != http.StatusOK {
		t.Fatalf("CRL: %d", status)
	}
	crl, err := x509.ParseRevocationList(crlDER)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(iss.Ark); err != nil {
		t.Fatalf("CRL not signed by the ARK: %v", err)
	}

	c.Advance(10 * time.Second)
	status, _, chain := get(t, atDouble(kds.ProductCertChainURL(abi.VcekReportSigner, "Milan")))
	if status != http.StatusOK {
		t.Fatalf("cert_chain: %d", status)
	}
	ask, ark, err := kds.ParseProductCertChain(chain)
	if err != nil || string(ask) != string(iss.Ask.Raw) || string(ark) != string(iss.Ark.Raw) {
		t.Fatalf("cert_chain is not ASK then ARK: %v", err)
	}
}

// What the real KDS refuses, the double refuses; more than one request per
// 10 s gets 429 with Retry-After; the outage switch answers 503.
func TestDoubleRefuses(t *testing.T) {
	d, ts, _, c := newDouble(t)
	hw := strings.Repeat("ab", abi.ChipIDSize)
	spl := "?blSPL=3&teeSPL=0&snpSPL=24&ucodeSPL=213"
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/vcek/v1/Milan/" + hw[:126] + spl, http.StatusBadRequest},                     // 63-byte HWID
		{"/vcek/v1/Milan/" + hw + "ab" + spl, http.StatusBadRequest},                    // 65 bytes
		{"/vcek/v1/Milan/" + strings.Repeat("zz", 64) + spl, http.StatusBadRequest},     // not hex
		{"/vcek/v1/Milan/" + hw + "?blSPL=3&teeSPL=0&snpSPL=24", http.StatusBadRequest}, // missing ucodeSPL
		{"/vcek/v1/Milan/" + hw + spl + "&fmcSPL=1", http.StatusBadRequest},             // extra parameter
		{"/vcek/v1/Milan/" + hw + spl + "&blSPL=4", http.StatusBadRequest},              // repeated
		{"/vcek/v1/Milan/" + hw + "?blSPL=256&teeSPL=0&snpSPL=24&ucodeSPL=213", http.StatusBadRequest},
		{"/vcek/v1/Genoa/" + hw + spl, http.StatusNotFound}, // a product line it has no chain for
		{"/vcek/v1/Nonesuch/cert_chain", http.StatusNotFound},
		{"/vcek/v2/Milan/cert_chain", http.StatusNotFound},
		{"/vcek/v1/Milan/crl?x=1", http.StatusBadRequest},
		{"/vcek/v1/Milan/" + hw + spl, http.StatusOK},
	} {
		c.Advance(10 * time.Second)
		if status, _, body := get(t, ts.URL+tc.path); status != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.path, status, body, tc.want)
		}
	}
	// 4 s after the last request: 429, Retry-After the 6 s left.
	c.Advance(4 * time.Second)
	status, h, _ := get(t, ts.URL+"/vcek/v1/Milan/cert_chain")
	if status != http.StatusTooManyRequests || h.Get("Retry-After") != "6" {
		t.Fatalf("second request within 10 s: %d Retry-After %q", status, h.Get("Retry-After"))
	}
	c.Advance(6 * time.Second)
	if status, _, _ := get(t, ts.URL+"/vcek/v1/Milan/cert_chain"); status != http.StatusOK {
		t.Fatalf("after 10 s: %d", status)
	}
	d.SetOutage(true)
	c.Advance(time.Minute)
	if status, _, _ := get(t, ts.URL+"/vcek/v1/Milan/cert_chain"); status != http.StatusServiceUnavailable {
		t.Fatalf("outage: %d", status)
	}
	// The log has every request with its answer.
	reqs := d.Requests()
	if last := reqs[len(reqs)-1]; last.Status != http.StatusServiceUnavailable || !strings.HasSuffix(last.Path, "cert_chain") {
		t.Fatalf("last request %+v", last)
	}
}
