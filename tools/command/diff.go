package main

import (
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// replaceOnChange lists the inputs whose change forces a replacement.
var replaceOnChange = map[string]bool{"triggers": true}

// inputsOf keeps only the Command inputs of a property map (state carries
// outputs such as stdout too).
func inputsOf(m resource.PropertyMap) resource.PropertyMap {
	out := resource.PropertyMap{}
	for k, v := range m {
		if _, ok := commandInputKinds[string(k)]; ok && !v.IsNull() {
			out[k] = normalize(v)
		}
	}
	return out
}

// dropInternal removes "__"-prefixed keys and the engine's "version" key.
func dropInternal(m resource.PropertyMap) resource.PropertyMap {
	out := resource.PropertyMap{}
	for k, v := range m {
		if strings.HasPrefix(string(k), "__") || k == "version" || v.IsNull() {
			continue
		}
		out[k] = normalize(v)
	}
	return out
}

// diffResult is the provider-level outcome of comparing old and new inputs.
type diffResult struct {
	Changes  bool
	Replaces []string                       // top-level properties forcing replacement
	Diffs    []string                       // top-level properties that changed
	Detailed map[string]plugin.PropertyDiff // per property path
}

// diffInputs compares the previous inputs with the new ones. A change under
// `triggers` replaces the resource; any other change is an in-place update.
// ignoreChanges paths take their value from oldState, as the engine asks.
func diffInputs(oldInputs, oldState, news resource.PropertyMap, ignoreChanges []string) (diffResult, error) {
	olds := dropInternal(oldInputs)
	news = dropInternal(news)
	state := normalizeMap(oldState)
	for _, ic := range ignoreChanges {
		p, err := resource.ParsePropertyPath(ic)
		if err != nil {
			return diffResult{}, err
		}
		if v, ok := p.Get(resource.NewObjectProperty(state)); ok {
			obj := resource.NewObjectProperty(news)
			p.Set(obj, v)
			news = obj.ObjectValue()
		}
	}

	objDiff := olds.Diff(news)
	res := diffResult{Detailed: map[string]plugin.PropertyDiff{}}
	if objDiff == nil || !objDiff.AnyChanges() {
		return res, nil
	}
	res.Changes = true
	replaces, diffs := map[string]bool{}, map[string]bool{}
	for path, d := range plugin.NewDetailedDiffFromObjectDiff(objDiff, true) {
		top := topLevel(path)
		if replaceOnChange[top] {
			d = d.ToReplace()
			replaces[top] = true
		}
		diffs[top] = true
		res.Detailed[path] = d
	}
	res.Replaces = sortedKeys(replaces)
	res.Diffs = sortedKeys(diffs)
	return res, nil
}

// topLevel returns the first element of a property path such as
// `environment.FOO` or `triggers[0]`.
func topLevel(path string) string {
	if p, err := resource.ParsePropertyPath(path); err == nil && len(p) > 0 {
		if s, ok := p[0].(string); ok {
			return s
		}
	}
	return path
}

func sortedKeys(m map[string]bool) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// rpc renders the result as the engine's DiffResponse.
func (d diffResult) rpc() *pulumirpc.DiffResponse {
	resp := &pulumirpc.DiffResponse{
		Changes:         pulumirpc.DiffResponse_DIFF_NONE,
		HasDetailedDiff: true,
		DetailedDiff:    map[string]*pulumirpc.PropertyDiff{},
	}
	if !d.Changes {
		return resp
	}
	resp.Changes = pulumirpc.DiffResponse_DIFF_SOME
	resp.Replaces = d.Replaces
	resp.Diffs = d.Diffs
	for path, pd := range d.Detailed {
		resp.DetailedDiff[path] = &pulumirpc.PropertyDiff{
			Kind:      pulumirpc.PropertyDiff_Kind(pd.Kind),
			InputDiff: pd.InputDiff,
		}
	}
	return resp
}

// changedSince reports whether any Command input in news is unknown or
// differs from its value in the previous state. During an update preview it
// decides whether stdout/stderr become unknown.
func changedSince(oldState, news resource.PropertyMap) bool {
	olds := inputsOf(oldState)
	news = inputsOf(news)
	for k := range commandInputKinds {
		key := resource.PropertyKey(k)
		nv, hasNew := news[key]
		ov, hasOld := olds[key]
		if hasNew && nv.ContainsUnknowns() {
			return true
		}
		if hasNew != hasOld {
			return true
		}
		if hasNew && !nv.DeepEquals(ov) {
			return true
		}
	}
	return false
}
