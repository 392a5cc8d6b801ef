package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// engineClient forwards log lines to the engine that started the plugin.
type engineClient struct {
	mu     sync.Mutex
	conn   *grpc.ClientConn
	client pulumirpc.EngineClient
}

func (e *engineClient) connect(addr string) error {
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		rpcutil.GrpcChannelOptions())
	if err != nil {
		return fmt.Errorf("connecting to the engine at %s: %w", addr, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn != nil {
		_ = e.conn.Close()
	}
	e.conn, e.client = conn, pulumirpc.NewEngineClient(conn)
	return nil
}

// log sends a message to the engine; ephemeral ones show in the progress
// display's Info column while the resource is being worked on.
func (e *engineClient) log(ctx context.Context, urn string, sev pulumirpc.LogSeverity, msg string, ephemeral bool) {
	e.mu.Lock()
	client := e.client
	e.mu.Unlock()
	if client == nil {
		return
	}
	_, _ = client.Log(ctx, &pulumirpc.LogRequest{
		Severity:  sev,
		Message:   strings.ToValidUTF8(msg, "\uFFFD"),
		Urn:       urn,
		Ephemeral: ephemeral,
	})
}

// engineAddress picks the engine address out of the plugin's arguments. The
// engine may put logging and tracing flags first (-v=N, --logtostderr,
// --logflow, --tracing ENDPOINT); none of them matter here.
func engineAddress(args []string) (string, error) {
	var positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--tracing" || a == "-tracing":
			i++ // skip the endpoint
		case strings.HasPrefix(a, "-"):
		default:
			positional = append(positional, a)
		}
	}
	switch len(positional) {
	case 0:
		return "", nil // attach mode: the engine will call Attach
	case 1:
		return positional[0], nil
	default:
		return "", fmt.Errorf("unexpected arguments %q", positional)
	}
}

// serve runs the provider's gRPC server, printing the chosen port on stdout
// as the plugin protocol requires, until the engine goes away or signals us.
func serve(args []string) error {
	addr, err := engineAddress(args)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	engine := &engineClient{}
	if addr != "" {
		if err := engine.connect(addr); err != nil {
			return err
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		if err := rpcutil.Healthcheck(ctx, addr, 5*time.Minute, cancel); err != nil {
			return fmt.Errorf("starting the engine health check: %w", err)
		}
	}

	prov := newProvider(version, engine.log)
	prov.attach = engine.connect

	stopServer := make(chan bool)
	go func() {
		<-ctx.Done()
		// Kill running commands first so in-flight requests can finish.
		prov.cancelAll()
		close(stopServer)
	}()

	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: stopServer,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterResourceProviderServer(srv, prov)
			return nil
		},
	})
	if err != nil {
		return err
	}
	fmt.Printf("%d\n", handle.Port)
	return <-handle.Done
}
