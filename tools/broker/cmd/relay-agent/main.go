// Command relay-agent runs inside a diskless relay image: it fetches the
// relay's tor keys from the key broker at boot (proving by SEV-SNP
// attestation or a one-time boot token that it is the registered image) and
// pushes tor's current onion keys and state back. See tools/broker/README.md.
//
//	relay-agent fetch [--max-attempts N] [--backoff-min D] [--backoff-max D] CONFIG
//	relay-agent push CONFIG
//	relay-agent run [--final-timeout D] CONFIG
//	relay-agent check CONFIG
//
// check validates CONFIG with the agent's own rules and exits: the build host
// runs it on every configuration it renders, before it goes into an image.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"diskless-relays/tools/broker/internal/agent"
)

const usage = `usage:
  relay-agent fetch [--max-attempts N] [--backoff-min D] [--backoff-max D] CONFIG
  relay-agent push  [--timeout D] CONFIG
  relay-agent run   [--final-timeout D] CONFIG
  relay-agent check CONFIG
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	maxAttempts := fs.Int("max-attempts", 0, "fetch: give up after N failed attempts (0: retry forever)")
	backoffMin := fs.Duration("backoff-min", 2*time.Second, "first delay between attempts")
	backoffMax := fs.Duration("backoff-max", 60*time.Second, "longest delay between attempts")
	timeout := fs.Duration("timeout", 2*time.Minute, "push: overall time limit")
	finalTimeout := fs.Duration("final-timeout", 30*time.Second, "run: time limit of the push made on SIGTERM/SIGINT")
	switch cmd {
	case "fetch", "push", "run", "check":
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	_ = fs.Parse(os.Args[2:])
	if fs.NArg() != 1 {
		fs.Usage()
		os.Exit(2)
	}
	cfg, err := agent.LoadConfig(fs.Arg(0))
	if err != nil {
		fail(err)
	}
	if cmd == "check" {
		return
	}
	a, err := agent.New(cfg, agent.Options{
		BackoffMin:  *backoffMin,
		BackoffMax:  *backoffMax,
		MaxAttempts: *maxAttempts,
	})
	if err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch cmd {
	case "fetch":
		err = a.Fetch(ctx)
	case "push":
		pctx, cancel := context.WithTimeout(ctx, *timeout)
		err = a.Push(pctx)
		cancel()
	case "run":
		err = a.Run(ctx, *finalTimeout)
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "relay-agent: %v\n", err)
	os.Exit(1)
}
