// Command snp-simulator is a TEST-ONLY simulated AMD secure processor for
// hosts without SEV-SNP. It runs on the host, listens on a unix socket that
// QEMU connects a virtio-serial port to, and answers report requests from
// the guest's relay-agent with reports signed by a made-up VCEK.
//
//	snp-simulator init  --out DIR [--product Milan-B1]
//	snp-simulator serve --dir DIR --socket PATH --measurement HEX96 [--policy HEX] [--no-cert-table]
//	                    [--chip-id HEX128] [--tcb TCB]
package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"diskless-relays/tools/broker/internal/cli"
	"diskless-relays/tools/broker/internal/protocol"
	"diskless-relays/tools/broker/internal/snpcheck"
	"diskless-relays/tools/broker/internal/snpsim"
)

const usage = `usage:
  snp-simulator init  --out DIR [--product Milan-B1]
  snp-simulator serve --dir DIR --socket PATH --measurement HEX96 [--policy HEX] [--no-cert-table]
                      [--chip-id HEX128] [--tcb TCB]
TEST ONLY: the chain it makes proves nothing about real hardware.
`

func main() {
	cli.Main("snp-simulator", usage, map[string]func([]string) error{"init": cmdInit, "serve": cmdServe})
}

func newFlags(name string) *flag.FlagSet { return cli.Flags(name, usage) }

func cmdInit(args []string) error {
	fs := newFlags("init")
	out := fs.String("out", "", "directory for the chain (created 0700)")
	product := fs.String("product", snpsim.DefaultProductName, "product name (Milan-B0, Milan-B1, Genoa-B0, …)")
	_ = fs.Parse(args)
	if *out == "" || fs.NArg() != 0 {
		fs.Usage()
		os.Exit(2)
	}
	if err := snpsim.Init(*out, snpsim.InitOptions{ProductName: *product}); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "snp-simulator: test-only chain in %s; give the broker %s\n", *out, filepath.Join(*out, snpsim.ArkAskFile))
	return nil
}

func cmdServe(args []string) error {
	fs := newFlags("serve")
	dir := fs.String("dir", "", "directory made by init")
	socket := fs.String("socket", "", "unix socket to listen on (QEMU: -chardev socket,path=…)")
	measurement := fs.String("measurement", "", "launch measurement to report (96 hex digits)")
	policy := fs.String("policy", fmt.Sprintf("0x%x", snpsim.DefaultPolicy), "guest policy to report (hex)")
	chipID := fs.String("chip-id", "", "chip ID to report (128 hex digits; default from simulator.json)")
	noCerts := fs.Bool("no-cert-table", false, "answer reports without a certificate table, like a host that does not provision it (the broker then needs --fetch-vcek)")
	tcb := fs.String("tcb", "", `TCB to report: "0x<hex>" or "bl=N,tee=N,snp=N,ucode=N" (default `+fmt.Sprintf("%+v", snpsim.DefaultTCB)+")")
	_ = fs.Parse(args)
	if *dir == "" || *socket == "" || *measurement == "" || fs.NArg() != 0 {
		fs.Usage()
		os.Exit(2)
	}
	m, err := protocol.ParseMeasurement(*measurement)
	if err != nil {
		return err
	}
	pol, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(*policy), "0x"), 16, 64)
	if err != nil {
		return fmt.Errorf("--policy: %v", err)
	}
	o := snpsim.Options{Measurement: m, Policy: pol, NoCertTable: *noCerts}
	if *chipID != "" {
		if o.ChipID, err = hex.DecodeString(*chipID); err != nil {
			return fmt.Errorf("--chip-id: %v", err)
		}
	}
	if *tcb != "" {
		p, err := snpcheck.ParseTCB(*tcb)
		if err != nil {
			return fmt.Errorf("--tcb: %v", err)
		}
		o.TCB = &p
	}
	sim, err := snpsim.Load(*dir, o)
	if err != nil {
		return err
	}
	ln, err := snpsim.ListenUnix(*socket)
	if err != nil {
		return err
	}
	logger := log.New(os.Stderr, "snp-simulator: ", log.LstdFlags)
	logger.Printf("TEST ONLY: serving simulated SNP reports on %s (measurement %s, policy 0x%x)", *socket, hex.EncodeToString(m), pol)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	err = sim.Serve(ln, logger)
	os.Remove(*socket)
	return err
}
