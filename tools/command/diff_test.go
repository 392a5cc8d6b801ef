package main

import (
	"reflect"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

func props(m map[string]any) resource.PropertyMap { return resource.NewPropertyMapFromMap(m) }

func TestDiffNoChange(t *testing.T) {
	olds := props(map[string]any{"create": "echo hi", "environment": map[string]any{"A": "1"}, "triggers": []any{"x", 1}})
	d, err := diffInputs(olds, olds, olds.Copy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp := d.rpc()
	if resp.Changes != pulumirpc.DiffResponse_DIFF_NONE || len(resp.DetailedDiff) != 0 || len(resp.Replaces) != 0 {
		t.Fatalf("expected no diff, got %v", resp)
	}
}

func TestDiffInPlaceUpdates(t *testing.T) {
	base := map[string]any{
		"create": "echo a", "update": "echo u", "delete": "echo d", "dir": "/tmp",
		"environment": map[string]any{"A": "1"}, "interpreter": []any{"/bin/sh", "-c"},
		"stdin": "in", "logging": "none", "addPreviousOutputInEnv": true,
	}
	cases := []struct {
		name   string
		change func(m map[string]any)
		path   string
		kind   pulumirpc.PropertyDiff_Kind
	}{
		{"create", func(m map[string]any) { m["create"] = "echo b" }, "create", pulumirpc.PropertyDiff_UPDATE},
		{"update", func(m map[string]any) { m["update"] = "echo v" }, "update", pulumirpc.PropertyDiff_UPDATE},
		{"delete removed", func(m map[string]any) { delete(m, "delete") }, "delete", pulumirpc.PropertyDiff_DELETE},
		{"dir", func(m map[string]any) { m["dir"] = "/var" }, "dir", pulumirpc.PropertyDiff_UPDATE},
		{"env value", func(m map[string]any) { m["environment"] = map[string]any{"A": "2"} }, "environment.A", pulumirpc.PropertyDiff_UPDATE},
		{"env added", func(m map[string]any) { m["environment"] = map[string]any{"A": "1", "B": "x"} }, "environment.B", pulumirpc.PropertyDiff_ADD},
		{"interpreter", func(m map[string]any) { m["interpreter"] = []any{"/bin/bash", "-c"} }, "interpreter[0]", pulumirpc.PropertyDiff_UPDATE},
		{"stdin", func(m map[string]any) { m["stdin"] = "other" }, "stdin", pulumirpc.PropertyDiff_UPDATE},
		{"logging", func(m map[string]any) { m["logging"] = "stdout" }, "logging", pulumirpc.PropertyDiff_UPDATE},
		{"addPrevious", func(m map[string]any) { m["addPreviousOutputInEnv"] = false }, "addPreviousOutputInEnv", pulumirpc.PropertyDiff_UPDATE},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			olds := props(base)
			nm := props(base).Mappable()
			c.change(nm)
			d, err := diffInputs(olds, olds, props(nm), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp := d.rpc()
			if resp.Changes != pulumirpc.DiffResponse_DIFF_SOME {
				t.Fatalf("expected changes")
			}
			if len(resp.Replaces) != 0 {
				t.Fatalf("expected in-place update, got replaces %v", resp.Replaces)
			}
			if len(resp.DetailedDiff) != 1 || resp.DetailedDiff[c.path] == nil || resp.DetailedDiff[c.path].Kind != c.kind {
				t.Fatalf("detailed diff = %v, want %s:%s", resp.DetailedDiff, c.path, c.kind)
			}
			if want := []string{topLevel(c.path)}; !reflect.DeepEqual(resp.Diffs, want) {
				t.Fatalf("diffs = %v, want %v", resp.Diffs, want)
			}
			if !resp.HasDetailedDiff {
				t.Fatal("HasDetailedDiff should be set")
			}
		})
	}
}

func TestDiffTriggersReplace(t *testing.T) {
	olds := props(map[string]any{"create": "x", "triggers": []any{"a", 1.0}})
	cases := []struct {
		name string
		news resource.PropertyMap
		path string
		kind pulumirpc.PropertyDiff_Kind
	}{
		{"element changed", props(map[string]any{"create": "x", "triggers": []any{"a", 2.0}}), "triggers[1]", pulumirpc.PropertyDiff_UPDATE_REPLACE},
		{"element added", props(map[string]any{"create": "x", "triggers": []any{"a", 1.0, "b"}}), "triggers[2]", pulumirpc.PropertyDiff_ADD_REPLACE},
		{"removed", props(map[string]any{"create": "x"}), "triggers", pulumirpc.PropertyDiff_DELETE_REPLACE},
		{"unknown", resource.PropertyMap{"create": resource.NewStringProperty("x"),
			"triggers": resource.MakeComputed(resource.NewStringProperty(""))}, "triggers", pulumirpc.PropertyDiff_UPDATE_REPLACE},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := diffInputs(olds, olds, c.news, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp := d.rpc()
			if !reflect.DeepEqual(resp.Replaces, []string{"triggers"}) {
				t.Fatalf("replaces = %v", resp.Replaces)
			}
			if pd := resp.DetailedDiff[c.path]; pd == nil || pd.Kind != c.kind {
				t.Fatalf("detailed diff = %v, want %s:%s", resp.DetailedDiff, c.path, c.kind)
			}
		})
	}

	// Triggers appearing where there were none also replace.
	d, _ := diffInputs(props(map[string]any{"create": "x"}), nil, olds, nil)
	if resp := d.rpc(); !reflect.DeepEqual(resp.Replaces, []string{"triggers"}) ||
		resp.DetailedDiff["triggers"].GetKind() != pulumirpc.PropertyDiff_ADD_REPLACE {
		t.Fatalf("adding triggers: %v", resp)
	}
}

func TestDiffTriggerAndUpdateTogether(t *testing.T) {
	olds := props(map[string]any{"create": "x", "triggers": []any{"a"}})
	news := props(map[string]any{"create": "y", "triggers": []any{"b"}})
	d, _ := diffInputs(olds, olds, news, nil)
	resp := d.rpc()
	if !reflect.DeepEqual(resp.Replaces, []string{"triggers"}) || !reflect.DeepEqual(resp.Diffs, []string{"create", "triggers"}) {
		t.Fatalf("got replaces %v diffs %v", resp.Replaces, resp.Diffs)
	}
	if resp.DetailedDiff["create"].GetKind() != pulumirpc.PropertyDiff_UPDATE {
		t.Fatalf("create should update in place: %v", resp.DetailedDiff)
	}
}

func TestDiffUnknownInputIsUpdate(t *testing.T) {
	olds := props(map[string]any{"create": "x"})
	news := resource.PropertyMap{"create": resource.MakeComputed(resource.NewStringProperty(""))}
	d, _ := diffInputs(olds, olds, news, nil)
	resp := d.rpc()
	if resp.Changes != pulumirpc.DiffResponse_DIFF_SOME || len(resp.Replaces) != 0 ||
		resp.DetailedDiff["create"].GetKind() != pulumirpc.PropertyDiff_UPDATE {
		t.Fatalf("got %v", resp)
	}
}

func TestDiffIgnoresInternalKeysAndHonoursIgnoreChanges(t *testing.T) {
	olds := props(map[string]any{"create": "x", "environment": map[string]any{"A": "1"}})
	state := props(map[string]any{"create": "x", "environment": map[string]any{"A": "1"}, "stdout": "out"})
	news := props(map[string]any{"create": "x", "environment": map[string]any{"A": "2"}, "__defaults": []any{}, "version": "1.2.1"})
	d, _ := diffInputs(olds, state, news, []string{"environment.A"})
	if resp := d.rpc(); resp.Changes != pulumirpc.DiffResponse_DIFF_NONE {
		t.Fatalf("expected no diff, got %v", resp)
	}
	d, _ = diffInputs(olds, state, news, nil)
	if resp := d.rpc(); resp.DetailedDiff["environment.A"] == nil || len(resp.DetailedDiff) != 1 {
		t.Fatalf("expected only environment.A, got %v", resp.DetailedDiff)
	}
}

func TestDiffSecretness(t *testing.T) {
	plain := props(map[string]any{"environment": map[string]any{"TOKEN": "s3cr3t"}})
	secret := resource.PropertyMap{"environment": resource.NewObjectProperty(resource.PropertyMap{
		"TOKEN": resource.MakeSecret(resource.NewStringProperty("s3cr3t")),
	})}
	// Same secret value: no change.
	d, _ := diffInputs(secret, secret, secret.Copy(), nil)
	if d.Changes {
		t.Fatal("an unchanged secret must not diff")
	}
	// Changed secret value: in-place update of that key.
	changed := resource.PropertyMap{"environment": resource.NewObjectProperty(resource.PropertyMap{
		"TOKEN": resource.MakeSecret(resource.NewStringProperty("other")),
	})}
	d, _ = diffInputs(secret, secret, changed, nil)
	if resp := d.rpc(); resp.DetailedDiff["environment.TOKEN"].GetKind() != pulumirpc.PropertyDiff_UPDATE {
		t.Fatalf("got %v", resp.DetailedDiff)
	}
	// A value becoming secret counts as a change (as in the upstream provider).
	d, _ = diffInputs(plain, plain, secret, nil)
	if !d.Changes {
		t.Fatal("becoming secret should be a change")
	}
}

func TestChangedSince(t *testing.T) {
	state := props(map[string]any{"create": "x", "stdout": "o", "stderr": ""})
	if changedSince(state, props(map[string]any{"create": "x"})) {
		t.Fatal("identical inputs reported as changed")
	}
	if !changedSince(state, props(map[string]any{"create": "y"})) {
		t.Fatal("changed create not detected")
	}
	if !changedSince(state, props(map[string]any{"create": "x", "update": "u"})) {
		t.Fatal("added update not detected")
	}
	if !changedSince(state, resource.PropertyMap{"create": resource.MakeComputed(resource.NewStringProperty(""))}) {
		t.Fatal("unknown input not detected")
	}
}
