// Command key-broker is the off-site key broker of the diskless relays: it
// releases a relay's tor keys, encrypted to an ephemeral key, to an image
// that proves by SEV-SNP attestation (or a one-time boot token) that it is
// the registered image, and stores the onion keys and state the relays push
// back. See tools/broker/README.md.
//
//	key-broker init  --data DIR --admin-token FILE [--identity FILE]
//	key-broker serve --data DIR --listen ADDR [flags]
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
                   [--fetch-vcek] [--check-revocations] [--stale-after DURATION]
`

func main() {
	cli.Main("key-broker", usage, map[string]func([]string) error{"init": cmdInit, "serve": cmdServe, "admin-token": cmdAdminToken})
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
	fetchVCEK := fs.Bool("fetch-vcek", false, "fetch a VCEK missing from the certificate table from AMD's KDS (network)")
	checkRev := fs.Bool("check-revocations", false, "check AMD's CRL (network)")
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
	roots, err := snpcheck.AMDRoots()
	if err != nil {
		return err
	}
	var simulated map[string][]*trust.AMDRootCerts
	if *allowSim {
		pemData, err := os.ReadFile(*simRoots)
		if err != nil {
			return err
		}
		line, r, err := snpcheck.ParseRootsPEM(pemData)
		if err != nil {
			return fmt.Errorf("%s: %v", *simRoots, err)
		}
		simulated = map[string][]*trust.AMDRootCerts{line: {r}}
		logger.Printf("WARNING: trusting the SIMULATED (test-only) %s ARK/ASK from %s: attestation proves nothing on this broker", line, *simRoots)
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
