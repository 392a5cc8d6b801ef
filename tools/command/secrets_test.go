package main

import (
	"context"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// Secret inputs stay secret in the outputs, exactly where they were. Like the
// upstream provider (pulumi-go-provider's default secret flow), stdout and
// stderr are NOT made secret automatically; use additionalSecretOutputs.
func TestSecretInputsStaySecret(t *testing.T) {
	p := newProvider("1.2.1", nil)
	in := resource.PropertyMap{
		"create": resource.NewStringProperty(`printf %s "$TOKEN" | wc -c`),
		"environment": resource.NewObjectProperty(resource.PropertyMap{
			"TOKEN": secretStr("hunter2"),
			"PLAIN": resource.NewStringProperty("visible"),
		}),
		"stdin": secretStr("secret stdin"),
	}
	_, outs, err := create(t, p, in, false)
	if err != nil {
		t.Fatal(err)
	}
	env := outs["environment"].ObjectValue()
	if !env["TOKEN"].IsSecret() || env["TOKEN"].SecretValue().Element.StringValue() != "hunter2" {
		t.Fatalf("environment.TOKEN must remain a secret: %v", env["TOKEN"])
	}
	if env["PLAIN"].IsSecret() {
		t.Fatal("environment.PLAIN must not become secret")
	}
	if !outs["stdin"].IsSecret() {
		t.Fatal("stdin must remain a secret")
	}
	if outs["create"].IsSecret() {
		t.Fatal("a public input must stay public")
	}
	if outs["stdout"].IsSecret() || outs["stderr"].IsSecret() {
		t.Fatal("stdout/stderr follow upstream: not secret by default")
	}
	if strings.TrimSpace(outs["stdout"].StringValue()) != "7" {
		t.Fatalf("the command must see the secret's value: %q", outs["stdout"].StringValue())
	}

	// Whole-map secret also survives.
	in["environment"] = resource.MakeSecret(resource.NewObjectProperty(resource.PropertyMap{"TOKEN": resource.NewStringProperty("hunter2")}))
	_, outs, err = create(t, p, in, false)
	if err != nil {
		t.Fatal(err)
	}
	if !outs["environment"].IsSecret() {
		t.Fatal("a secret environment map must stay secret")
	}
}

func TestSecretsSurviveUpdateAndPreview(t *testing.T) {
	p := newProvider("1.2.1", nil)
	news := resource.PropertyMap{
		"create":   secretStr("echo $A"),
		"triggers": resource.NewArrayProperty([]resource.PropertyValue{secretStr("t")}),
		"environment": resource.NewObjectProperty(resource.PropertyMap{
			"A": secretStr("x"),
		}),
	}
	state := news.Copy()
	state["stdout"] = resource.NewStringProperty("old")
	state["stderr"] = resource.NewStringProperty("")
	olds := resource.PropertyMap{"create": secretStr("echo old")}
	for _, preview := range []bool{true, false} {
		outs, err := update(t, p, state, olds, news, preview)
		if err != nil {
			t.Fatal(err)
		}
		if !outs["create"].IsSecret() || !outs["environment"].ObjectValue()["A"].IsSecret() ||
			!outs["triggers"].ArrayValue()[0].IsSecret() {
			t.Fatalf("preview=%v: secrets lost: %v", preview, outs)
		}
		if !preview && outs["stdout"].StringValue() != "x" {
			t.Fatalf("stdout %v", outs["stdout"])
		}
	}
}

// A failing secret command is not echoed in the error.
func TestSecretCommandNotInError(t *testing.T) {
	p := newProvider("1.2.1", nil)
	_, _, err := create(t, p, resource.PropertyMap{"create": secretStr("exit 4 # hunter2")}, false)
	if err == nil {
		t.Fatal("expected failure")
	}
	if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "exit status 4") {
		t.Fatalf("error %q", err)
	}
}

// Secret environment values never reach the engine log unless the command
// itself prints them.
func TestSecretEnvNotLogged(t *testing.T) {
	rec := &recorder{}
	p := newProvider("1.2.1", rec.log)
	_, _, err := create(t, p, resource.PropertyMap{
		"create":      resource.NewStringProperty("echo working"),
		"environment": resource.NewObjectProperty(resource.PropertyMap{"TOKEN": secretStr("hunter2")}),
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range rec.all() {
		if strings.Contains(l, "hunter2") {
			t.Fatalf("secret logged: %q", l)
		}
	}
	resp, err := p.Check(context.Background(), &pulumirpc.CheckRequest{Urn: testURN, News: mustMarshal(t, resource.PropertyMap{
		"environment": resource.NewObjectProperty(resource.PropertyMap{"TOKEN": secretStr("hunter2")}),
	})})
	if err != nil || len(resp.Failures) != 0 {
		t.Fatal(err, resp.GetFailures())
	}
}
