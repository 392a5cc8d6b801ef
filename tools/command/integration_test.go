package main

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
)

// fakeEngine records the log messages a plugin sends to the engine.
type fakeEngine struct {
	pulumirpc.UnimplementedEngineServer
	mu   sync.Mutex
	logs []*pulumirpc.LogRequest
}

func (e *fakeEngine) Log(_ context.Context, req *pulumirpc.LogRequest) (*emptypb.Empty, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.logs = append(e.logs, req)
	return &emptypb.Empty{}, nil
}

func (e *fakeEngine) messages(urn string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, l := range e.logs {
		if l.Urn == urn {
			out = append(out, l.Message)
		}
	}
	return out
}

// pluginBinary returns the plugin to test: $PULUMI_RESOURCE_COMMAND_BIN, or
// a fresh build of this package.
func pluginBinary(t *testing.T) string {
	if bin := os.Getenv("PULUMI_RESOURCE_COMMAND_BIN"); bin != "" {
		return bin
	}
	if testing.Short() {
		t.Skip("builds the plugin; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "pulumi-resource-command")
	out, err := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version=1.2.1", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("building plugin: %v\n%s", err, out)
	}
	return bin
}

// TestPluginOverGRPC starts the real binary the way the engine does (engine
// address as argument, port read from stdout) and drives a full lifecycle.
func TestPluginOverGRPC(t *testing.T) {
	bin := pluginBinary(t)

	engine := &fakeEngine{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pulumirpc.RegisterEngineServer(srv, engine)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	cmd := exec.Command(bin, "-v=9", "--logtostderr", "--tracing", "", lis.Addr().String())
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }()

	port, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("reading port: %v", err)
	}
	// Dial the way the engine does (its 400 MB message limit included).
	conn, err := grpc.NewClient("127.0.0.1:"+strings.TrimSpace(port),
		grpc.WithTransportCredentials(insecure.NewCredentials()), rpcutil.GrpcChannelOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pulumirpc.NewResourceProviderClient(conn)
	ctx := context.Background()

	info, err := client.GetPluginInfo(ctx, &emptypb.Empty{})
	if err != nil || info.Version != "1.2.1" {
		t.Fatalf("plugin info %v %v", info, err)
	}
	schema, err := client.GetSchema(ctx, &pulumirpc.GetSchemaRequest{})
	if err != nil || !strings.Contains(schema.Schema, `"name":"command"`) || !strings.Contains(schema.Schema, commandToken) {
		t.Fatalf("schema %v %v", schema, err)
	}
	if _, err := client.CheckConfig(ctx, &pulumirpc.CheckRequest{Urn: "urn:pulumi:dev::p::pulumi:providers:command::default", News: mustMarshal(t, resource.PropertyMap{})}); err != nil {
		t.Fatal(err)
	}
	cfg, err := client.Configure(ctx, &pulumirpc.ConfigureRequest{Args: mustMarshal(t, resource.PropertyMap{})})
	if err != nil || !cfg.AcceptSecrets || !cfg.SupportsPreview {
		t.Fatalf("configure %v %v", cfg, err)
	}

	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	inputs := resource.PropertyMap{
		"create":      resource.NewStringProperty(`echo "create $TOKEN" | tee -a ` + log),
		"update":      resource.NewStringProperty(`echo "update prev=$PULUMI_COMMAND_STDOUT" | tee -a ` + log),
		"delete":      resource.NewStringProperty(`echo "delete prev=$PULUMI_COMMAND_STDOUT" >> ` + log),
		"environment": resource.NewObjectProperty(resource.PropertyMap{"TOKEN": secretStr("tok")}),
		"triggers":    resource.NewArrayProperty([]resource.PropertyValue{resource.NewStringProperty("v1")}),
	}

	chk, err := client.Check(ctx, &pulumirpc.CheckRequest{Urn: testURN, News: mustMarshal(t, inputs)})
	if err != nil || len(chk.Failures) > 0 {
		t.Fatalf("check %v %v", chk, err)
	}
	checked := mustUnmarshal(t, chk.Inputs)

	// Preview create: nothing runs, outputs unknown.
	pc, err := client.Create(ctx, &pulumirpc.CreateRequest{Urn: testURN, Properties: chk.Inputs, Preview: true})
	if err != nil {
		t.Fatal(err)
	}
	if p := mustUnmarshal(t, pc.Properties); !p["stdout"].IsComputed() {
		t.Fatalf("preview stdout %v", p["stdout"])
	}
	if _, err := os.Stat(log); err == nil {
		t.Fatal("preview ran a command")
	}

	cr, err := client.Create(ctx, &pulumirpc.CreateRequest{Urn: testURN, Properties: chk.Inputs})
	if err != nil {
		t.Fatal(err)
	}
	state := mustUnmarshal(t, cr.Properties)
	if state["stdout"].StringValue() != "create tok" || !state["environment"].ObjectValue()["TOKEN"].IsSecret() {
		t.Fatalf("state %v", state)
	}
	if msgs := engine.messages(testURN); !contains(msgs, "create tok") {
		t.Fatalf("engine log %q", msgs)
	}

	// No change: no diff.
	diff := func(news resource.PropertyMap) *pulumirpc.DiffResponse {
		d, err := client.Diff(ctx, &pulumirpc.DiffRequest{Urn: testURN, Id: cr.Id, Olds: cr.Properties,
			OldInputs: mustMarshal(t, checked), News: mustMarshal(t, news)})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := diff(checked); d.Changes != pulumirpc.DiffResponse_DIFF_NONE {
		t.Fatalf("no-op diff %v", d)
	}
	changed := checked.Copy()
	changed["environment"] = resource.NewObjectProperty(resource.PropertyMap{"TOKEN": secretStr("tok2")})
	d := diff(changed)
	if d.Changes != pulumirpc.DiffResponse_DIFF_SOME || len(d.Replaces) != 0 || d.DetailedDiff["environment.TOKEN"] == nil {
		t.Fatalf("env diff %v", d)
	}
	retrigger := checked.Copy()
	retrigger["triggers"] = resource.NewArrayProperty([]resource.PropertyValue{resource.NewStringProperty("v2")})
	if d := diff(retrigger); len(d.Replaces) != 1 || d.Replaces[0] != "triggers" {
		t.Fatalf("trigger diff %v", d)
	}

	ur, err := client.Update(ctx, &pulumirpc.UpdateRequest{Urn: testURN, Id: cr.Id, Olds: cr.Properties,
		OldInputs: mustMarshal(t, checked), News: mustMarshal(t, changed)})
	if err != nil {
		t.Fatal(err)
	}
	state = mustUnmarshal(t, ur.Properties)
	if state["stdout"].StringValue() != "update prev=create tok" {
		t.Fatalf("update stdout %q", state["stdout"].StringValue())
	}

	if _, err := client.Delete(ctx, &pulumirpc.DeleteRequest{Urn: testURN, Id: cr.Id, Properties: ur.Properties}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(log)
	if want := "create tok\nupdate prev=create tok\ndelete prev=update prev=create tok\n"; string(b) != want {
		t.Fatalf("commands ran as\n%s\nwant\n%s", b, want)
	}

	// A failing command fails the step with its exit code and output.
	_, err = client.Create(ctx, &pulumirpc.CreateRequest{Urn: testURN,
		Properties: mustMarshal(t, props(map[string]any{"create": "echo nope >&2; exit 7"}))})
	if err == nil || !strings.Contains(err.Error(), "exit status 7") || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("failing create: %v", err)
	}

	// Large outputs (an SBOM, say) go through both ways: out as state, back
	// in as the old state of an update. Too large for an environment variable,
	// the previous stdout is left out of the update's environment, with a
	// warning, instead of failing exec with E2BIG.
	big := props(map[string]any{"create": "head -c 12000000 /dev/zero | tr '\\0' a",
		"update": "echo ${#PULUMI_COMMAND_STDOUT}", "logging": "none"})
	bc, err := client.Create(ctx, &pulumirpc.CreateRequest{Urn: testURN, Properties: mustMarshal(t, big)})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(mustUnmarshal(t, bc.Properties)["stdout"].StringValue()); got != 12000000 {
		t.Fatalf("big stdout has %d bytes", got)
	}
	bigNews := big.Copy()
	bigNews["stdin"] = resource.NewStringProperty("changed")
	bu, err := client.Update(ctx, &pulumirpc.UpdateRequest{Urn: testURN, Id: bc.Id, Olds: bc.Properties,
		OldInputs: mustMarshal(t, big), News: mustMarshal(t, bigNews)})
	if err != nil {
		t.Fatal(err)
	}
	if got := mustUnmarshal(t, bu.Properties)["stdout"].StringValue(); got != "0" {
		t.Fatalf("update saw PULUMI_COMMAND_STDOUT of length %q", got)
	}
	if warned := engine.messages(testURN); !strings.Contains(strings.Join(warned, "\n"), "PULUMI_COMMAND_STDOUT is not set") {
		t.Fatalf("no warning about the oversized previous output: %q", warned)
	}

	// Cancel kills a running command.
	done := make(chan error, 1)
	go func() {
		_, err := client.Create(ctx, &pulumirpc.CreateRequest{Urn: testURN,
			Properties: mustMarshal(t, props(map[string]any{"create": "sleep 300"}))})
		done <- err
	}()
	time.Sleep(500 * time.Millisecond)
	if _, err := client.Cancel(ctx, &emptypb.Empty{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "cancelled") {
			t.Fatalf("cancelled create: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Cancel did not stop the running command")
	}

	// The engine stops plugins with SIGINT.
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("plugin did not exit on SIGINT")
	}
}
