// Command key-broker is the off-site key broker of the diskless relays: it
// releases a relay's tor keys, encrypted to an ephemeral key, to an image
// that proves by SEV-SNP attestation (or a one-time boot token) that it is
// the registered image, and stores the onion keys and state the relays push
// back. See tools/broker/README.md.
//
//	key-broker init  --data DIR --admin-token FILE [--identity FILE]
//	key-broker serve --data DIR --listen ADDR [flags]
//	key-broker kds import|status --data DIR ...
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/verify/trust"

	"diskless-relays/tools/broker/internal/broker"
	"diskless-relays/tools/broker/internal/cli"
	"diskless-relays/tools/broker/internal/kdscache"
	"diskless-relays/tools/broker/internal/snpcheck"
	"diskless-relays/tools/broker/internal/store"
)

const usage = `usage:
  key-broker init  --data DIR --admin-token FILE [--identity FILE]
  key-broker admin-token --data DIR --move-to FILE
  key-broker serve --data DIR --listen ADDR [--identity FILE]
                   [--tls-cert FILE --tls-key FILE] [--admin-listen ADDR]
                   [--allow-simulated-attestation --simulated-ark-ask FILE]
                   --min-tcb [LINE:]TCB... [--allow-smt] [--permit-provisional-firmware]
                   [--fetch-vcek] [--check-revocations] [--kds-url URL] [--kds-offline]
                   [--crl-max-age DURATION] [--crl-refresh DURATION] [--stale-after DURATION]
  key-broker kds import --data DIR [--allow-simulated-attestation --simulated-ark-ask FILE] FILE...
  key-broker kds status --data DIR [--crl-max-age DURATION] [--allow-simulated-attestation --simulated-ark-ask FILE]
`

func main() {
	cli.Main("key-broker", usage, map[string]func([]string) error{"init": cmdInit, "serve": cmdServe, "admin-token": cmdAdminToken, "kds": cmdKDS})
}

func newFlags(name string) *flag.FlagSet { return cli.Flags(name, usage) }

// parse reads args, and answers usage and exit 2 to a positional argument or
// an empty required flag.
func parse(fs *flag.FlagSet, args []string, required ...*string) {
	_ = fs.Parse(args)
	for _, v := range required {
		if *v == "" {
			fs.Usage()
			os.Exit(2)
		}
	}
	if fs.NArg() != 0 {
		fs.Usage()
		os.Exit(2)
	}
}

// parseFiles is parse for a command that takes one or more FILE arguments
// after its flags.
func parseFiles(fs *flag.FlagSet, args []string, required ...*string) []string {
	_ = fs.Parse(args)
	for _, v := range required {
		if *v == "" {
			fs.Usage()
			os.Exit(2)
		}
	}
	if fs.NArg() == 0 {
		fs.Usage()
		os.Exit(2)
	}
	return fs.Args()
}

func cmdInit(args []string) error {
	fs := newFlags("init")
	data := fs.String("data", "", "data directory (created 0700; must be empty)")
	identity := fs.String("identity", "", "write the at-rest identity to this file instead of the data directory")
	adminToken := fs.String("admin-token", "", "write the admin token to this file, outside the data directory (required; the directory keeps only its hash)")
	parse(fs, args, data, adminToken)
	pub, err := store.Init(*data, *identity, *adminToken)
	if err != nil {
		return err
	}
	out, _ := json.MarshalIndent(pub, "", "  ")
	fmt.Println(string(out))
	where := *data + "/" + store.AtRestKeyFile
	if *identity != "" {
		where = *identity
	}
	fmt.Fprintf(os.Stderr, "key-broker: initialised %s; at-rest identity in %s; admin token in %s (the data directory keeps only its hash)\n", *data, where, *adminToken)
	return nil
}

// cmdAdminToken moves a clear admin token out of a data directory made
// before the broker kept only its hash.
func cmdAdminToken(args []string) error {
	fs := newFlags("admin-token")
	data := fs.String("data", "", "data directory")
	dest := fs.String("move-to", "", "where the token goes, outside the data directory")
	parse(fs, args, data, dest)
	moved, err := store.MoveAdminTokenOut(*data, *dest)
	if err != nil {
		return err
	}
	if moved {
		fmt.Fprintf(os.Stderr, "key-broker: moved the admin token to %s; %s keeps only its hash\n", *dest, *data)
	} else {
		fmt.Fprintf(os.Stderr, "key-broker: %s holds no admin token in clear; nothing to move\n", *data)
	}
	return nil
}

func cmdServe(args []string) error {
	fs := newFlags("serve")
	data := fs.String("data", "", "data directory made by init")
	listen := fs.String("listen", "", "address for the relay protocol (the relays reach it from anywhere)")
	adminListen := fs.String("admin-listen", "", "address for the admin API, never the relays' (default unix:DATA/admin.sock, a socket only its owner may open; a TCP address other than loopback needs --tls-cert)")
	identity := fs.String("identity", "", "at-rest identity file (e.g. %d/broker-identity from LoadCredential); default DATA/at-rest.key")
	tlsCert := fs.String("tls-cert", "", "TLS certificate (PEM)")
	tlsKey := fs.String("tls-key", "", "TLS private key (PEM)")
	allowSim := fs.Bool("allow-simulated-attestation", false, "TEST ONLY: also trust the simulator's ARK/ASK from --simulated-ark-ask")
	simRoots := fs.String("simulated-ark-ask", "", "TEST ONLY: the simulator's ark-ask.pem")
	var minTCBs cli.Strings
	fs.Var(&minTCBs, "min-tcb", `minimum reported TCB (required; repeatable): a published floor's name (amd-sb-3019), "bl=N,tee=N,snp=N,ucode=N" or "0x<hex TCB_VERSION>" for every product line, or "LINE:TCB" (e.g. "Milan:snp=24") for one`)
	allowSMT := fs.Bool("allow-smt", false, "accept guests whose policy allows SMT")
	provisional := fs.Bool("permit-provisional-firmware", false, "accept committed firmware older than current")
	fetchVCEK := fs.Bool("fetch-vcek", false, "complete a report without its VCEK from the KDS cache in DATA/kds, fetching from KDS what it lacks")
	checkRev := fs.Bool("check-revocations", false, "refuse a report whose ASK or VCEK is in AMD's CRL, kept in DATA/kds (fails closed when the CRL is older than --crl-max-age)")
	kdsURL := fs.String("kds-url", kdscache.DefaultURL, "AMD's KDS (plain http only to loopback: a test double)")
	kdsOffline := fs.Bool("kds-offline", false, "never contact KDS: use only VCEKs and CRLs cached before or imported with key-broker kds import")
	crlMaxAge := fs.Duration("crl-max-age", kdscache.DefaultCRLMaxAge, "with --check-revocations: refuse every SNP report (crl-unavailable) once the newest CRL the broker got is older than this")
	crlRefresh := fs.Duration("crl-refresh", kdscache.DefaultCRLRefresh, "fetch the CRL again when the cached one is older than this (or past its own next update)")
	staleAfter := fs.Duration("stale-after", 15*time.Minute, "report a relay stale after this long without a successful attestation")
	parse(fs, args, data, listen)
	if (*tlsCert == "") != (*tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if *simRoots != "" && !*allowSim {
		return errors.New("--simulated-ark-ask needs --allow-simulated-attestation (the simulator's roots are never trusted by accident)")
	}
	if *allowSim && *simRoots == "" {
		return errors.New("--allow-simulated-attestation needs --simulated-ark-ask FILE")
	}
	if *crlRefresh >= *crlMaxAge {
		return fmt.Errorf("--crl-refresh %s must be shorter than --crl-max-age %s, or the CRL expires before the broker asks for a new one", *crlRefresh, *crlMaxAge)
	}
	if len(minTCBs) == 0 {
		return errors.New("--min-tcb is required: the lowest firmware (TCB) whose reports this broker accepts, e.g. --min-tcb amd-sb-3019 (the floor AMD published in AMD-SB-3019, which key-broker.service carries). A host with older firmware has published breaks, and the host is the adversary here. --min-tcb bl=0,tee=0,snp=0,ucode=0 accepts any firmware, and says so")
	}
	logger := log.New(os.Stderr, "key-broker: ", log.LstdFlags)

	// One broker per data directory: two would each hold their own view of
	// the relays, and a boot token used on one would still be fresh on the other.
	unlock, err := lockDataDir(*data)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := store.Open(*data, *identity)
	if err != nil {
		return err
	}
	roots, simulated, err := loadRoots(*allowSim, *simRoots, logger)
	if err != nil {
		return err
	}
	var cache *kdscache.Cache
	if *fetchVCEK || *checkRev {
		cache, err = kdscache.Open(filepath.Join(*data, kdsDir), anchors(roots, simulated), kdscache.Options{
			URL: *kdsURL, Offline: *kdsOffline, CRLMaxAge: *crlMaxAge, CRLRefresh: *crlRefresh, Logf: logger.Printf,
		})
		if err != nil {
			return err
		}
	}
	tcb, tcbByLine, err := snpcheck.ParseMinTCBs(minTCBs)
	if err != nil {
		return err
	}
	if tcb == (kds.TCBParts{}) && len(tcbByLine) == 0 {
		logger.Printf("WARNING: --min-tcb %s accepts reports from any firmware, also firmware with published SEV-SNP breaks", strings.Join(minTCBs, " "))
	}
	srv, err := broker.New(broker.Config{
		Store: st,
		SNP: &snpcheck.Policy{
			Roots:                     roots,
			SimulatedRoots:            simulated,
			AllowSMT:                  *allowSMT,
			MinTCB:                    tcb,
			MinTCBByLine:              tcbByLine,
			PermitProvisionalFirmware: *provisional,
			FetchCerts:                *fetchVCEK,
			CheckRevocations:          *checkRev,
			KDS:                       cache,
		},
		StaleAfter: *staleAfter,
		Log:        logger,
	})
	if err != nil {
		return err
	}

	var tlsConfig *tls.Config
	if *tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return err
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	type endpoint struct {
		addr string
		h    http.Handler
		what string
	}
	// The admin API never shares the relays' listener: the relays' port faces
	// the internet, the admin API only its operator.
	if *adminListen == "" {
		*adminListen = "unix:" + filepath.Join(*data, "admin.sock")
	}
	if err := checkAdminListen(*adminListen, *listen, tlsConfig != nil); err != nil {
		return err
	}
	eps := []endpoint{{*listen, srv.RelayHandler(), "relay protocol"}, {*adminListen, srv.AdminHandler(), "admin API"}}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, len(eps))
	var servers []*http.Server
	for _, ep := range eps {
		ln, local, err := listenOn(ep.addr)
		if err != nil {
			return err
		}
		hs := &http.Server{
			Handler:           ep.h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    16 << 10,
			TLSConfig:         tlsConfig,
			ErrorLog:          logger,
		}
		servers = append(servers, hs)
		scheme := "http"
		switch tcp, isTCP := ln.Addr().(*net.TCPAddr); {
		case local:
			// A unix socket: the file's owner-only mode guards it; no TLS.
		case tlsConfig != nil:
			scheme = "https"
			ln = tls.NewListener(ln, tlsConfig)
		case isTCP && !tcp.IP.IsLoopback():
			logger.Printf("WARNING: serving without TLS on %s; put a TLS terminator in front or use --tls-cert/--tls-key", ln.Addr())
		}
		logger.Printf("listening on %s://%s (%s)", scheme, ln.Addr(), ep.what)
		go func() { errc <- hs.Serve(ln) }()
	}
	select {
	case <-ctx.Done():
		logger.Printf("shutting down")
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, hs := range servers {
		_ = hs.Shutdown(sctx)
	}
	return nil
}

// kdsDir is the KDS cache's directory in the data directory.
const kdsDir = "kds"

// loadRoots returns AMD's roots and, for a test broker, the simulator's.
func loadRoots(allowSim bool, simRoots string, logger *log.Logger) (roots, simulated map[string][]*trust.AMDRootCerts, err error) {
	roots, err = snpcheck.AMDRoots()
	if err != nil {
		return nil, nil, err
	}
	if allowSim {
		pemData, err := os.ReadFile(simRoots)
		if err != nil {
			return nil, nil, err
		}
		line, r, err := snpcheck.ParseRootsPEM(pemData)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %v", simRoots, err)
		}
		simulated = map[string][]*trust.AMDRootCerts{line: {r}}
		logger.Printf("WARNING: trusting the SIMULATED (test-only) %s ARK/ASK from %s: attestation proves nothing on this broker", line, simRoots)
	}
	return roots, simulated, nil
}

func anchors(roots, simulated map[string][]*trust.AMDRootCerts) []kdscache.Anchor {
	return append(kdscache.Anchors("amd", roots), kdscache.Anchors("simulated", simulated)...)
}

// cmdKDS works on the KDS cache of a data directory: "import" verifies
// VCEKs and CRLs got elsewhere (for a broker that cannot reach KDS) against
// the pinned roots and stores them; "status" lists what the cache holds.
// A serving broker picks up what is imported without a restart.
func cmdKDS(args []string) error {
	if len(args) == 0 || (args[0] != "import" && args[0] != "status") {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	fs := newFlags("kds " + args[0])
	data := fs.String("data", "", "data directory made by init")
	allowSim := fs.Bool("allow-simulated-attestation", false, "TEST ONLY: also trust the simulator's ARK/ASK from --simulated-ark-ask")
	simRoots := fs.String("simulated-ark-ask", "", "TEST ONLY: the simulator's ark-ask.pem")
	crlMaxAge := fs.Duration("crl-max-age", kdscache.DefaultCRLMaxAge, "the age limit serve is given, to say which CRL is expired")
	var files []string
	if args[0] == "import" {
		files = parseFiles(fs, args[1:], data)
	} else {
		parse(fs, args[1:], data)
	}
	if (*simRoots != "") != *allowSim {
		return errors.New("--allow-simulated-attestation and --simulated-ark-ask FILE go together")
	}
	if st, err := os.Stat(filepath.Join(*data, store.BrokerFile)); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("--data %s is not a data directory made by key-broker init", *data)
	}
	logger := log.New(os.Stderr, "key-broker: ", 0)
	roots, simulated, err := loadRoots(*allowSim, *simRoots, logger)
	if err != nil {
		return err
	}
	cache, err := kdscache.Open(filepath.Join(*data, kdsDir), anchors(roots, simulated), kdscache.Options{Offline: true, CRLMaxAge: *crlMaxAge})
	if err != nil {
		return err
	}
	if args[0] == "status" {
		vceks, crls, err := cache.Status()
		if err != nil {
			return err
		}
		if vceks == nil {
			vceks = []kdscache.VCEKStatus{}
		}
		out, _ := json.MarshalIndent(map[string]any{"dir": cache.Dir(), "crlMaxAge": crlMaxAge.String(), "vceks": vceks, "crls": crls}, "", "  ")
		fmt.Println(string(out))
		return nil
	}
	failed := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err == nil {
			var imp kdscache.Imported
			if imp, err = cache.Import(f, raw); err == nil {
				fmt.Fprintf(os.Stderr, "key-broker: %s: %s\n", f, imp.Detail)
				continue
			}
		}
		failed++
		fmt.Fprintf(os.Stderr, "key-broker: %s: %v\n", f, err)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d files refused; only VCEKs and CRLs that verify against the pinned AMD roots are imported", failed, len(files))
	}
	return nil
}

// lockDataDir takes an exclusive lock on DATA/serve.lock for as long as the
// process lives (the kernel drops it when the process ends, however it ends).
func lockDataDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "serve.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is in use by another key-broker serve (%v): one broker per data directory", dir, err)
	}
	return func() { f.Close() }, nil
}

// checkAdminListen refuses an admin address that the relays' listener
// already serves, or a TCP address other than loopback without TLS (the
// admin token would cross the network in clear).
func checkAdminListen(admin, relays string, withTLS bool) error {
	if admin == relays && !strings.HasSuffix(admin, ":0") {
		return fmt.Errorf("--admin-listen %s is the relays' --listen address: the admin API needs an address of its own", admin)
	}
	if strings.HasPrefix(admin, "unix:") {
		return nil
	}
	host, _, err := net.SplitHostPort(admin)
	if err != nil {
		return fmt.Errorf("--admin-listen %q: %v", admin, err)
	}
	ip := net.ParseIP(host)
	if (ip == nil || !ip.IsLoopback()) && host != "localhost" && !withTLS {
		return fmt.Errorf("--admin-listen %s is reachable from the network, and without --tls-cert the admin token would cross it in clear: use a loopback address, a unix: socket, or TLS", admin)
	}
	return nil
}

// listenOn opens a TCP address, or "unix:PATH" as a socket file of mode 0600
// (a stale socket file at PATH is replaced). local reports the unix case.
func listenOn(addr string) (ln net.Listener, local bool, err error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		ln, err = net.Listen("tcp", addr)
		return ln, false, err
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if err := os.Remove(path); err != nil {
			return nil, true, err
		}
	}
	old := syscall.Umask(0o177)
	ln, err = net.Listen("unix", path)
	syscall.Umask(old)
	return ln, true, err
}
