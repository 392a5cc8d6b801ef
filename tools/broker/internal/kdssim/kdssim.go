// Package kdssim is a TEST-ONLY double of AMD's Key Distribution Service
// (KDS), the web service at https://kdsintf.amd.com that hands out VCEK
// certificates, the ARK/ASK chain and the CRL of each product line.
//
// Its URLs and answers follow AMD's "Versioned Chip Endorsement Key (VCEK)
// Certificate and KDS Interface Specification" (publication 57230, chapter
// 4, the KDS interface) and the URL builders of go-sev-guest's kds package
// (kds.VCEKCertURL, kds.ProductCertChainURL, kds.CrlLinkByKey), which the
// broker's verifier uses:
//
//	GET /vcek/v1/{line}/cert_chain   the ASK then the ARK, PEM
//	GET /vcek/v1/{line}/crl          the line's CRL, DER, signed by the ARK
//	GET /vcek/v1/{line}/{hwid hex}?blSPL=N&teeSPL=N&snpSPL=N&ucodeSPL=N
//	                                 the chip's VCEK at that TCB, DER
//
// It refuses what the real one refuses: a malformed request (a HWID that is
// not 64 bytes of hex, an SPL parameter missing, repeated, unknown or not a
// number 0-255) with 400 Bad Request, and a product line or path it does not
// serve with 404 Not Found. Like the real KDS, which allows about one
// request per 10 seconds per client address, it answers 429 Too Many
// Requests with a Retry-After header to a request less than MinInterval
// after the last one it served. An outage switch answers 503 to everything
// (for "connection refused", close the test server).
//
// It certifies with a simulator chain (internal/snpsim, made with
// KeepArkKey so that the ARK can sign the CRL): a VCEK for any chip ID and
// TCB, issued once and then served unchanged, as KDS serves the same
// certificate for the same chip and TCB.
package kdssim

import (
	"encoding/hex"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"

	"diskless-relays/tools/broker/internal/snpsim"
)

// DefaultMinInterval is the real KDS's limit: one request per 10 s.
const DefaultMinInterval = 10 * time.Second

// Request is one request the double received and how it answered.
type Request struct {
	Time   time.Time
	Path   string // path and query
	Status int
}

// Server is the double; it is an http.Handler.
type Server struct {
	iss  *snpsim.Issuer
	line string
	now  func() time.Time
	// MinInterval between served requests (default DefaultMinInterval).
	MinInterval time.Duration
	// CRLValidity is the CRL's NextUpdate - ThisUpdate (default 7 days).
	CRLValidity time.Duration

	mu       sync.Mutex
	lastOK   time.Time
	served   bool
	outage   bool
	revoked  []*big.Int
	crlCount int64
	vceks    map[string][]byte
	requests []Request
}

// New serves iss's chain under its product line; now is the double's clock.
func New(iss *snpsim.Issuer, now func() time.Time) (*Server, error) {
	product, err := kds.ParseProductName(iss.ProductName, abi.VcekReportSigner)
	if err != nil {
		return nil, err
	}
	return &Server{
		iss: iss, line: kds.ProductLine(product), now: now,
		MinInterval: DefaultMinInterval, CRLValidity: 7 * 24 * time.Hour,
		vceks: map[string][]byte{},
	}, nil
}

// SetOutage switches the outage (every request answered 503) on or off.
func (s *Server) SetOutage(on bool) {
	s.mu.Lock()
	s.outage = on
	s.mu.Unlock()
}

// Revoke lists serial in the CRLs served from now on.
func (s *Server) Revoke(serial *big.Int) {
	s.mu.Lock()
	s.revoked = append(s.revoked, new(big.Int).Set(serial))
	s.mu.Unlock()
}

// Requests returns every request received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// CRL issues the CRL the double would serve now (for offline imports).
func (s *Server) CRL() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.crlLocked()
}

func (s *Server) crlLocked() ([]byte, error) {
	s.crlCount++
	now := s.now()
	return s.iss.CRL(s.crlCount, now, now.Add(s.CRLValidity), s.revoked)
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	status, ctype, body, retryAfter := s.answer(now, r)
	s.requests = append(s.requests, Request{Time: now, Path: r.URL.RequestURI(), Status: status})
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	if ctype != "" {
		w.Header().Set("Content-Type", ctype)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func text(status int, msg string) (int, string, []byte, int) {
	return status, "text/plain", []byte(msg + "\n"), 0
}

func (s *Server) answer(now time.Time, r *http.Request) (status int, ctype string, body []byte, retryAfter int) {
	if s.outage {
		return text(http.StatusServiceUnavailable, "service unavailable")
	}
	if s.served && now.Sub(s.lastOK) < s.MinInterval {
		wait := s.MinInterval - now.Sub(s.lastOK)
		return http.StatusTooManyRequests, "text/plain", []byte("too many requests\n"), int((wait + time.Second - 1) / time.Second)
	}
	// Every request it answers counts against the limit, refused or not.
	s.served, s.lastOK = true, now
	if r.Method != http.MethodGet {
		return text(http.StatusMethodNotAllowed, "method not allowed")
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/vcek/v1/")
	if !ok {
		return text(http.StatusNotFound, "not found")
	}
	line, fn, ok := strings.Cut(rest, "/")
	if !ok || line != s.line || fn == "" || strings.Contains(fn, "/") {
		return text(http.StatusNotFound, "not found")
	}
	switch fn {
	case "cert_chain":
		if r.URL.RawQuery != "" {
			return text(http.StatusBadRequest, "cert_chain takes no parameters")
		}
		return http.StatusOK, "application/x-pem-file", s.iss.ChainPEM, 0
	case "crl":
		if r.URL.RawQuery != "" {
			return text(http.StatusBadRequest, "crl takes no parameters")
		}
		der, err := s.crlLocked()
		if err != nil {
			return text(http.StatusInternalServerError, err.Error())
		}
		return http.StatusOK, "application/pkix-crl", der, 0
	}
	hwid, err := hex.DecodeString(fn)
	if err != nil || len(hwid) != abi.ChipIDSize {
		return text(http.StatusBadRequest, fmt.Sprintf("hwid must be %d bytes of hex", abi.ChipIDSize))
	}
	tcb, err := parseSPLs(r.URL.RawQuery)
	if err != nil {
		return text(http.StatusBadRequest, err.Error())
	}
	key := fmt.Sprintf("%x/%d/%d/%d/%d", hwid, tcb.BlSpl, tcb.TeeSpl, tcb.SnpSpl, tcb.UcodeSpl)
	der, ok := s.vceks[key]
	if !ok {
		der, err = s.iss.VCEK(hwid, tcb)
		if err != nil {
			return text(http.StatusInternalServerError, err.Error())
		}
		s.vceks[key] = der
	}
	return http.StatusOK, "application/x-x509-ca-cert", der, 0
}

// parseSPLs wants exactly blSPL, teeSPL, snpSPL and ucodeSPL, once each,
// decimal 0-255.
func parseSPLs(rawQuery string) (kds.TCBParts, error) {
	var p kds.TCBParts
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return p, fmt.Errorf("bad query: %v", err)
	}
	fields := map[string]*uint8{"blSPL": &p.BlSpl, "teeSPL": &p.TeeSpl, "snpSPL": &p.SnpSpl, "ucodeSPL": &p.UcodeSpl}
	for k := range q {
		if _, ok := fields[k]; !ok {
			return p, fmt.Errorf("unknown parameter %q", k)
		}
	}
	for k, dst := range fields {
		v := q[k]
		if len(v) != 1 {
			return p, fmt.Errorf("parameter %s must be given once", k)
		}
		n, err := strconv.ParseUint(v[0], 10, 8)
		if err != nil {
			return p, fmt.Errorf("parameter %s: want 0-255", k)
		}
		*dst = uint8(n)
	}
	return p, nil
}
