// Command key-broker is the off-site key broker of the diskless relays: it
// releases a relay's tor keys, encrypted to an ephemeral key, to an image
// that proves by SEV-SNP attestation (or a one-time boot token) that it is
// the registered image, and stores the onion keys and state the relays push
// back. See tools/broker/README.md.
//
//	key-broker init  --data DIR [--identity FILE]
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
	"strings"
	"syscall"
	"time"

	"diskless-relays/tools/broker/internal/broker"
	"diskless-relays/tools/broker/internal/cli"
	"diskless-relays/tools/broker/internal/snpcheck"
	"diskless-relays/tools/broker/internal/store"
)

const usage = `usage:
  key-broker init  --data DIR [--identity FILE]
  key-broker serve --data DIR --listen ADDR [--identity FILE]
                   [--tls-cert FILE --tls-key FILE] [--admin-listen ADDR]
                   [--allow-simulated-attestation --simulated-ark-ask FILE]
                   [--min-tcb TCB] [--allow-smt] [--permit-provisional-firmware]
                   [--fetch-vcek] [--check-revocations] [--stale-after DURATION]
`

func main() {
	cli.Main("key-broker", usage, map[string]func([]string) error{"init": cmdInit, "serve": cmdServe})
}

func newFlags(name string) *flag.FlagSet { return cli.Flags(name, usage) }

func cmdInit(args []string) error {
	fs := newFlags("init")
	data := fs.String("data", "", "data directory (created 0700; must be empty)")
	identity := fs.String("identity", "", "write the at-rest identity to this file instead of the data directory")
	_ = fs.Parse(args)
	if *data == "" || fs.NArg() != 0 {
		fs.Usage()
		os.Exit(2)
	}
	pub, err := store.Init(*data, *identity)
	if err != nil {
		return err
	}
	out, _ := json.MarshalIndent(pub, "", "  ")
	fmt.Println(string(out))
	where := *data + "/" + store.AtRestKeyFile
	if *identity != "" {
		where = *identity
	}
	fmt.Fprintf(os.Stderr, "key-broker: initialised %s; at-rest identity in %s; admin token in %s/%s\n", *data, where, *data, store.AdminTokenFile)
	return nil
}

func cmdServe(args []string) error {
	fs := newFlags("serve")
	data := fs.String("data", "", "data directory made by init")
	listen := fs.String("listen", "", "address for the relay protocol (and the admin API unless --admin-listen)")
	adminListen := fs.String("admin-listen", "", "serve the admin API only on this address (e.g. 127.0.0.1:8444, or unix:/run/key-broker/admin.sock: a socket only its owner may open)")
	identity := fs.String("identity", "", "at-rest identity file (e.g. %d/broker-identity from LoadCredential); default DATA/at-rest.key")
	tlsCert := fs.String("tls-cert", "", "TLS certificate (PEM)")
	tlsKey := fs.String("tls-key", "", "TLS private key (PEM)")
	allowSim := fs.Bool("allow-simulated-attestation", false, "TEST ONLY: also trust the simulator's ARK/ASK from --simulated-ark-ask")
	simRoots := fs.String("simulated-ark-ask", "", "TEST ONLY: the simulator's ark-ask.pem")
	minTCB := fs.String("min-tcb", "", `minimum reported TCB: "0x<hex TCB_VERSION>" or "bl=N,tee=N,snp=N,ucode=N"`)
	allowSMT := fs.Bool("allow-smt", false, "accept guests whose policy allows SMT")
	provisional := fs.Bool("permit-provisional-firmware", false, "accept committed firmware older than current")
	fetchVCEK := fs.Bool("fetch-vcek", false, "fetch a VCEK missing from the certificate table from AMD's KDS (network)")
	checkRev := fs.Bool("check-revocations", false, "check AMD's CRL (network)")
	staleAfter := fs.Duration("stale-after", 15*time.Minute, "report a relay stale after this long without a successful attestation")
	_ = fs.Parse(args)
	if *data == "" || *listen == "" || fs.NArg() != 0 {
		fs.Usage()
		os.Exit(2)
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if *simRoots != "" && !*allowSim {
		return errors.New("--simulated-ark-ask needs --allow-simulated-attestation (the simulator's roots are never trusted by accident)")
	}
	if *allowSim && *simRoots == "" {
		return errors.New("--allow-simulated-attestation needs --simulated-ark-ask FILE")
	}
	logger := log.New(os.Stderr, "key-broker: ", log.LstdFlags)

	st, err := store.Open(*data, *identity)
	if err != nil {
		return err
	}
	roots, err := snpcheck.AMDRoots()
	if err != nil {
		return err
	}
	if *allowSim {
		pemData, err := os.ReadFile(*simRoots)
		if err != nil {
			return err
		}
		line, r, err := snpcheck.ParseRootsPEM(pemData)
		if err != nil {
			return fmt.Errorf("%s: %v", *simRoots, err)
		}
		roots[line] = append(roots[line], r)
		logger.Printf("WARNING: trusting the SIMULATED (test-only) %s ARK/ASK from %s: attestation proves nothing on this broker", line, *simRoots)
	}
	tcb, err := snpcheck.ParseTCB(*minTCB)
	if err != nil {
		return err
	}
	srv, err := broker.New(broker.Config{
		Store: st,
		SNP: &snpcheck.Policy{
			Roots:                     roots,
			AllowSMT:                  *allowSMT,
			MinTCB:                    tcb,
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
	eps := []endpoint{{*listen, srv.Handler(), "relay protocol and admin API"}}
	if *adminListen != "" {
		eps = []endpoint{{*listen, srv.RelayHandler(), "relay protocol"}, {*adminListen, srv.AdminHandler(), "admin API"}}
	}
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
