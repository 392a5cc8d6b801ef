package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/structpb"
)

const testURN = "urn:pulumi:dev::proj::command:local:Command::cmd"

// recorder collects the output lines (ephemeral info) and warnings a
// provider logs.
type recorder struct {
	mu       sync.Mutex
	lines    []string
	warnings []string
}

func (r *recorder) log(_ context.Context, urn string, sev pulumirpc.LogSeverity, msg string, ephemeral bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if sev == pulumirpc.LogSeverity_INFO && ephemeral {
		r.lines = append(r.lines, msg)
	} else {
		r.warnings = append(r.warnings, msg)
	}
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string{}, r.lines...)
}

func mustMarshal(t *testing.T, m resource.PropertyMap) *structpb.Struct {
	t.Helper()
	s, err := marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustUnmarshal(t *testing.T, s *structpb.Struct) resource.PropertyMap {
	t.Helper()
	m, err := unmarshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func secretStr(s string) resource.PropertyValue {
	return resource.MakeSecret(resource.NewStringProperty(s))
}

func create(t *testing.T, p *commandProvider, in resource.PropertyMap, preview bool) (string, resource.PropertyMap, error) {
	t.Helper()
	resp, err := p.Create(context.Background(), &pulumirpc.CreateRequest{
		Urn: testURN, Properties: mustMarshal(t, in), Preview: preview,
	})
	if err != nil {
		return "", nil, err
	}
	return resp.Id, mustUnmarshal(t, resp.Properties), nil
}

func update(t *testing.T, p *commandProvider, state, olds, news resource.PropertyMap, preview bool) (resource.PropertyMap, error) {
	t.Helper()
	resp, err := p.Update(context.Background(), &pulumirpc.UpdateRequest{
		Urn: testURN, Id: "cmd1234", Olds: mustMarshal(t, state), OldInputs: mustMarshal(t, olds),
		News: mustMarshal(t, news), Preview: preview,
	})
	if err != nil {
		return nil, err
	}
	return mustUnmarshal(t, resp.Properties), nil
}

func TestCreateRunsCreate(t *testing.T) {
	rec := &recorder{}
	p := newProvider("1.2.1", rec.log)
	id, outs, err := create(t, p, props(map[string]any{
		"create":      "echo out; echo err >&2; printf 'x\\n\\n'",
		"environment": map[string]any{"GREETING": "hi"},
	}), false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(id, "cmd") || len(id) != len("cmd")+8 {
		t.Fatalf("id %q should be the name plus 8 hex characters", id)
	}
	if got := outs["stdout"].StringValue(); got != "out\nx\n" {
		t.Fatalf("stdout %q (only one trailing newline is trimmed)", got)
	}
	if got := outs["stderr"].StringValue(); got != "err" {
		t.Fatalf("stderr %q", got)
	}
	if outs["create"].StringValue() == "" || !outs["environment"].IsObject() {
		t.Fatalf("inputs must be echoed in outputs: %v", outs)
	}
	if got := rec.all(); !contains(got, "out") || !contains(got, "err") || !contains(got, "x") {
		t.Fatalf("logged lines %q", got)
	}
}

func TestCreateWithoutCreateCommand(t *testing.T) {
	p := newProvider("1.2.1", nil)
	_, outs, err := create(t, p, props(map[string]any{"delete": "echo bye"}), false)
	if err != nil {
		t.Fatal(err)
	}
	if outs["stdout"].StringValue() != "" || outs["stderr"].StringValue() != "" || outs["delete"].StringValue() != "echo bye" {
		t.Fatalf("outs %v", outs)
	}
}

func TestCreatePreviewRunsNothing(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	p := newProvider("1.2.1", nil)
	in := resource.PropertyMap{
		"create":      resource.NewStringProperty("touch " + marker),
		"dir":         resource.MakeComputed(resource.NewStringProperty("")),
		"environment": resource.NewObjectProperty(resource.PropertyMap{"K": resource.MakeComputed(resource.NewStringProperty(""))}),
		"assetPaths":  resource.NewArrayProperty([]resource.PropertyValue{resource.NewStringProperty("*")}),
	}
	_, outs, err := create(t, p, in, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("preview ran the command")
	}
	for _, k := range []resource.PropertyKey{"stdout", "stderr", "dir", "assets"} {
		if !outs[k].IsComputed() {
			t.Fatalf("%s should be unknown in preview: %v", k, outs[k])
		}
	}
	if !outs["environment"].ObjectValue()["K"].IsComputed() {
		t.Fatal("unknown environment value must stay unknown")
	}
	if outs["create"].StringValue() != "touch "+marker {
		t.Fatal("known inputs must be passed through")
	}
}

func TestUpdateRunsUpdateOrCreate(t *testing.T) {
	p := newProvider("1.2.1", nil)
	state := props(map[string]any{"create": "echo c", "stdout": "old-out", "stderr": "old-err"})
	olds := props(map[string]any{"create": "echo c"})

	// No update command: create runs again, with the previous outputs in env.
	outs, err := update(t, p, state, olds, props(map[string]any{
		"create": `echo "c2 $PULUMI_COMMAND_STDOUT $PULUMI_COMMAND_STDERR"`,
	}), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := outs["stdout"].StringValue(); got != "c2 old-out old-err" {
		t.Fatalf("stdout %q", got)
	}

	// With an update command, it runs instead of create.
	outs, err = update(t, p, state, olds, props(map[string]any{
		"create": "echo c", "update": `echo "u $PULUMI_COMMAND_STDOUT"`,
	}), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := outs["stdout"].StringValue(); got != "u old-out" {
		t.Fatalf("stdout %q", got)
	}

	// addPreviousOutputInEnv=false hides the previous outputs.
	outs, err = update(t, p, state, olds, props(map[string]any{
		"create": `echo "[${PULUMI_COMMAND_STDOUT-unset}]"`, "addPreviousOutputInEnv": false,
	}), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := outs["stdout"].StringValue(); got != "[unset]" {
		t.Fatalf("stdout %q", got)
	}

	// Neither command: nothing runs, previous outputs are kept.
	outs, err = update(t, p, state, olds, props(map[string]any{"delete": "true"}), false)
	if err != nil {
		t.Fatal(err)
	}
	if outs["stdout"].StringValue() != "old-out" || outs["stderr"].StringValue() != "old-err" {
		t.Fatalf("outs %v", outs)
	}
}

func TestUpdatePreview(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	p := newProvider("1.2.1", nil)
	state := props(map[string]any{"create": "echo c", "stdout": "old", "stderr": ""})
	outs, err := update(t, p, state, props(map[string]any{"create": "echo c"}),
		props(map[string]any{"create": "touch " + marker}), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("preview ran the command")
	}
	if !outs["stdout"].IsComputed() || !outs["stderr"].IsComputed() {
		t.Fatalf("stdout/stderr should be unknown: %v", outs)
	}
}

func TestFailureReportsExitCodeAndOutput(t *testing.T) {
	p := newProvider("1.2.1", nil)
	_, _, err := create(t, p, props(map[string]any{"create": "echo doing; echo broken >&2; exit 3"}), false)
	if err == nil {
		t.Fatal("expected failure")
	}
	for _, want := range []string{"exit status 3", `"echo doing; echo broken >&2; exit 3"`, "broken", "doing"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q lacks %q", err, want)
		}
	}
}

func TestDeleteRunsDeleteWithPreviousOutput(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "deleted")
	p := newProvider("1.2.1", nil)
	state := props(map[string]any{
		"create": "echo c", "delete": `echo "$PULUMI_COMMAND_STDOUT/$GREETING" > ` + out,
		"environment": map[string]any{"GREETING": "bye"}, "stdout": "prev", "stderr": "",
	})
	if _, err := p.Delete(context.Background(), &pulumirpc.DeleteRequest{
		Urn: testURN, Id: "cmd1", Properties: mustMarshal(t, state),
	}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "prev/bye\n" {
		t.Fatalf("delete saw %q", b)
	}
	// No delete command: nothing to do.
	if _, err := p.Delete(context.Background(), &pulumirpc.DeleteRequest{
		Urn: testURN, Id: "cmd1", Properties: mustMarshal(t, props(map[string]any{"create": "false"})),
	}); err != nil {
		t.Fatal(err)
	}
}

func TestReadReturnsStateUnchanged(t *testing.T) {
	p := newProvider("1.2.1", nil)
	state := mustMarshal(t, props(map[string]any{"create": "x", "stdout": "o", "stderr": ""}))
	ins := mustMarshal(t, props(map[string]any{"create": "x"}))
	resp, err := p.Read(context.Background(), &pulumirpc.ReadRequest{Urn: testURN, Id: "i", Properties: state, Inputs: ins})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Id != "i" || resp.Properties != state || resp.Inputs != ins {
		t.Fatalf("read changed something: %v", resp)
	}
}

func TestCheck(t *testing.T) {
	p := newProvider("1.2.1", nil)
	check := func(in resource.PropertyMap) *pulumirpc.CheckResponse {
		resp, err := p.Check(context.Background(), &pulumirpc.CheckRequest{Urn: testURN, News: mustMarshal(t, in)})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	ok := check(resource.PropertyMap{
		"create":      resource.NewStringProperty("x"),
		"triggers":    resource.NewArrayProperty([]resource.PropertyValue{resource.NewNumberProperty(1), resource.NewBoolProperty(true)}),
		"environment": resource.NewObjectProperty(resource.PropertyMap{"A": secretStr("s"), "B": resource.MakeComputed(resource.NewStringProperty(""))}),
		"logging":     resource.NewStringProperty("none"),
		"__defaults":  resource.NewArrayProperty(nil),
	})
	if len(ok.Failures) != 0 {
		t.Fatalf("unexpected failures %v", ok.Failures)
	}
	got := mustUnmarshal(t, ok.Inputs)
	if _, has := got["__defaults"]; has {
		t.Fatal("internal keys should be dropped")
	}
	env := got["environment"].ObjectValue()
	if !env["A"].IsSecret() || !env["B"].IsComputed() {
		t.Fatalf("check must keep secrets and unknowns: %v", env)
	}

	bad := check(props(map[string]any{"create": 5.0, "logging": "loud", "interpreter": []any{"sh", 1.0}, "bogus": "x"}))
	failed := map[string]bool{}
	for _, f := range bad.Failures {
		failed[f.Property] = true
	}
	for _, k := range []string{"create", "logging", "interpreter", "bogus"} {
		if !failed[k] {
			t.Fatalf("expected a failure for %s, got %v", k, bad.Failures)
		}
	}
}

func TestLoggingSelection(t *testing.T) {
	for _, c := range []struct {
		logging string
		want    []string
	}{
		{"stdout", []string{"O"}},
		{"stderr", []string{"E"}},
		{"stdoutAndStderr", []string{"O", "E"}},
		{"none", nil},
	} {
		rec := &recorder{}
		p := newProvider("1.2.1", rec.log)
		_, outs, err := create(t, p, props(map[string]any{"create": "echo O; echo E >&2", "logging": c.logging}), false)
		if err != nil {
			t.Fatal(err)
		}
		if outs["stdout"].StringValue() != "O" || outs["stderr"].StringValue() != "E" {
			t.Fatalf("logging must not affect capture: %v", outs)
		}
		got := rec.all()
		if len(got) != len(c.want) {
			t.Fatalf("logging=%s logged %q, want %q", c.logging, got, c.want)
		}
		for _, w := range c.want {
			if !contains(got, w) {
				t.Fatalf("logging=%s logged %q, want %q", c.logging, got, c.want)
			}
		}
	}
}

func TestAssetsAndArchive(t *testing.T) {
	dir := t.TempDir()
	p := newProvider("1.2.1", nil)
	_, outs, err := create(t, p, props(map[string]any{
		"dir":          dir,
		"create":       "mkdir -p src/sub && echo a > src/a.js && echo b > src/sub/b.js && echo s > src/secret.js && echo t > top.txt",
		"assetPaths":   []any{"src/**.js", "!**secret.*"},
		"archivePaths": []any{"*.txt"},
	}), false)
	if err != nil {
		t.Fatal(err)
	}
	assets := outs["assets"].ObjectValue()
	if len(assets) != 2 || !assets["src/a.js"].IsAsset() || !assets["src/sub/b.js"].IsAsset() {
		t.Fatalf("assets %v", assets)
	}
	if !outs["archive"].IsArchive() {
		t.Fatalf("archive %v", outs["archive"])
	}
	if names := outs["archive"].ArchiveValue().Assets; len(names) != 1 || names["top.txt"] == nil {
		t.Fatalf("archive contents %v", names)
	}
}

func TestRunInvoke(t *testing.T) {
	p := newProvider("1.2.1", nil)
	resp, err := p.Invoke(context.Background(), &pulumirpc.InvokeRequest{
		Tok: runToken, Args: mustMarshal(t, props(map[string]any{"command": "cat", "stdin": "piped\n"})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ret := mustUnmarshal(t, resp.Return)
	if ret["stdout"].StringValue() != "piped" || ret["command"].StringValue() != "cat" {
		t.Fatalf("ret %v", ret)
	}
	resp, err = p.Invoke(context.Background(), &pulumirpc.InvokeRequest{Tok: runToken, Args: mustMarshal(t, resource.PropertyMap{})})
	if err != nil || len(resp.Failures) != 1 || resp.Failures[0].Property != "command" {
		t.Fatalf("missing command should fail check: %v %v", resp, err)
	}
}
