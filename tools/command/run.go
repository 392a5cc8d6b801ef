package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Names of the variables carrying the previous run's output.
const (
	envPrevStdout = "PULUMI_COMMAND_STDOUT"
	envPrevStderr = "PULUMI_COMMAND_STDERR"
)

var defaultInterpreter = []string{"/bin/sh", "-c"}

// Tunables for cancellation; variables so tests can shorten them.
var (
	// killGrace is how long a cancelled command's process group has between
	// SIGTERM and SIGKILL.
	killGrace = 5 * time.Second
	// pipeGrace is how long we keep reading output after a cancelled
	// command's leader exited, in case something outside its process group
	// still holds the pipes open.
	pipeGrace = 2 * time.Second
	// errorTailBytes bounds how much output is quoted in an error.
	errorTailBytes = 8 << 10
	// maxLogLine splits very long output lines before logging them.
	maxLogLine = 64 << 10
)

// runSpec is one execution of a shell command.
type runSpec struct {
	Command     string
	Secret      bool // the command text is a secret: never echo it
	Interpreter []string
	Dir         string
	Env         map[string]string
	Stdin       string
	LogStdout   bool
	LogStderr   bool
	// Previous outputs, exported as PULUMI_COMMAND_STDOUT/STDERR when non-empty.
	PrevStdout, PrevStderr string
}

type runResult struct {
	Stdout, Stderr string
	Dir            string // the directory the command ran in
}

// outputSink receives the output lines that should go to the engine log, and
// warnings about the run. Either function may be nil.
type outputSink struct {
	Line func(line string)
	Warn func(msg string)
}

func (s outputSink) warn(msg string) {
	if s.Warn != nil {
		s.Warn(msg)
	}
}

// maxEnvString is Linux's limit on one "NAME=value" string passed to exec
// (MAX_ARG_STRLEN, terminating NUL included); past it exec fails with E2BIG.
const maxEnvString = 32 * 4096

// previousOutputEnv returns NAME=value for a previous output, or "" when the
// value is empty or too large to pass (then sink gets a warning).
func previousOutputEnv(name, value string, sink outputSink) string {
	if value == "" {
		return ""
	}
	entry := name + "=" + value
	if len(entry)+1 > maxEnvString {
		sink.warn(fmt.Sprintf("%s is not set: the previous output is %d bytes, more than the %d bytes "+
			"Linux allows in one environment variable", name, len(value), maxEnvString-len(name)-2))
		return ""
	}
	return entry
}

// runCommand runs spec and waits for it. Cancelling ctx kills the command's
// whole process group (SIGTERM, then SIGKILL after killGrace).
func runCommand(ctx context.Context, spec runSpec, sink outputSink) (runResult, error) {
	args := append([]string{}, spec.Interpreter...)
	if len(args) == 0 {
		args = append(args, defaultInterpreter...)
	}
	args = append(args, spec.Command)

	res := runResult{Dir: spec.Dir}
	if res.Dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return res, err
		}
		res.Dir = wd
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("not running %s: %w", describe(spec), err)
	}
	if fi, err := os.Stat(res.Dir); err != nil {
		return res, fmt.Errorf("dir %q: %w", res.Dir, err)
	} else if !fi.IsDir() {
		return res, fmt.Errorf("dir %q is not a directory", res.Dir)
	}

	//nolint:gosec // running the user's command is the point of this provider
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = res.Dir
	cmd.Env = append(os.Environ(), sortedEnv(spec.Env)...)
	if e := previousOutputEnv(envPrevStdout, spec.PrevStdout, sink); e != "" {
		cmd.Env = append(cmd.Env, e)
	}
	if e := previousOutputEnv(envPrevStderr, spec.PrevStderr, sink); e != "" {
		cmd.Env = append(cmd.Env, e)
	}
	if spec.Stdin != "" {
		cmd.Stdin = strings.NewReader(spec.Stdin)
	}
	// Own process group, so cancellation can take down everything the command
	// started; SIGKILL if this plugin dies underneath it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	outR, outW, err := os.Pipe()
	if err != nil {
		return res, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return res, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW

	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return res, fmt.Errorf("%w: running %s", err, describe(spec))
	}

	var stdout, stderr bytes.Buffer
	combined := &tailBuffer{max: errorTailBytes}
	logs := make(chan string, 1024)
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		for line := range logs {
			if sink.Line != nil {
				sink.Line(line)
			}
		}
	}()

	var readers sync.WaitGroup
	readers.Add(2)
	go pump(&readers, outR, &stdout, combined, spec.LogStdout, logs)
	go pump(&readers, errR, &stderr, combined, spec.LogStderr, logs)

	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()

	cancelled := false
	select {
	case <-exited:
	case <-ctx.Done():
		cancelled = true
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(killGrace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-exited
		}
		// Make sure nothing left in the group keeps the pipes open.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}

	readersDone := make(chan struct{})
	go func() { readers.Wait(); close(readersDone) }()
	if cancelled {
		select {
		case <-readersDone:
		case <-time.After(pipeGrace):
			outR.Close()
			errR.Close()
			<-readersDone
		}
	} else {
		select {
		case <-readersDone:
		case <-ctx.Done():
			// The command exited but something it left behind holds the
			// pipes; stop waiting once we are cancelled.
			outR.Close()
			errR.Close()
			<-readersDone
			cancelled = true
		}
	}
	outR.Close()
	errR.Close()
	close(logs)
	<-logDone

	if cancelled && waitErr == nil {
		waitErr = ctx.Err()
	}
	if waitErr != nil {
		if cancelled {
			waitErr = fmt.Errorf("cancelled (%v): %w", context.Cause(ctx), waitErr)
		}
		return res, fmt.Errorf("%w: running %s:\n%s", waitErr, describe(spec), combined.String())
	}
	res.Stdout = strings.TrimSuffix(stdout.String(), "\n")
	res.Stderr = strings.TrimSuffix(stderr.String(), "\n")
	return res, nil
}

// describe names a command for error messages without leaking secrets.
func describe(spec runSpec) string {
	if spec.Secret {
		return "[secret command]"
	}
	return fmt.Sprintf("%q", spec.Command)
}

// pump copies one output stream into its buffer and the combined tail, and
// sends complete lines to logs when log is set.
func pump(wg *sync.WaitGroup, r io.Reader, buf *bytes.Buffer, combined *tailBuffer, log bool, logs chan<- string) {
	defer wg.Done()
	var pending []byte
	chunk := make([]byte, 32<<10)
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			data := chunk[:n]
			buf.Write(data)
			combined.Write(data)
			if log {
				pending = append(pending, data...)
				for {
					i := bytes.IndexByte(pending, '\n')
					if i < 0 {
						if len(pending) >= maxLogLine {
							logs <- string(pending[:maxLogLine])
							pending = append(pending[:0], pending[maxLogLine:]...)
							continue
						}
						break
					}
					logs <- strings.TrimSuffix(string(pending[:i]), "\r")
					pending = append(pending[:0], pending[i+1:]...)
				}
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				combined.Write([]byte(fmt.Sprintf("\n[reading output: %v]\n", err)))
			}
			break
		}
	}
	if log && len(pending) > 0 {
		logs <- string(pending)
	}
}

// tailBuffer keeps the last max bytes written to it, safely across goroutines.
type tailBuffer struct {
	mu        sync.Mutex
	max       int
	buf       []byte
	truncated bool
}

func (t *tailBuffer) Write(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.truncated = true
	}
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.truncated {
		return "[... earlier output truncated ...]\n" + string(t.buf)
	}
	return string(t.buf)
}
