package main

import (
	"context"
	"sync"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// engineLog sends one log message about urn to the engine. Ephemeral
// messages only show in the progress display's Info column.
type engineLog func(ctx context.Context, urn string, sev pulumirpc.LogSeverity, msg string, ephemeral bool)

// commandProvider implements the resource provider protocol for
// command:local:Command and command:local:run.
type commandProvider struct {
	pulumirpc.UnimplementedResourceProviderServer

	version string
	log     engineLog
	attach  func(addr string) error // connects a late engine (attach mode)

	mu        sync.Mutex
	cancelled bool
	inflight  map[int]context.CancelFunc
	nextOp    int
}

func newProvider(version string, log engineLog) *commandProvider {
	return &commandProvider{version: version, log: log, inflight: map[int]context.CancelFunc{}}
}

var marshalOpts = plugin.MarshalOptions{
	KeepUnknowns:  true,
	KeepSecrets:   true,
	KeepResources: true,
	SkipNulls:     true,
}

func unmarshal(s *structpb.Struct) (resource.PropertyMap, error) {
	if s == nil {
		return resource.PropertyMap{}, nil
	}
	m, err := plugin.UnmarshalProperties(s, plugin.MarshalOptions{
		KeepUnknowns:     true,
		KeepSecrets:      true,
		KeepResources:    true,
		KeepOutputValues: true,
		SkipNulls:        true,
	})
	if err != nil {
		return nil, err
	}
	return normalizeMap(m), nil
}

func marshal(m resource.PropertyMap) (*structpb.Struct, error) {
	return plugin.MarshalProperties(m, marshalOpts)
}

// operation derives a context that Cancel (or the request timeout, in
// seconds, when positive) can end; done must be called when it finishes.
func (p *commandProvider) operation(ctx context.Context, timeout float64) (context.Context, func()) {
	var cancel context.CancelFunc
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, time.Duration(timeout*float64(time.Second)))
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancelled {
		cancel()
		return ctx, func() {}
	}
	id := p.nextOp
	p.nextOp++
	p.inflight[id] = cancel
	return ctx, func() {
		p.mu.Lock()
		delete(p.inflight, id)
		p.mu.Unlock()
		cancel()
	}
}

// cancelAll ends every running operation and refuses new ones.
func (p *commandProvider) cancelAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cancelled = true
	for id, cancel := range p.inflight {
		cancel()
		delete(p.inflight, id)
	}
}

// logger streams a command's output lines to the engine as status messages
// (as the upstream provider does) and its warnings as warnings.
func (p *commandProvider) logger(ctx context.Context, urn string) outputSink {
	if p.log == nil {
		return outputSink{}
	}
	// Log calls must outlive a cancelled operation long enough to flush.
	logCtx := context.WithoutCancel(ctx)
	return outputSink{
		Line: func(line string) { p.log(logCtx, urn, pulumirpc.LogSeverity_INFO, line, true) },
		Warn: func(msg string) { p.log(logCtx, urn, pulumirpc.LogSeverity_WARNING, msg, false) },
	}
}

func checkType(urn string) error {
	if t := string(resource.URN(urn).Type()); t != commandToken {
		return status.Errorf(codes.InvalidArgument, "unknown resource type %q (this provider implements %s)", t, commandToken)
	}
	return nil
}

// --- plugin metadata and configuration ---

func (p *commandProvider) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: p.version}, nil
}

func (p *commandProvider) GetSchema(_ context.Context, req *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	if req.GetSubpackageName() != "" {
		return nil, status.Errorf(codes.NotFound, "no subpackage %q", req.GetSubpackageName())
	}
	s, err := schemaJSON(p.version)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.GetSchemaResponse{Schema: s}, nil
}

func (p *commandProvider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *commandProvider) DiffConfig(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	// The provider has no configuration; ignore the engine's "version" key.
	olds, err := unmarshal(req.GetOldInputs())
	if err != nil {
		return nil, err
	}
	if len(olds) == 0 {
		if olds, err = unmarshal(req.GetOlds()); err != nil {
			return nil, err
		}
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	changes := pulumirpc.DiffResponse_DIFF_NONE
	if d := dropInternal(olds).Diff(dropInternal(news)); d != nil && d.AnyChanges() {
		changes = pulumirpc.DiffResponse_DIFF_SOME
	}
	return &pulumirpc.DiffResponse{Changes: changes}, nil
}

func (p *commandProvider) Configure(context.Context, *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	return &pulumirpc.ConfigureResponse{
		AcceptSecrets:   true,
		SupportsPreview: true,
		AcceptResources: true,
	}, nil
}

func (p *commandProvider) Attach(_ context.Context, req *pulumirpc.PluginAttach) (*emptypb.Empty, error) {
	if p.attach != nil {
		if err := p.attach(req.GetAddress()); err != nil {
			return nil, err
		}
	}
	return &emptypb.Empty{}, nil
}

func (p *commandProvider) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	p.cancelAll()
	return &emptypb.Empty{}, nil
}

// --- command:local:Command ---

func (p *commandProvider) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	if err := checkType(req.GetUrn()); err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	checked, failures := checkInputs(news, commandInputKinds)
	out, err := marshal(checked)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CheckResponse{Inputs: out, Failures: failures}, nil
}

func (p *commandProvider) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	if err := checkType(req.GetUrn()); err != nil {
		return nil, err
	}
	state, err := unmarshal(req.GetOlds())
	if err != nil {
		return nil, err
	}
	oldInputs, err := unmarshal(req.GetOldInputs())
	if err != nil {
		return nil, err
	}
	if req.GetOldInputs() == nil {
		// Engines that do not send old inputs: the state mirrors them.
		oldInputs = inputsOf(state)
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	d, err := diffInputs(oldInputs, state, news, req.GetIgnoreChanges())
	if err != nil {
		return nil, err
	}
	return d.rpc(), nil
}

func resourceName(urn, name string) string {
	if name != "" {
		return name
	}
	return resource.URN(urn).Name()
}

// unknownString is the value of an output that preview cannot know.
var unknownString = resource.MakeComputed(resource.NewStringProperty(""))

// markPreviewOutputs makes the command's own outputs unknown for a preview.
func markPreviewOutputs(outs resource.PropertyMap, in resource.PropertyMap) {
	outs["stdout"] = unknownString
	outs["stderr"] = unknownString
	if _, ok := in["assetPaths"]; ok {
		outs["assets"] = resource.MakeComputed(resource.NewObjectProperty(resource.PropertyMap{}))
	}
	if _, ok := in["archivePaths"]; ok {
		outs["archive"] = unknownString
	}
}

func (p *commandProvider) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	if err := checkType(req.GetUrn()); err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetProperties())
	if err != nil {
		return nil, err
	}
	news = inputsOf(news)
	id, err := resource.NewUniqueHex(resourceName(req.GetUrn(), req.GetName()), 8, 0)
	if err != nil {
		return nil, err
	}
	outs := news.Copy()
	if req.GetPreview() {
		markPreviewOutputs(outs, news)
		props, err := marshal(outs)
		if err != nil {
			return nil, err
		}
		return &pulumirpc.CreateResponse{Id: id, Properties: props}, nil
	}

	in, err := decodeInputs(news)
	if err != nil {
		return nil, err
	}
	outs["stdout"] = resource.NewStringProperty("")
	outs["stderr"] = resource.NewStringProperty("")
	if in.Create != nil {
		spec := specFor(in, *in.Create, in.secretCommands["create"], "", "")
		if err := p.runInto(ctx, req.GetTimeout(), req.GetUrn(), in, spec, outs); err != nil {
			return nil, err
		}
	}
	props, err := marshal(outs)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: props}, nil
}

// specFor builds the run for command with the settings in in.
// runInto runs a create or update command and records its stdout, stderr
// and requested assets in outs.
func (p *commandProvider) runInto(ctx context.Context, timeout float64, urn string, in inputs, spec runSpec, outs resource.PropertyMap) error {
	ctx, done := p.operation(ctx, timeout)
	defer done()
	res, err := runCommand(ctx, spec, p.logger(ctx, urn))
	if err != nil {
		return err
	}
	outs["stdout"] = resource.NewStringProperty(res.Stdout)
	outs["stderr"] = resource.NewStringProperty(res.Stderr)
	return collectAssets(in, res.Dir, outs)
}

func specFor(in inputs, command string, secret bool, prevStdout, prevStderr string) runSpec {
	spec := runSpec{
		Command:     command,
		Secret:      secret,
		Interpreter: in.Interpreter,
		Env:         in.Environment,
		LogStdout:   in.logStdout(),
		LogStderr:   in.logStderr(),
	}
	if in.Dir != nil {
		spec.Dir = *in.Dir
	}
	if in.Stdin != nil {
		spec.Stdin = *in.Stdin
	}
	if in.addPrevious() {
		spec.PrevStdout, spec.PrevStderr = prevStdout, prevStderr
	}
	return spec
}

func (p *commandProvider) Update(ctx context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	if err := checkType(req.GetUrn()); err != nil {
		return nil, err
	}
	state, err := unmarshal(req.GetOlds())
	if err != nil {
		return nil, err
	}
	news, err := unmarshal(req.GetNews())
	if err != nil {
		return nil, err
	}
	news = inputsOf(news)
	outs := news.Copy()
	// Outputs start as the previous ones; a run replaces them.
	for _, k := range []resource.PropertyKey{"stdout", "stderr", "assets", "archive"} {
		if v, ok := state[k]; ok {
			outs[k] = v
		}
	}
	for _, k := range []resource.PropertyKey{"stdout", "stderr"} {
		if _, ok := outs[k]; !ok {
			outs[k] = resource.NewStringProperty("")
		}
	}

	if req.GetPreview() {
		if changedSince(state, news) {
			// The command will run again, so its outputs are not known yet.
			for _, k := range []resource.PropertyKey{"stdout", "stderr", "assets", "archive"} {
				if v, ok := outs[k]; ok && !v.IsComputed() {
					outs[k] = resource.MakeComputed(v)
				}
			}
			markPreviewOutputs(outs, news)
		}
		props, err := marshal(outs)
		if err != nil {
			return nil, err
		}
		return &pulumirpc.UpdateResponse{Properties: props}, nil
	}

	in, err := decodeInputs(news)
	if err != nil {
		return nil, err
	}
	command, which := in.Update, "update"
	if command == nil {
		command, which = in.Create, "create"
	}
	if command != nil {
		spec := specFor(in, *command, in.secretCommands[which],
			plainString(state["stdout"]), plainString(state["stderr"]))
		if err := p.runInto(ctx, req.GetTimeout(), req.GetUrn(), in, spec, outs); err != nil {
			return nil, err
		}
	}
	props, err := marshal(outs)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: props}, nil
}

func (p *commandProvider) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	if err := checkType(req.GetUrn()); err != nil {
		return nil, err
	}
	state, err := unmarshal(req.GetProperties())
	if err != nil {
		return nil, err
	}
	in, err := decodeInputs(inputsOf(state))
	if err != nil {
		return nil, err
	}
	if in.Delete == nil {
		return &emptypb.Empty{}, nil
	}
	ctx, done := p.operation(ctx, req.GetTimeout())
	defer done()
	spec := specFor(in, *in.Delete, in.secretCommands["delete"],
		plainString(state["stdout"]), plainString(state["stderr"]))
	if _, err := runCommand(ctx, spec, p.logger(ctx, req.GetUrn())); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (p *commandProvider) Read(_ context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	if err := checkType(req.GetUrn()); err != nil {
		return nil, err
	}
	// A command has nothing to refresh from: the state stands as recorded.
	return &pulumirpc.ReadResponse{
		Id:         req.GetId(),
		Properties: req.GetProperties(),
		Inputs:     req.GetInputs(),
	}, nil
}

// --- command:local:run ---

func (p *commandProvider) Invoke(ctx context.Context, req *pulumirpc.InvokeRequest) (*pulumirpc.InvokeResponse, error) {
	if req.GetTok() != runToken {
		return nil, status.Errorf(codes.InvalidArgument, "unknown function %q (this provider implements %s)", req.GetTok(), runToken)
	}
	args, err := unmarshal(req.GetArgs())
	if err != nil {
		return nil, err
	}
	checked, failures := checkInputs(args, runInputKinds, "command")
	if len(failures) > 0 {
		return &pulumirpc.InvokeResponse{Failures: failures}, nil
	}
	in, err := decodeInputs(checked)
	if err != nil {
		return nil, err
	}
	ctx, done := p.operation(ctx, 0)
	defer done()
	res, err := runCommand(ctx, specFor(in, *in.Command, in.secretCommands["command"], "", ""), p.logger(ctx, ""))
	if err != nil {
		return nil, err
	}
	outs := checked.Copy()
	outs["stdout"] = resource.NewStringProperty(res.Stdout)
	outs["stderr"] = resource.NewStringProperty(res.Stderr)
	if err := collectAssets(in, res.Dir, outs); err != nil {
		return nil, err
	}
	ret, err := marshal(outs)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.InvokeResponse{Return: ret}, nil
}
