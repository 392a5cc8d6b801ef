package broker_test

// Broker throughput: how many relay boots (key releases) and pushes one
// broker serves. Run with
//
//	go test -run '^$' -bench . ./internal/broker/
//
// or bash bench/broker.sh from the repository root for a table.
//
// Everything is real crypto end to end, as in the tests: the broker trusts a
// simulated ARK/ASK chain (as with --allow-simulated-attestation), made here
// with RSA-4096 keys like AMD's; relays are enrolled with a key bundle of
// tor-like sizes and an image whose measurement is registered. A boot is
// challenge → simulator-signed report whose REPORT_DATA binds the nonce and
// an ephemeral age recipient → attest → signature check and age decryption
// of the released bundle by the client; a push is seal the payload to the
// push recipient → challenge → report binding the payload hash → attest →
// acknowledgement signature check. The relay API is served over TLS 1.3
// (ECDSA P-256 certificate) on loopback, and every boot or push opens a new
// connection, as a freshly booted agent (or a push every five minutes) does.
// The data directory is on the test's TempDir, so every release pays the
// store's fsyncs (relay metadata: 2, log line: 1; a push also rewrites the
// bundle: 2 more).
//
// Clients run in the same process as the broker, so on a small machine they
// compete with it for the CPUs: the end-to-end numbers are a lower bound on
// what one broker serves. The metric names say what is measured:
//
//   - releases/s, pushes/s: completed operations per second of wall time;
//   - p50-ms, p99-ms: latency of one release or push (nearest rank), as the
//     client sees it (end to end) or as the handler takes (server-only);
//   - client-sign-ms/op: the simulated secure processor signing the report
//     (ECDSA P-384), client side;
//   - client-open-ms/op: checking the release's ed25519 signature, age
//     decryption and decoding of the bundle (boot), or the acknowledgement's
//     signature check (push), client side;
//   - client-seal-ms/op: encrypting the push payload to the push recipient;
//   - server+net-ms/op: the two HTTP exchanges (challenge, attest) as the
//     client times them: TLS handshake, loopback, and the broker's handling;
//   - server-*: BenchmarkServerAttest and BenchmarkServerParts measure the
//     broker alone, from requests made beforehand (no client work, no TLS,
//     no sockets: the handler is called directly).
//
// The broker handles attest requests one at a time (Server.mu is held from
// the session check to the committed release), so concurrency helps only
// with what happens outside that lock: TLS, HTTP, JSON, and the clients.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"

	"diskless-relays/tools/broker/internal/agecrypt"
	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/snpsim"
	"diskless-relays/tools/broker/internal/store"
)

// benchChain is a simulated chain with AMD's key sizes (RSA-4096 ARK and
// ASK; the tests' chains use 2048 bits to start quickly). Made once per test
// binary, only when a benchmark runs, under TestMain's temporary directory.
var benchChain struct {
	once sync.Once
	dir  string
	err  error
}

func benchSimDir(b *testing.B) string {
	b.Helper()
	benchChain.once.Do(func() {
		benchChain.dir = filepath.Join(filepath.Dir(trustedSimDir), "bench-rsa4096")
		benchChain.err = snpsim.Init(benchChain.dir, snpsim.InitOptions{RSABits: 4096})
	})
	if benchChain.err != nil {
		b.Fatal(benchChain.err)
	}
	return benchChain.dir
}

// torFiles is a key bundle with the sizes tor writes (RSA-1024 keys in PEM,
// ed25519 keys and certificate, a state file of a running relay).
func torFiles(b *testing.B) protocol.Files {
	b.Helper()
	sizes := map[string]int{
		"keys/ed25519_master_id_public_key": 64,
		"keys/ed25519_signing_secret_key":   96,
		"keys/ed25519_signing_cert":         172,
		"keys/secret_id_key":                887,
		"keys/secret_onion_key":             887,
		"keys/secret_onion_key_ntor":        96,
		"state":                             2500,
	}
	f := protocol.Files{}
	for n, s := range sizes {
		f[n] = randBytes(b, s)
	}
	return f
}

// pushFiles is what a running relay pushes: current and previous onion keys
// and its state.
func pushFiles(b *testing.B) protocol.Files {
	b.Helper()
	return protocol.Files{
		"keys/secret_onion_key":          randBytes(b, 887),
		"keys/secret_onion_key_ntor":     randBytes(b, 96),
		"keys/secret_onion_key.old":      randBytes(b, 887),
		"keys/secret_onion_key_ntor.old": randBytes(b, 96),
		"state":                          randBytes(b, 2500),
	}
}

type benchRelay struct {
	name, digest string
	identity     protocol.Files // what every release must carry
}

// benchBroker is a broker (the tests' env: real store, admin API) with its
// relay API also served over TLS, n enrolled relays, and the simulated
// secure processor of the host they run on.
type benchBroker struct {
	e       *env
	url     string          // relay API over TLS
	tr      *http.Transport // template, cloned for every boot or push
	h       http.Handler    // the relay API, for server-only benchmarks
	sim     *snpsim.Simulator
	m       []byte
	pushRcp *age.X25519Recipient
	relays  []benchRelay
}

func newBenchBroker(b *testing.B, n int) *benchBroker {
	return newBenchBrokerWith(b, n, envOptions{})
}

func newBenchBrokerWith(b *testing.B, n int, o envOptions) *benchBroker {
	b.Helper()
	simDir := benchSimDir(b)
	o.simDir = simDir
	e := newEnv(b, o)
	bb := &benchBroker{e: e, h: e.srv.RelayHandler(), m: randBytes(b, protocol.MeasurementSize)}
	bb.sim = simFor(b, simDir, bb.m, policyNoSMT)
	rcp, err := agecrypt.ParseRecipient(e.pub.PushRecipient)
	if err != nil {
		b.Fatal(err)
	}
	bb.pushRcp = rcp

	ts := httptest.NewUnstartedServer(e.srv.RelayHandler())
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{benchTLSCert(b)}, MinVersion: tls.VersionTLS12}
	ts.StartTLS()
	b.Cleanup(ts.Close)
	bb.url = ts.URL
	bb.tr = ts.Client().Transport.(*http.Transport)

	for i := range n {
		r := benchRelay{name: fmt.Sprintf("bench-%d", i), digest: randDigest(b)}
		files := torFiles(b)
		e.uploadKeys(r.name, files)
		e.registerSNP(r.name, r.digest, bb.m)
		r.identity = protocol.Files{}
		for _, name := range protocol.IdentityFiles {
			r.identity[name] = files[name]
		}
		bb.relays = append(bb.relays, r)
	}
	return bb
}

// benchTLSCert is a self-signed ECDSA P-256 certificate for 127.0.0.1, as
// in e2e/.
func benchTLSCert(b *testing.B) tls.Certificate {
	b.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "key-broker bench"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// phases splits one boot or push, as the client times it.
type phases struct {
	sign  time.Duration // the secure processor signing the report
	crypt time.Duration // boot: verify, decrypt, decode the release; push: seal the payload, verify the ack
	wire  time.Duration // challenge and attest round trips (TLS, HTTP, the broker)
}

func (p *phases) add(q phases) {
	p.sign += q.sign
	p.crypt += q.crypt
	p.wire += q.wire
}

// post sends one JSON request and decodes a 200 answer.
func post(c *http.Client, url string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, protocol.MaxRequestSize))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %d %s", url, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	return json.Unmarshal(data, out)
}

// client is a fresh connection's worth of HTTP client, as a just-booted
// agent has; close it when done.
func (bb *benchBroker) client() (*http.Client, func()) {
	return bb.clientFrom(nil)
}

// clientFrom is client() with its connections made from the local address
// from (nil: any), so that the broker sees each relay as its own source.
func (bb *benchBroker) clientFrom(from net.IP) (*http.Client, func()) {
	tr := bb.tr.Clone()
	if from != nil {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: from}, Timeout: 10 * time.Second}
		tr.DialContext = d.DialContext
	}
	return &http.Client{Transport: tr, Timeout: time.Minute}, tr.CloseIdleConnections
}

// boot does what relay-agent fetch does, short of installing the files:
// one complete, checked key release.
func (bb *benchBroker) boot(r benchRelay) (phases, error) {
	return bb.bootFrom(r, nil)
}

func (bb *benchBroker) bootFrom(r benchRelay, from net.IP) (phases, error) {
	var p phases
	c, done := bb.clientFrom(from)
	defer done()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return p, err
	}
	recipient := id.Recipient().String()
	base := bb.url + "/v1/relays/" + r.name

	t0 := time.Now()
	var ch protocol.ChallengeResponse
	if err := post(c, base+"/challenge", protocol.ChallengeRequest{ImageDigest: r.digest, Purpose: protocol.PurposeBoot}, &ch); err != nil {
		return p, err
	}
	t1 := time.Now()
	rep, certs, err := bb.sim.Report(protocol.ReportData(r.name, r.digest, protocol.PurposeBoot, ch.Nonce, recipient, nil))
	if err != nil {
		return p, err
	}
	t2 := time.Now()
	var br protocol.BootResponse
	req := protocol.AttestRequest{Session: ch.Session, Recipient: recipient,
		Evidence: protocol.Evidence{Kind: protocol.EvidenceSNP, Report: rep, Certs: certs}}
	if err := post(c, base+"/attest", req, &br); err != nil {
		return p, err
	}
	t3 := time.Now()
	if !protocol.Verify(bb.e.pub.SigningPublicKey, protocol.BootResponseDigest(r.name, r.digest, ch.Nonce, br.Bundle), br.Signature) {
		return p, errors.New("release signature does not verify")
	}
	plain, err := agecrypt.Decrypt(br.Bundle, 2*protocol.MaxBundleSize, id)
	if err != nil {
		return p, err
	}
	var bp protocol.BundlePlaintext
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&bp); err != nil {
		return p, err
	}
	if bp.Relay != r.name {
		return p, fmt.Errorf("bundle is for %q", bp.Relay)
	}
	if err := protocol.CheckFiles(bp.Files, nil); err != nil {
		return p, err
	}
	for name, want := range r.identity {
		if !bytes.Equal(bp.Files[name], want) {
			return p, fmt.Errorf("released %s differs from the enrolled one", name)
		}
	}
	t4 := time.Now()
	p = phases{sign: t2.Sub(t1), crypt: t4.Sub(t3), wire: t1.Sub(t0) + t3.Sub(t2)}
	return p, nil
}

// push does what relay-agent push does once, short of reading the files.
func (bb *benchBroker) push(r benchRelay, files protocol.Files) (phases, error) {
	var p phases
	c, done := bb.client()
	defer done()
	base := bb.url + "/v1/relays/" + r.name

	t0 := time.Now()
	pj, err := json.Marshal(protocol.PushPlaintext{Relay: r.name, Files: files})
	if err != nil {
		return p, err
	}
	payload, err := agecrypt.Encrypt(pj, bb.pushRcp)
	if err != nil {
		return p, err
	}
	payloadDigest := protocol.PayloadSHA256(payload)
	t1 := time.Now()
	var ch protocol.ChallengeResponse
	if err := post(c, base+"/challenge", protocol.ChallengeRequest{ImageDigest: r.digest, Purpose: protocol.PurposePush}, &ch); err != nil {
		return p, err
	}
	t2 := time.Now()
	rep, certs, err := bb.sim.Report(protocol.ReportData(r.name, r.digest, protocol.PurposePush, ch.Nonce, "", payloadDigest))
	if err != nil {
		return p, err
	}
	t3 := time.Now()
	var pr protocol.PushResponse
	req := protocol.AttestRequest{Session: ch.Session, Payload: payload,
		Evidence: protocol.Evidence{Kind: protocol.EvidenceSNP, Report: rep, Certs: certs}}
	if err := post(c, base+"/attest", req, &pr); err != nil {
		return p, err
	}
	t4 := time.Now()
	if !protocol.Verify(bb.e.pub.SigningPublicKey, protocol.PushAckDigest(r.name, r.digest, ch.Nonce, payloadDigest), pr.Signature) {
		return p, errors.New("push acknowledgement signature does not verify")
	}
	t5 := time.Now()
	p = phases{crypt: t1.Sub(t0) + t5.Sub(t4), sign: t3.Sub(t2), wire: t2.Sub(t1) + t4.Sub(t3)}
	return p, nil
}

// latencies collects per-operation durations.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// percentile is the nearest-rank p-th percentile.
func (l *latencies) percentile(p float64) time.Duration {
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// report adds rate (ops per second of elapsed wall time, in unit) and the
// p50/p99 latencies.
func (l *latencies) report(b *testing.B, elapsed time.Duration, unit string) {
	b.ReportMetric(float64(len(l.d))/elapsed.Seconds(), unit)
	b.ReportMetric(ms(l.percentile(50)), "p50-ms")
	b.ReportMetric(ms(l.percentile(99)), "p99-ms")
}

// BenchmarkBootRelease: one complete boot release per op, one after the
// other, for one relay.
func BenchmarkBootRelease(b *testing.B) {
	bb := newBenchBroker(b, 1)
	r := bb.relays[0]
	var lat latencies
	var sum phases
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		t0 := time.Now()
		p, err := bb.boot(r)
		if err != nil {
			b.Fatal(err)
		}
		lat.add(time.Since(t0))
		sum.add(p)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	lat.report(b, elapsed, "releases/s")
	b.ReportMetric(ms(sum.sign)/float64(b.N), "client-sign-ms/op")
	b.ReportMetric(ms(sum.crypt)/float64(b.N), "client-open-ms/op")
	b.ReportMetric(ms(sum.wire)/float64(b.N), "server+net-ms/op")
}

// BenchmarkConcurrentBoots: N relays boot at the same moment (a host with N
// relays comes back). One op is one such wave of N simultaneous boots, so
// ns/op is the time until the last of the N has its keys; releases/s and
// the latencies are per release.
func BenchmarkConcurrentBoots(b *testing.B) {
	for _, n := range []int{1, 8, 32, 128} {
		b.Run(fmt.Sprintf("boots=%d", n), func(b *testing.B) {
			bb := newBenchBroker(b, n)
			var lat latencies
			var failed atomic.Pointer[error]
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				var wg sync.WaitGroup
				for _, r := range bb.relays {
					wg.Go(func() {
						t0 := time.Now()
						if _, err := bb.boot(r); err != nil {
							failed.CompareAndSwap(nil, &err)
							return
						}
						lat.add(time.Since(t0))
					})
				}
				wg.Wait()
				if err := failed.Load(); err != nil {
					b.Fatal(*err)
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			lat.report(b, elapsed, "releases/s")
		})
	}
}

// BenchmarkPush: one attested push per op, one after the other, for one
// relay.
func BenchmarkPush(b *testing.B) {
	bb := newBenchBroker(b, 1)
	r := bb.relays[0]
	files := pushFiles(b)
	var lat latencies
	var sum phases
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		t0 := time.Now()
		p, err := bb.push(r, files)
		if err != nil {
			b.Fatal(err)
		}
		lat.add(time.Since(t0))
		sum.add(p)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	lat.report(b, elapsed, "pushes/s")
	b.ReportMetric(ms(sum.sign)/float64(b.N), "client-sign-ms/op")
	b.ReportMetric(ms(sum.crypt)/float64(b.N), "client-seal-ms/op")
	b.ReportMetric(ms(sum.wire)/float64(b.N), "server+net-ms/op")
}

// serve calls the relay API's handler directly.
func (bb *benchBroker) serve(path string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	bb.h.ServeHTTP(rec, req)
	return rec
}

type premade struct {
	path string
	body []byte
}

// premade makes a ready attest request (challenge answered, report signed,
// payload sealed) for relay r.
func (bb *benchBroker) premade(b *testing.B, r benchRelay, purpose string, files protocol.Files) premade {
	b.Helper()
	base := "/v1/relays/" + r.name
	cb, _ := json.Marshal(protocol.ChallengeRequest{ImageDigest: r.digest, Purpose: purpose})
	rec := bb.serve(base+"/challenge", cb)
	if rec.Code != http.StatusOK {
		b.Fatalf("challenge: %d %s", rec.Code, rec.Body)
	}
	var ch protocol.ChallengeResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &ch); err != nil {
		b.Fatal(err)
	}
	req := protocol.AttestRequest{Session: ch.Session}
	var payloadDigest []byte
	if purpose == protocol.PurposeBoot {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			b.Fatal(err)
		}
		req.Recipient = id.Recipient().String()
	} else {
		pj, _ := json.Marshal(protocol.PushPlaintext{Relay: r.name, Files: files})
		payload, err := agecrypt.Encrypt(pj, bb.pushRcp)
		if err != nil {
			b.Fatal(err)
		}
		req.Payload = payload
		payloadDigest = protocol.PayloadSHA256(payload)
	}
	rep, certs, err := bb.sim.Report(protocol.ReportData(r.name, r.digest, purpose, ch.Nonce, req.Recipient, payloadDigest))
	if err != nil {
		b.Fatal(err)
	}
	req.Evidence = protocol.Evidence{Kind: protocol.EvidenceSNP, Report: rep, Certs: certs}
	body, err := json.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	return premade{path: base + "/attest", body: body}
}

// BenchmarkServerAttest: the broker's handling of one attest request alone
// (session, SNP verification and validation, bundle load, age encryption to
// the recipient, ed25519 signature, the committed store writes with their
// fsyncs, the JSON answer), from requests made beforehand, the timer
// stopped, in batches (a relay may hold 64 unanswered challenges). conc=8
// sends each batch from 8 goroutines.
func BenchmarkServerAttest(b *testing.B) {
	const relays, perRelay = 8, 64
	for _, purpose := range []string{protocol.PurposeBoot, protocol.PurposePush} {
		for _, conc := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/conc=%d", purpose, conc), func(b *testing.B) {
				bb := newBenchBroker(b, relays)
				files := pushFiles(b)
				var lat latencies
				var elapsed time.Duration
				b.ResetTimer()
				for done := 0; done < b.N; {
					b.StopTimer()
					batch := make([]premade, min(b.N-done, relays*perRelay))
					for i := range batch {
						batch[i] = bb.premade(b, bb.relays[i%relays], purpose, files)
					}
					var next atomic.Int64
					var failed atomic.Pointer[string]
					b.StartTimer()
					start := time.Now()
					var wg sync.WaitGroup
					for range conc {
						wg.Go(func() {
							for {
								i := int(next.Add(1)) - 1
								if i >= len(batch) {
									return
								}
								t0 := time.Now()
								rec := bb.serve(batch[i].path, batch[i].body)
								lat.add(time.Since(t0))
								if rec.Code != http.StatusOK {
									msg := fmt.Sprintf("attest: %d %s", rec.Code, rec.Body)
									failed.CompareAndSwap(nil, &msg)
								}
							}
						})
					}
					wg.Wait()
					elapsed += time.Since(start)
					if msg := failed.Load(); msg != nil {
						b.Fatal(*msg)
					}
					done += len(batch)
				}
				b.StopTimer()
				unit := "server-releases/s"
				if purpose == protocol.PurposePush {
					unit = "server-pushes/s"
				}
				lat.report(b, elapsed, unit)
			})
		}
	}
}

// BenchmarkServerParts: where the broker's time for one boot release goes,
// each part called directly the way the attest handler calls it.
func BenchmarkServerParts(b *testing.B) {
	b.Run("snp-verify", func(b *testing.B) {
		// verify.SnpAttestation (report signature, VCEK chain to the
		// pinned ARK) and validate.SnpAttestation plus the explicit checks.
		bb := newBenchBroker(b, 1)
		r := bb.relays[0]
		id, err := age.GenerateX25519Identity()
		if err != nil {
			b.Fatal(err)
		}
		nonce := randBytes(b, protocol.NonceSize)
		rd := protocol.ReportData(r.name, r.digest, protocol.PurposeBoot, nonce, id.Recipient().String(), nil)
		rep, certs, err := bb.sim.Report(rd)
		if err != nil {
			b.Fatal(err)
		}
		registered := [][]byte{bb.m}
		b.ResetTimer()
		for range b.N {
			if _, ref := bb.e.snp.Check(rep, certs, rd, registered); ref != nil {
				b.Fatal(ref)
			}
		}
	})
	b.Run("load-bundle", func(b *testing.B) {
		// Read the relay's bundle and age-decrypt it with the at-rest key.
		bb := newBenchBroker(b, 1)
		b.ResetTimer()
		for range b.N {
			if _, err := bb.e.st.LoadBundle(bb.relays[0].name); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("seal-sign", func(b *testing.B) {
		// Encrypt the release to the agent's recipient and sign it.
		bb := newBenchBroker(b, 1)
		r := bb.relays[0]
		files, err := bb.e.st.LoadBundle(r.name)
		if err != nil {
			b.Fatal(err)
		}
		id, err := age.GenerateX25519Identity()
		if err != nil {
			b.Fatal(err)
		}
		nonce := randBytes(b, protocol.NonceSize)
		b.ResetTimer()
		for range b.N {
			pj, err := json.Marshal(protocol.BundlePlaintext{Relay: r.name, Files: files})
			if err != nil {
				b.Fatal(err)
			}
			ct, err := agecrypt.Encrypt(pj, id.Recipient())
			if err != nil {
				b.Fatal(err)
			}
			_ = ed25519.Sign(bb.e.st.Secrets.Signing, protocol.BootResponseDigest(r.name, r.digest, nonce, ct))
		}
	})
	b.Run("commit", func(b *testing.B) {
		// Persist the relay's last attestation and append the log line:
		// SaveRelay (write, fsync, rename, fsync dir) and AppendLog
		// (write, fsync), as a release does before answering.
		bb := newBenchBroker(b, 1)
		r := bb.relays[0]
		entry := store.LogEntry{Relay: r.name, ImageDigest: r.digest, Purpose: protocol.PurposeBoot,
			EvidenceKind: protocol.EvidenceSNP, Verdict: "released", Measurement: hex.EncodeToString(bb.m),
			ReportedTCB: "0x0000000000000000 (bl=0,tee=0,snp=0,ucode=0)", Policy: "0x20000"}
		b.ResetTimer()
		for range b.N {
			entry.Time = time.Now().UTC()
			rel := bb.e.st.Relay(r.name).Clone()
			rel.LastAttestation = &store.Attestation{Time: entry.Time, ImageDigest: r.digest, Purpose: entry.Purpose,
				EvidenceKind: entry.EvidenceKind, Verdict: entry.Verdict, Measurement: entry.Measurement,
				ReportedTCB: entry.ReportedTCB, Policy: entry.Policy}
			if err := bb.e.st.SaveRelay(rel); err != nil {
				b.Fatal(err)
			}
			if err := bb.e.st.AppendLog(entry, true); err != nil {
				b.Fatal(err)
			}
		}
	})
}
