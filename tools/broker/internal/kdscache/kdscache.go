// Package kdscache keeps what the broker needs from AMD's Key Distribution
// Service (KDS) in its data directory, so that neither a broker restart nor
// a KDS outage stops relays whose chips it has seen before:
//
//   - VCEK certificates, per product line, chip (HWID) and TCB. A VCEK never
//     changes, so one that chains to a pinned ARK/ASK is kept forever.
//   - The CRL of each pinned root, with the time the broker got it. A
//     revocation check uses the cached CRL up to an age limit and fails
//     closed beyond it.
//
// KDS allows about one request per 10 s per client address, answers 429
// beyond that and has been down for hours at a time. The cache therefore
// sends at most one request per MinInterval, honours 429 and Retry-After,
// fetches a URL once for all who wait for it, remembers a 404 for a while,
// and never waits longer than MaxWait for its turn: a caller that cannot be
// served soon gets an *UnavailableError at once and retries later.
//
// Network fetches happen only in VCEK and RefreshCRL, which the broker calls
// outside its global lock; Getter, CheckRevoked and everything the verifier
// calls under the lock read the cache only.
package kdscache

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/verify/trust"

	"diskless-relays/tools/broker/internal/fsutil"
)

// DefaultURL is AMD's KDS.
const DefaultURL = "https://kdsintf.amd.com"

// amdURL is the base go-sev-guest's kds package builds its URLs on; the
// cache answers those URLs (from disk) and sends its own to Options.URL.
const amdURL = "https://kdsintf.amd.com"

// Defaults.
const (
	// DefaultMinInterval is KDS's own limit: one request per 10 s per address.
	DefaultMinInterval = 10 * time.Second
	// DefaultMaxWait is the longest a caller waits for its turn. With
	// DefaultTimeout for the request itself it stays under the relay
	// protocol's 30 s write timeout (and its 60 s session lifetime).
	DefaultMaxWait = 15 * time.Second
	// DefaultNegativeTTL is how long a 404 (KDS knows no such chip or TCB)
	// is remembered before the URL is asked again.
	DefaultNegativeTTL = 10 * time.Minute
	// DefaultCRLMaxAge is how long a CRL the broker got from AMD may serve
	// revocation checks. AMD revokes rarely (an ASK, not single VCEKs: a new
	// TCB supersedes a VCEK), so a week keeps the broker working through
	// any KDS outage seen so far (hours) and a long weekend without network,
	// while a revocation AMD publishes reaches every check within a week
	// plus the time the operator needs to notice a failing refresh.
	DefaultCRLMaxAge = 7 * 24 * time.Hour
	// DefaultCRLRefresh is when a cached CRL is due to be fetched again.
	DefaultCRLRefresh = 24 * time.Hour
	// DefaultTimeout bounds one KDS request.
	DefaultTimeout = 10 * time.Second
	// maxBody bounds what is read from KDS (a VCEK is ~1.3 KiB, AMD's CRL a
	// few KiB).
	maxBody = 1 << 20
	// maxRemembered bounds the remembered 404s and fetch errors, which
	// invented chip IDs could otherwise grow.
	maxRemembered = 4096
)

// Anchor is one pinned root: a product line's ARK and ASK, named like the
// verifier's Result.Root ("amd/Milan", "simulated/Milan").
type Anchor struct {
	Name string
	Line string
	Root *trust.AMDRootCerts
}

// Anchors names the pinned roots of one set ("amd", "simulated").
func Anchors(set string, roots map[string][]*trust.AMDRootCerts) []Anchor {
	var out []Anchor
	lines := make([]string, 0, len(roots))
	for l := range roots {
		lines = append(lines, l)
	}
	sort.Strings(lines)
	for _, l := range lines {
		for _, r := range roots[l] {
			if r.ProductCerts == nil || r.ProductCerts.Ark == nil || r.ProductCerts.Ask == nil {
				continue
			}
			out = append(out, Anchor{Name: set + "/" + l, Line: l, Root: r})
		}
	}
	return out
}

// Options configure a Cache; zero values are the defaults above.
type Options struct {
	// URL is KDS's base URL (DefaultURL). Only https, or http to loopback.
	URL string
	// Offline: never contact KDS; serve what is cached or imported.
	Offline     bool
	MinInterval time.Duration
	MaxWait     time.Duration
	NegativeTTL time.Duration
	CRLMaxAge   time.Duration
	CRLRefresh  time.Duration
	Timeout     time.Duration
	// Client does the requests (default: a client with Timeout).
	Client *http.Client
	// Now and Sleep are the clock (tests replace both).
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// Logf receives one line per KDS request and per cache change.
	Logf func(format string, args ...any)
}

// CheckURL accepts an https URL, or an http URL to a loopback host (a
// KDS double in tests), without path, query or user.
func CheckURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("--kds-url %q: %v", raw, err)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
		return "", fmt.Errorf("--kds-url %q: want scheme://host[:port] only, like %s", raw, DefaultURL)
	}
	switch u.Scheme {
	case "https":
	case "http":
		host := u.Hostname()
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return "", fmt.Errorf("--kds-url %q: plain http only to a loopback address (a test double); AMD's KDS is %s", raw, DefaultURL)
		}
	default:
		return "", fmt.Errorf("--kds-url %q: want https", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}

// UnavailableError says that something could not be had from KDS now.
type UnavailableError struct {
	What   string
	Reason string
}

func (e *UnavailableError) Error() string { return e.What + ": " + e.Reason }

// CRLUnavailableError: no CRL for a root, or only one older than the age
// limit; revocation checks fail closed.
type CRLUnavailableError struct {
	Anchor    string
	FetchedAt time.Time // zero: none cached
	MaxAge    time.Duration
}

func (e *CRLUnavailableError) Error() string {
	what := "no CRL cached"
	if !e.FetchedAt.IsZero() {
		what = fmt.Sprintf("the cached CRL was obtained at %s, longer ago than the limit %s", e.FetchedAt.UTC().Format(time.RFC3339), e.MaxAge)
	}
	return fmt.Sprintf("%s for %s: restore the broker's access to AMD's KDS, or import a current CRL with key-broker kds import", what, e.Anchor)
}

// RevokedError: a certificate of the chain is in its root's CRL.
type RevokedError struct {
	Role   string // "ASK" or "VCEK"
	Serial *big.Int
	At     time.Time
}

func (e *RevokedError) Error() string {
	return fmt.Sprintf("the %s (serial %x) was revoked at %s", e.Role, e.Serial, e.At.UTC().Format(time.RFC3339))
}

// Cache is the KDS cache of one data directory.
type Cache struct {
	dir     string
	base    string
	anchors []Anchor
	o       Options

	mu       sync.Mutex
	vceks    map[string][]byte // by file name, verified
	crls     map[string]*crlEntry
	next     time.Time // earliest time of the next KDS request
	inflight map[string]*call
	notFound map[string]time.Time // URL -> until
	lastErr  map[string]string    // URL -> last fetch error
}

type call struct {
	done chan struct{}
	body []byte
	err  error
}

type crlEntry struct {
	crl       *x509.RevocationList
	fetchedAt time.Time
	source    string
	modTime   time.Time
}

// crlFile is a cached CRL on disk.
type crlFile struct {
	Anchor    string    `json:"anchor"`
	FetchedAt time.Time `json:"fetchedAt"`
	Source    string    `json:"source"` // "kds URL" or "import FILE"
	DER       []byte    `json:"der"`
}

// Open opens (creating, 0700) the cache in dir for the given pinned roots.
func Open(dir string, anchors []Anchor, o Options) (*Cache, error) {
	if o.URL == "" {
		o.URL = DefaultURL
	}
	base, err := CheckURL(o.URL)
	if err != nil {
		return nil, err
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.MinInterval, DefaultMinInterval)
	def(&o.MaxWait, DefaultMaxWait)
	def(&o.NegativeTTL, DefaultNegativeTTL)
	def(&o.CRLMaxAge, DefaultCRLMaxAge)
	def(&o.CRLRefresh, DefaultCRLRefresh)
	def(&o.Timeout, DefaultTimeout)
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Timeout}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = func(ctx context.Context, d time.Duration) error {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("KDS cache %s: %v", dir, err)
	}
	// A directory made by hand with a wider mode is narrowed: the cache
	// holds nothing secret, but nobody else should swap a CRL in it.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("KDS cache %s: %v", dir, err)
	}
	c := &Cache{
		dir: dir, base: base, anchors: anchors, o: o,
		vceks: map[string][]byte{}, crls: map[string]*crlEntry{},
		inflight: map[string]*call{}, notFound: map[string]time.Time{}, lastErr: map[string]string{},
	}
	for _, a := range anchors {
		if e, err := c.loadCRL(a); err != nil {
			o.Logf("KDS cache: ignoring %s: %v", c.crlPath(a), err)
		} else if e != nil {
			c.crls[a.Name] = e
		}
	}
	return c, nil
}

// Dir is the cache's directory.
func (c *Cache) Dir() string { return c.dir }

// MaxAge is the CRL age limit.
func (c *Cache) MaxAge() time.Duration { return c.o.CRLMaxAge }

func vcekFile(line string, hwid []byte, tcb uint64) string {
	return fmt.Sprintf("vcek-%s-%x-%016x.der", line, hwid, tcb)
}

func (c *Cache) crlPath(a Anchor) string {
	return filepath.Join(c.dir, "crl-"+strings.ReplaceAll(a.Name, "/", "-")+".json")
}

// kdsURL is what go-sev-guest asks for, moved to the configured KDS.
func (c *Cache) kdsURL(amd string) string { return c.base + strings.TrimPrefix(amd, amdURL) }

// ---- VCEKs ----

// CachedVCEK returns the VCEK for a chip and TCB from memory or disk,
// never from the network.
func (c *Cache) CachedVCEK(line string, hwid []byte, tcb uint64) ([]byte, bool) {
	name := vcekFile(line, hwid, tcb)
	c.mu.Lock()
	der, ok := c.vceks[name]
	c.mu.Unlock()
	if ok {
		return der, true
	}
	data, err := os.ReadFile(filepath.Join(c.dir, name))
	if err != nil {
		return nil, false
	}
	// Verified again when read: the file is trusted only for what it proves.
	if _, _, err := c.verifyVCEK(data, line, hwid, tcb); err != nil {
		c.o.Logf("KDS cache: ignoring %s: %v", name, err)
		return nil, false
	}
	c.mu.Lock()
	c.vceks[name] = data
	c.mu.Unlock()
	return data, true
}

// VCEK returns the VCEK for a chip and TCB, from the cache or else from KDS
// (unless offline). A fetched VCEK is kept only if it chains to a pinned
// root and names this chip and TCB.
func (c *Cache) VCEK(ctx context.Context, line string, hwid []byte, tcb uint64) ([]byte, error) {
	if der, ok := c.CachedVCEK(line, hwid, tcb); ok {
		return der, nil
	}
	if _, err := kds.ParseProductLine(line); err != nil || len(hwid) != abi.ChipIDSize {
		return nil, &UnavailableError{What: "VCEK", Reason: fmt.Sprintf("no KDS URL for product line %q and a %d-byte chip ID", line, len(hwid))}
	}
	what := fmt.Sprintf("VCEK of %s chip %x… at TCB 0x%016x", line, hwid[:8], tcb)
	u := c.kdsURL(kds.VCEKCertURL(line, hwid, kds.TCBVersion(tcb)))
	body, err := c.fetch(ctx, what, u)
	if err != nil {
		return nil, err
	}
	if _, _, err := c.verifyVCEK(body, line, hwid, tcb); err != nil {
		err = &UnavailableError{What: what, Reason: fmt.Sprintf("KDS answered with a certificate the broker refuses: %v", err)}
		c.remember(u, err)
		return nil, err
	}
	if err := c.storeVCEK(line, hwid, tcb, body); err != nil {
		return nil, err
	}
	return body, nil
}

func (c *Cache) storeVCEK(line string, hwid []byte, tcb uint64, der []byte) error {
	name := vcekFile(line, hwid, tcb)
	if err := fsutil.WriteFileAtomic(filepath.Join(c.dir, name), der, 0o600); err != nil {
		return fmt.Errorf("KDS cache: %v", err)
	}
	c.mu.Lock()
	c.vceks[name] = der
	c.mu.Unlock()
	c.o.Logf("KDS cache: stored %s", name)
	return nil
}

// verifyVCEK checks that der is a VCEK certificate that chains to a pinned
// ARK/ASK of its product line and, when wantHWID is set, that it certifies
// that chip at that TCB; it returns the anchor and the certificate's line.
func (c *Cache) verifyVCEK(der []byte, wantLine string, wantHWID []byte, wantTCB uint64) (*Anchor, *kds.Extensions, error) {
	cert, err := trust.ParseCert(der)
	if err != nil {
		return nil, nil, fmt.Errorf("not an X.509 certificate: %v", err)
	}
	exts, err := kds.VcekCertificateExtensions(cert)
	if err != nil {
		return nil, nil, fmt.Errorf("not a VCEK certificate: %v", err)
	}
	line := kds.ProductLineOfProductName(exts.ProductName)
	if wantHWID != nil {
		if wantLine != line {
			return nil, nil, fmt.Errorf("certificate is for product %q, want %s", exts.ProductName, wantLine)
		}
		if !bytes.Equal(exts.HWID, wantHWID) || uint64(exts.TCBVersion) != wantTCB {
			return nil, nil, fmt.Errorf("certificate is for chip %x… at TCB 0x%016x, want %x… at 0x%016x", exts.HWID[:8], uint64(exts.TCBVersion), wantHWID[:8], wantTCB)
		}
	}
	var errs []string
	for i := range c.anchors {
		a := &c.anchors[i]
		if a.Line != line {
			continue
		}
		opts := a.Root.X509Options(c.o.Now(), abi.VcekReportSigner)
		if opts == nil {
			continue
		}
		if _, err := cert.Verify(*opts); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", a.Name, err))
			continue
		}
		return a, exts, nil
	}
	if len(errs) == 0 {
		return nil, nil, fmt.Errorf("no pinned root for product line %q", line)
	}
	return nil, nil, fmt.Errorf("does not chain to a pinned root (%s)", strings.Join(errs, "; "))
}

// AnchorOf returns the pinned root a VCEK certificate chains to.
func (c *Cache) AnchorOf(der []byte) (*Anchor, error) {
	a, _, err := c.verifyVCEK(der, "", nil, 0)
	return a, err
}

// ---- CRLs ----

func (c *Cache) anchor(name string) *Anchor {
	for i := range c.anchors {
		if c.anchors[i].Name == name {
			return &c.anchors[i]
		}
	}
	return nil
}

func (c *Cache) verifyCRL(a *Anchor, crl *x509.RevocationList) error {
	if err := crl.CheckSignatureFrom(a.Root.ProductCerts.Ark); err != nil {
		return fmt.Errorf("CRL is not signed by the pinned ARK of %s: %v", a.Name, err)
	}
	return nil
}

// loadCRL reads an anchor's CRL file; nil without one.
func (c *Cache) loadCRL(a Anchor) (*crlEntry, error) {
	p := c.crlPath(a)
	st, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var f crlFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	if f.Anchor != a.Name {
		return nil, fmt.Errorf("holds the CRL of %q", f.Anchor)
	}
	crl, err := x509.ParseRevocationList(f.DER)
	if err != nil {
		return nil, err
	}
	if err := c.verifyCRL(&a, crl); err != nil {
		return nil, err
	}
	return &crlEntry{crl: crl, fetchedAt: f.FetchedAt, source: f.Source, modTime: st.ModTime()}, nil
}

// newer says whether crl may replace old: never a CRL that AMD issued
// before the cached one (a KDS answer or import that rolls back revocations).
func newer(crl, old *x509.RevocationList) bool {
	if old == nil {
		return true
	}
	if crl.Number != nil && old.Number != nil {
		return crl.Number.Cmp(old.Number) >= 0
	}
	return !crl.ThisUpdate.Before(old.ThisUpdate)
}

func (c *Cache) storeCRL(a *Anchor, crl *x509.RevocationList, fetchedAt time.Time, source string) error {
	data, _ := json.Marshal(crlFile{Anchor: a.Name, FetchedAt: fetchedAt.UTC(), Source: source, DER: crl.Raw})
	p := c.crlPath(*a)
	if err := fsutil.WriteFileAtomic(p, data, 0o600); err != nil {
		return fmt.Errorf("KDS cache: %v", err)
	}
	st, _ := os.Stat(p)
	var mt time.Time
	if st != nil {
		mt = st.ModTime()
	}
	c.mu.Lock()
	c.crls[a.Name] = &crlEntry{crl: crl, fetchedAt: fetchedAt, source: source, modTime: mt}
	c.mu.Unlock()
	c.o.Logf("KDS cache: stored the CRL of %s (%s, %d revoked)", a.Name, source, len(crl.RevokedCertificateEntries))
	return nil
}

// crlEntryOf returns the anchor's CRL, re-reading its file when it changed on
// disk (an offline import while the broker serves).
func (c *Cache) crlEntryOf(a *Anchor) *crlEntry {
	c.mu.Lock()
	e := c.crls[a.Name]
	c.mu.Unlock()
	st, err := os.Stat(c.crlPath(*a))
	if err != nil || (e != nil && st.ModTime().Equal(e.modTime)) {
		return e
	}
	fresh, err := c.loadCRL(*a)
	if err != nil {
		c.o.Logf("KDS cache: ignoring %s: %v", c.crlPath(*a), err)
		return e
	}
	if fresh != nil && (e == nil || newer(fresh.crl, e.crl)) {
		c.mu.Lock()
		c.crls[a.Name] = fresh
		c.mu.Unlock()
		return fresh
	}
	return e
}

// RefreshCRL fetches the anchor's CRL from KDS when the cached one is due:
// older than the refresh interval, or past its own NextUpdate. NextUpdate
// only makes the broker ask again sooner; it does not fail checks, because
// then a KDS outage past it would refuse every relay, which is what the
// cache exists to prevent. The fail-closed bound is the age limit, counted
// from when the broker last got the CRL (CheckRevoked).
func (c *Cache) RefreshCRL(ctx context.Context, name string) error {
	a := c.anchor(name)
	if a == nil {
		return fmt.Errorf("no pinned root %q", name)
	}
	if c.o.Offline {
		return nil // imports are the only source
	}
	now := c.o.Now()
	if e := c.crlEntryOf(a); e != nil && now.Sub(e.fetchedAt) < c.o.CRLRefresh && (e.crl.NextUpdate.IsZero() || now.Before(e.crl.NextUpdate)) {
		return nil
	}
	u := c.base + "/vcek/v1/" + a.Line + "/crl"
	body, err := c.fetch(ctx, "CRL of "+a.Name, u)
	if err != nil {
		return err
	}
	crl, err := x509.ParseRevocationList(body)
	if err == nil {
		err = c.verifyCRL(a, crl)
	}
	if err != nil {
		err = &UnavailableError{What: "CRL of " + a.Name, Reason: fmt.Sprintf("KDS answered with a CRL the broker refuses: %v", err)}
		c.remember(u, err)
		return err
	}
	if e := c.crlEntryOf(a); e != nil && !newer(crl, e.crl) {
		err := &UnavailableError{What: "CRL of " + a.Name, Reason: "KDS answered with a CRL older than the cached one; kept the cached one"}
		c.remember(u, err)
		return err
	}
	return c.storeCRL(a, crl, c.o.Now(), "kds "+u)
}

// CheckRevoked checks the ASK of the anchor and the VCEK against the
// anchor's cached CRL: a *RevokedError if either is listed, a
// *CRLUnavailableError if there is no CRL younger than the age limit.
func (c *Cache) CheckRevoked(name string, vcek *x509.Certificate) error {
	a := c.anchor(name)
	if a == nil {
		return &CRLUnavailableError{Anchor: name, MaxAge: c.o.CRLMaxAge}
	}
	e := c.crlEntryOf(a)
	if e == nil || c.o.Now().Sub(e.fetchedAt) > c.o.CRLMaxAge {
		err := &CRLUnavailableError{Anchor: name, MaxAge: c.o.CRLMaxAge}
		if e != nil {
			err.FetchedAt = e.fetchedAt
		}
		return err
	}
	ask := a.Root.ProductCerts.Ask
	for _, r := range e.crl.RevokedCertificateEntries {
		if r.SerialNumber == nil {
			continue
		}
		if r.SerialNumber.Cmp(ask.SerialNumber) == 0 {
			return &RevokedError{Role: "ASK", Serial: r.SerialNumber, At: r.RevocationTime}
		}
		// AMD says it supersedes VCEKs by TCB rather than revoking them;
		// a listed VCEK is refused all the same.
		if vcek != nil && r.SerialNumber.Cmp(vcek.SerialNumber) == 0 {
			return &RevokedError{Role: "VCEK", Serial: r.SerialNumber, At: r.RevocationTime}
		}
	}
	return nil
}

// ---- go-sev-guest's getter ----

// Getter is the trust.HTTPSGetter the verifier uses: it answers KDS URLs
// from the cache and the pinned roots only, never from the network (it runs
// under the broker's lock). A missing VCEK is an error, which go-sev-guest
// reports as a *trust.AttestationRecreationErr.
func (c *Cache) Getter() trust.HTTPSGetter { return getter{c} }

type getter struct{ c *Cache }

func (g getter) Get(u string) ([]byte, error) { return g.GetContext(context.Background(), u) }

func (g getter) GetContext(_ context.Context, u string) ([]byte, error) {
	if line, fn, err := kds.ParseProductCertChainURL(u); err == nil && fn == kds.VcekCertFunction {
		// The ARK/ASK go-sev-guest fills in are not trusted anyway (only
		// the pinned roots are), so the pinned pair serves.
		for _, a := range g.c.anchors {
			if a.Line == line {
				pc := a.Root.ProductCerts
				return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pc.Ask.Raw}),
					pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pc.Ark.Raw})...), nil
			}
		}
		return nil, fmt.Errorf("no pinned root for product line %q", line)
	}
	if v, err := kds.ParseVCEKCertURL(u); err == nil {
		if der, ok := g.c.CachedVCEK(v.ProductLine, v.HWID, v.TCB); ok {
			return der, nil
		}
		msg := "not in the broker's KDS cache"
		if last := g.c.LastError(g.c.kdsURL(u)); last != "" {
			msg += "; last fetch: " + last
		}
		return nil, errors.New(msg)
	}
	return nil, fmt.Errorf("the KDS cache does not serve %s", u)
}

// LastError is the last fetch error for a KDS URL, or "".
func (c *Cache) LastError(u string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr[u]
}

func (c *Cache) remember(u string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.lastErr) >= maxRemembered {
		clear(c.lastErr)
	}
	c.lastErr[u] = err.Error()
}

// ---- fetching ----

// fetch gets u from KDS politely: one request per MinInterval for the whole
// cache, one request per URL for all its callers, no request for a URL that
// answered 404 within NegativeTTL, and no wait longer than MaxWait.
func (c *Cache) fetch(ctx context.Context, what, u string) ([]byte, error) {
	unavailable := func(format string, args ...any) error {
		return &UnavailableError{What: what, Reason: fmt.Sprintf(format, args...)}
	}
	if c.o.Offline {
		return nil, unavailable("the broker does not contact KDS (--kds-offline); import it with key-broker kds import")
	}
	c.mu.Lock()
	now := c.o.Now()
	if until, ok := c.notFound[u]; ok {
		if now.Before(until) {
			c.mu.Unlock()
			return nil, unavailable("KDS answered 404 Not Found; not asking again before %s", until.UTC().Format(time.RFC3339))
		}
		delete(c.notFound, u)
	}
	if cl, ok := c.inflight[u]; ok {
		c.mu.Unlock()
		select {
		case <-cl.done:
			return cl.body, cl.err
		case <-ctx.Done():
			return nil, unavailable("gave up waiting for KDS: %v", ctx.Err())
		}
	}
	at := c.next
	if at.Before(now) {
		at = now
	}
	if wait := at.Sub(now); wait > c.o.MaxWait {
		c.mu.Unlock()
		return nil, unavailable("the broker's KDS request budget (one per %s) is taken for the next %s; try again later", c.o.MinInterval, wait.Round(time.Second))
	}
	c.next = at.Add(c.o.MinInterval)
	cl := &call{done: make(chan struct{})}
	c.inflight[u] = cl
	c.mu.Unlock()

	body, retryAfter, notFound, err := c.get(ctx, u, at)
	if err != nil {
		err = unavailable("%v", err)
	}

	c.mu.Lock()
	delete(c.inflight, u)
	if retryAfter > 0 {
		if t := c.o.Now().Add(retryAfter); t.After(c.next) {
			c.next = t
		}
	}
	if notFound {
		if len(c.notFound) >= maxRemembered {
			clear(c.notFound)
		}
		c.notFound[u] = c.o.Now().Add(c.o.NegativeTTL)
	}
	c.mu.Unlock()
	if err != nil {
		c.remember(u, err)
		c.o.Logf("KDS: %v", err)
	}
	cl.body, cl.err = body, err
	close(cl.done)
	return body, err
}

// get waits until at, then does one GET. retryAfter is set from a 429.
func (c *Cache) get(ctx context.Context, u string, at time.Time) (body []byte, retryAfter time.Duration, notFound bool, err error) {
	// A caller that goes away does not cancel the request others wait for.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.MaxWait+c.o.Timeout)
	defer cancel()
	if d := at.Sub(c.o.Now()); d > 0 {
		if err := c.o.Sleep(ctx, d); err != nil {
			return nil, 0, false, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, false, err
	}
	c.o.Logf("KDS: GET %s", u)
	resp, err := c.o.Client.Do(req)
	if err != nil {
		return nil, 0, false, fmt.Errorf("KDS unreachable: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, 0, false, fmt.Errorf("reading KDS's answer: %v", err)
	}
	switch {
	case resp.StatusCode == http.StatusOK && len(data) > maxBody:
		return nil, 0, false, fmt.Errorf("KDS's answer is larger than %d bytes", maxBody)
	case resp.StatusCode == http.StatusOK:
		return data, 0, false, nil
	case resp.StatusCode == http.StatusTooManyRequests:
		ra := parseRetryAfter(resp.Header.Get("Retry-After"), c.o.Now())
		if ra < c.o.MinInterval {
			ra = c.o.MinInterval
		}
		return nil, ra, false, fmt.Errorf("KDS answered 429 Too Many Requests; next request in %s", ra)
	case resp.StatusCode == http.StatusNotFound:
		return nil, 0, true, errors.New("KDS answered 404 Not Found (it knows no such chip or TCB)")
	default:
		return nil, 0, false, fmt.Errorf("KDS answered %s", resp.Status)
	}
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 if neither.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// ---- import and status ----

// Imported says what Import did with one file.
type Imported struct {
	Kind   string // "vcek", "crl", "cert_chain"
	Detail string
}

// Import stores a VCEK (DER or PEM, as KDS serves it) or a CRL (DER or
// PEM) after verifying it against the pinned roots, and checks a cert_chain
// (PEM) against them; anything else is refused.
func (c *Cache) Import(name string, data []byte) (Imported, error) {
	der := data
	if blk, rest := pem.Decode(data); blk != nil {
		switch {
		case blk.Type == "CERTIFICATE" && bytes.Contains(rest, []byte("-----BEGIN")):
			return c.importChain(data)
		case blk.Type == "CERTIFICATE" || blk.Type == "X509 CRL":
			if len(bytes.TrimSpace(rest)) != 0 {
				return Imported{}, errors.New("trailing data after the PEM block")
			}
			der = blk.Bytes
		default:
			return Imported{}, fmt.Errorf("PEM block %q is neither a certificate nor a CRL", blk.Type)
		}
	}
	if cert, err := x509.ParseCertificate(der); err == nil {
		a, exts, err := c.verifyVCEK(cert.Raw, "", nil, 0)
		if err != nil {
			return Imported{}, fmt.Errorf("refused VCEK: %v", err)
		}
		if err := c.storeVCEK(a.Line, exts.HWID, uint64(exts.TCBVersion), cert.Raw); err != nil {
			return Imported{}, err
		}
		return Imported{"vcek", fmt.Sprintf("VCEK of %s chip %x… at TCB 0x%016x, chains to %s", a.Line, exts.HWID[:8], uint64(exts.TCBVersion), a.Name)}, nil
	}
	if crl, err := x509.ParseRevocationList(der); err == nil {
		var a *Anchor
		var errs []string
		for i := range c.anchors {
			if err := c.verifyCRL(&c.anchors[i], crl); err != nil {
				errs = append(errs, err.Error())
				continue
			}
			a = &c.anchors[i]
			break
		}
		if a == nil {
			return Imported{}, fmt.Errorf("refused CRL: not signed by any pinned ARK (%s)", strings.Join(errs, "; "))
		}
		if e := c.crlEntryOf(a); e != nil && !newer(crl, e.crl) {
			return Imported{}, fmt.Errorf("refused CRL: AMD issued it before the cached CRL of %s (this update %s, cached %s)", a.Name, crl.ThisUpdate.UTC().Format(time.RFC3339), e.crl.ThisUpdate.UTC().Format(time.RFC3339))
		}
		now := c.o.Now()
		if err := c.storeCRL(a, crl, now, "import "+filepath.Base(name)); err != nil {
			return Imported{}, err
		}
		d := fmt.Sprintf("CRL of %s, this update %s, %d revoked; counts as obtained now for --crl-max-age", a.Name, crl.ThisUpdate.UTC().Format(time.RFC3339), len(crl.RevokedCertificateEntries))
		if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
			d += fmt.Sprintf("; WARNING: past its next update %s, AMD has issued a newer one", crl.NextUpdate.UTC().Format(time.RFC3339))
		}
		return Imported{"crl", d}, nil
	}
	return Imported{}, errors.New("neither a VCEK certificate (DER or PEM), a cert_chain (PEM) nor a CRL (DER)")
}

// importChain accepts a KDS cert_chain only if it is a pinned ASK/ARK pair;
// the pinned roots are built in, so nothing is stored.
func (c *Cache) importChain(data []byte) (Imported, error) {
	askDER, arkDER, err := kds.ParseProductCertChain(data)
	if err != nil {
		return Imported{}, fmt.Errorf("refused cert_chain: %v", err)
	}
	for _, a := range c.anchors {
		pc := a.Root.ProductCerts
		if bytes.Equal(pc.Ask.Raw, askDER) && bytes.Equal(pc.Ark.Raw, arkDER) {
			return Imported{"cert_chain", "the pinned ASK/ARK of " + a.Name + "; nothing to store"}, nil
		}
	}
	return Imported{}, errors.New("refused cert_chain: not a pinned ASK/ARK pair (the broker trusts only its built-in roots)")
}

// VCEKStatus is one cached VCEK.
type VCEKStatus struct {
	File     string    `json:"file"`
	Line     string    `json:"productLine"`
	HWID     string    `json:"hwid"`
	TCB      string    `json:"tcb"`
	Root     string    `json:"root"`
	NotAfter time.Time `json:"notAfter"`
	Error    string    `json:"error,omitempty"`
}

// CRLStatus is one pinned root's CRL.
type CRLStatus struct {
	Root       string     `json:"root"`
	Cached     bool       `json:"cached"`
	Source     string     `json:"source,omitempty"`
	FetchedAt  *time.Time `json:"fetchedAt,omitempty"`
	Age        string     `json:"age,omitempty"`
	ThisUpdate *time.Time `json:"thisUpdate,omitempty"`
	NextUpdate *time.Time `json:"nextUpdate,omitempty"`
	Revoked    int        `json:"revoked"`
	// State: "fresh", "refresh-due", "expired" (older than the age limit:
	// revocation checks fail) or "missing".
	State string `json:"state"`
}

// Status lists the cached VCEKs and every pinned root's CRL.
func (c *Cache) Status() ([]VCEKStatus, []CRLStatus, error) {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return nil, nil, err
	}
	now := c.o.Now()
	var vs []VCEKStatus
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "vcek-") || !strings.HasSuffix(e.Name(), ".der") {
			continue
		}
		s := VCEKStatus{File: e.Name()}
		data, err := os.ReadFile(filepath.Join(c.dir, e.Name()))
		if err == nil {
			var a *Anchor
			var exts *kds.Extensions
			if a, exts, err = c.verifyVCEK(data, "", nil, 0); err == nil {
				cert, _ := x509.ParseCertificate(data)
				s.Line, s.HWID, s.Root, s.NotAfter = a.Line, hex.EncodeToString(exts.HWID), a.Name, cert.NotAfter
				p := kds.DecomposeTCBVersion(exts.TCBVersion)
				s.TCB = fmt.Sprintf("0x%016x (bl=%d,tee=%d,snp=%d,ucode=%d)", uint64(exts.TCBVersion), p.BlSpl, p.TeeSpl, p.SnpSpl, p.UcodeSpl)
			}
		}
		if err != nil {
			s.Error = err.Error()
		}
		vs = append(vs, s)
	}
	var cs []CRLStatus
	for i := range c.anchors {
		a := &c.anchors[i]
		s := CRLStatus{Root: a.Name, State: "missing"}
		if e := c.crlEntryOf(a); e != nil {
			fa, tu, nu := e.fetchedAt.UTC(), e.crl.ThisUpdate.UTC(), e.crl.NextUpdate.UTC()
			s.Cached, s.Source, s.FetchedAt, s.ThisUpdate, s.Revoked = true, e.source, &fa, &tu, len(e.crl.RevokedCertificateEntries)
			if !e.crl.NextUpdate.IsZero() {
				s.NextUpdate = &nu
			}
			age := now.Sub(e.fetchedAt)
			s.Age = age.Round(time.Second).String()
			switch {
			case age > c.o.CRLMaxAge:
				s.State = "expired"
			case age >= c.o.CRLRefresh || (!e.crl.NextUpdate.IsZero() && now.After(e.crl.NextUpdate)):
				s.State = "refresh-due"
			default:
				s.State = "fresh"
			}
		}
		cs = append(cs, s)
	}
	return vs, cs, nil
}
