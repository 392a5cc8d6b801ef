package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

const (
	commandToken = "command:local:Command"
	runToken     = "command:local:run"
)

// kind is the wire type an input property must have.
type kind int

const (
	kString     kind = iota // a string
	kBool                   // a boolean
	kStringList             // a list of strings
	kStringMap              // a map of strings
	kAnyList                // a list of anything
)

func (k kind) String() string {
	switch k {
	case kString:
		return "a string"
	case kBool:
		return "a boolean"
	case kStringList:
		return "a list of strings"
	case kStringMap:
		return "a map of strings"
	default:
		return "a list"
	}
}

// baseInputs are shared by the Command resource and the run function.
var baseInputs = map[string]kind{
	"stdin":                  kString,
	"logging":                kString,
	"interpreter":            kStringList,
	"dir":                    kString,
	"environment":            kStringMap,
	"assetPaths":             kStringList,
	"archivePaths":           kStringList,
	"addPreviousOutputInEnv": kBool,
}

// commandInputKinds are the inputs of command:local:Command.
var commandInputKinds = merge(baseInputs, map[string]kind{
	"triggers": kAnyList,
	"create":   kString,
	"update":   kString,
	"delete":   kString,
})

// runInputKinds are the arguments of command:local:run.
var runInputKinds = merge(baseInputs, map[string]kind{
	"command": kString,
})

func merge(a, b map[string]kind) map[string]kind {
	out := make(map[string]kind, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// Logging values accepted by the `logging` input.
const (
	logStdout          = "stdout"
	logStderr          = "stderr"
	logStdoutAndStderr = "stdoutAndStderr"
	logNone            = "none"
)

var loggingValues = []string{logStdout, logStderr, logStdoutAndStderr, logNone}

// normalize turns engine output values into the plain secret/computed form so
// the rest of the provider only has to deal with those.
func normalize(v resource.PropertyValue) resource.PropertyValue {
	switch {
	case v.IsOutput():
		o := v.OutputValue()
		var inner resource.PropertyValue
		if o.Known {
			inner = normalize(o.Element)
		} else {
			inner = resource.MakeComputed(resource.NewStringProperty(""))
		}
		if o.Secret {
			inner = resource.MakeSecret(inner)
		}
		return inner
	case v.IsSecret():
		return resource.MakeSecret(normalize(v.SecretValue().Element))
	case v.IsArray():
		arr := v.ArrayValue()
		out := make([]resource.PropertyValue, len(arr))
		for i, e := range arr {
			out[i] = normalize(e)
		}
		return resource.NewArrayProperty(out)
	case v.IsObject():
		return resource.NewObjectProperty(normalizeMap(v.ObjectValue()))
	default:
		return v
	}
}

func normalizeMap(m resource.PropertyMap) resource.PropertyMap {
	out := make(resource.PropertyMap, len(m))
	for k, v := range m {
		out[k] = normalize(v)
	}
	return out
}

// unwrap strips any secret wrappers from v.
func unwrap(v resource.PropertyValue) resource.PropertyValue {
	for v.IsSecret() {
		v = v.SecretValue().Element
	}
	return v
}

func checkKind(k kind, v resource.PropertyValue) bool {
	v = unwrap(v)
	if v.IsComputed() {
		return true
	}
	switch k {
	case kString:
		return v.IsString()
	case kBool:
		return v.IsBool()
	case kAnyList:
		return v.IsArray()
	case kStringList:
		if !v.IsArray() {
			return false
		}
		for _, e := range v.ArrayValue() {
			if e = unwrap(e); !e.IsString() && !e.IsComputed() {
				return false
			}
		}
		return true
	case kStringMap:
		if !v.IsObject() {
			return false
		}
		for _, e := range v.ObjectValue() {
			if e = unwrap(e); !e.IsString() && !e.IsComputed() {
				return false
			}
		}
		return true
	}
	return false
}

// checkInputs validates news against kinds. It returns the inputs to keep
// (internal "__" keys and nulls dropped, secrets and unknowns untouched) and
// any failures to report to the engine.
func checkInputs(
	news resource.PropertyMap, kinds map[string]kind, required ...string,
) (resource.PropertyMap, []*pulumirpc.CheckFailure) {
	out := resource.PropertyMap{}
	var failures []*pulumirpc.CheckFailure
	fail := func(prop, format string, args ...any) {
		failures = append(failures, &pulumirpc.CheckFailure{Property: prop, Reason: fmt.Sprintf(format, args...)})
	}
	for _, key := range news.StableKeys() {
		name := string(key)
		v := normalize(news[key])
		if strings.HasPrefix(name, "__") || v.IsNull() {
			continue
		}
		k, ok := kinds[name]
		if !ok {
			fail(name, "unknown property %q", name)
			continue
		}
		if !checkKind(k, v) {
			fail(name, "%q must be %s", name, k)
			continue
		}
		if name == "logging" {
			if s := unwrap(v); s.IsString() && !contains(loggingValues, s.StringValue()) {
				fail(name, "%q must be one of %s, not %q", name, strings.Join(loggingValues, ", "), s.StringValue())
				continue
			}
		}
		out[key] = v
	}
	for _, r := range required {
		if _, ok := out[resource.PropertyKey(r)]; !ok {
			fail(r, "missing required property %q", r)
		}
	}
	return out, failures
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// inputs is the decoded, fully known form of a command's inputs.
type inputs struct {
	Create, Update, Delete, Command *string

	Dir, Stdin, Logging *string
	Environment         map[string]string
	Interpreter         []string
	AssetPaths          []string
	ArchivePaths        []string
	HasAssetPaths       bool
	HasArchivePaths     bool
	AddPrevious         *bool

	// secretCommands records which of create/update/delete/command arrived as
	// secrets, so error messages can avoid echoing them.
	secretCommands map[string]bool
}

// decodeInputs reads the known values out of props. Unknown values are an
// error: commands only run outside previews, when everything is known.
func decodeInputs(props resource.PropertyMap) (inputs, error) {
	in := inputs{secretCommands: map[string]bool{}}
	props = normalizeMap(props)
	for k, v := range props {
		if v.ContainsUnknowns() {
			return in, fmt.Errorf("input %q is not known; commands can only run once all inputs are known", k)
		}
	}
	str := func(name string) (*string, error) {
		v, ok := props[resource.PropertyKey(name)]
		if !ok || v.IsNull() {
			return nil, nil
		}
		u := unwrap(v)
		if !u.IsString() {
			return nil, fmt.Errorf("input %q must be a string", name)
		}
		s := u.StringValue()
		if v.ContainsSecrets() {
			in.secretCommands[name] = true
		}
		return &s, nil
	}
	strList := func(name string) ([]string, bool, error) {
		v, ok := props[resource.PropertyKey(name)]
		if !ok || v.IsNull() {
			return nil, false, nil
		}
		u := unwrap(v)
		if !u.IsArray() {
			return nil, false, fmt.Errorf("input %q must be a list of strings", name)
		}
		list := []string{}
		for _, e := range u.ArrayValue() {
			e = unwrap(e)
			if !e.IsString() {
				return nil, false, fmt.Errorf("input %q must be a list of strings", name)
			}
			list = append(list, e.StringValue())
		}
		return list, true, nil
	}
	var err error
	for name, dst := range map[string]**string{
		"create": &in.Create, "update": &in.Update, "delete": &in.Delete, "command": &in.Command,
		"dir": &in.Dir, "stdin": &in.Stdin, "logging": &in.Logging,
	} {
		if *dst, err = str(name); err != nil {
			return in, err
		}
	}
	if in.Interpreter, _, err = strList("interpreter"); err != nil {
		return in, err
	}
	if in.AssetPaths, in.HasAssetPaths, err = strList("assetPaths"); err != nil {
		return in, err
	}
	if in.ArchivePaths, in.HasArchivePaths, err = strList("archivePaths"); err != nil {
		return in, err
	}
	if v, ok := props["environment"]; ok && !v.IsNull() {
		u := unwrap(v)
		if !u.IsObject() {
			return in, fmt.Errorf("input %q must be a map of strings", "environment")
		}
		in.Environment = map[string]string{}
		for k, e := range u.ObjectValue() {
			e = unwrap(e)
			if !e.IsString() {
				return in, fmt.Errorf("environment variable %q must be a string", string(k))
			}
			in.Environment[string(k)] = e.StringValue()
		}
	}
	if v, ok := props["addPreviousOutputInEnv"]; ok && !v.IsNull() {
		u := unwrap(v)
		if !u.IsBool() {
			return in, fmt.Errorf("input %q must be a boolean", "addPreviousOutputInEnv")
		}
		b := u.BoolValue()
		in.AddPrevious = &b
	}
	return in, nil
}

// logStdout reports whether stdout lines are streamed to the engine log.
func (in inputs) logStdout() bool {
	return in.Logging == nil || *in.Logging == logStdout || *in.Logging == logStdoutAndStderr
}

// logStderr reports whether stderr lines are streamed to the engine log.
func (in inputs) logStderr() bool {
	return in.Logging == nil || *in.Logging == logStderr || *in.Logging == logStdoutAndStderr
}

// addPrevious reports whether PULUMI_COMMAND_STDOUT/STDERR are set (default true).
func (in inputs) addPrevious() bool { return in.AddPrevious == nil || *in.AddPrevious }

// sortedEnv renders the environment map as KEY=VALUE entries in a stable order.
func sortedEnv(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+"="+m[k])
	}
	return out
}

// plainString returns the string inside v (through secrets), or "".
func plainString(v resource.PropertyValue) string {
	v = unwrap(v)
	if v.IsString() {
		return v.StringValue()
	}
	return ""
}
