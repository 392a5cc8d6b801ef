package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRunInterpreterDirStdin(t *testing.T) {
	dir := t.TempDir()
	res, err := runCommand(context.Background(), runSpec{
		Command:     "import os,sys; print(os.getcwd()); print(sys.stdin.read().upper())",
		Interpreter: []string{"python3", "-c"},
		Dir:         dir,
		Stdin:       "abc",
	}, outputSink{})
	if err != nil {
		t.Skipf("python3 unavailable? %v", err)
	}
	if res.Stdout != dir+"\nABC" {
		t.Fatalf("stdout %q", res.Stdout)
	}
}

func TestRunMissingDirFails(t *testing.T) {
	_, err := runCommand(context.Background(), runSpec{Command: "true", Dir: "/does/not/exist"}, outputSink{})
	if err == nil || !strings.Contains(err.Error(), "/does/not/exist") {
		t.Fatalf("err %v", err)
	}
}

func TestRunEnvironmentAddsToPluginEnv(t *testing.T) {
	t.Setenv("FROM_PLUGIN", "p")
	res, err := runCommand(context.Background(), runSpec{
		Command: `echo "$FROM_PLUGIN $EXTRA"`, Env: map[string]string{"EXTRA": "e"},
	}, outputSink{})
	if err != nil || res.Stdout != "p e" {
		t.Fatalf("%q %v", res.Stdout, err)
	}
}

func TestRunErrorTailIsBounded(t *testing.T) {
	_, err := runCommand(context.Background(), runSpec{Command: "seq 1 20000; echo LAST >&2; exit 1"}, outputSink{})
	if err == nil {
		t.Fatal("expected failure")
	}
	msg := err.Error()
	if !strings.Contains(msg, "LAST") || !strings.Contains(msg, "truncated") || len(msg) > errorTailBytes+500 {
		t.Fatalf("error is %d bytes; tail missing or unbounded", len(msg))
	}
}

func TestRunLongLineDoesNotHang(t *testing.T) {
	var lines []string
	res, err := runCommand(context.Background(), runSpec{
		Command: "head -c 200000 /dev/zero | tr '\\0' a; echo; echo end", LogStdout: true,
	}, outputSink{Line: func(l string) { lines = append(lines, l) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Stdout) != 200000+4 || lines[len(lines)-1] != "end" {
		t.Fatalf("stdout %d bytes, %d lines", len(res.Stdout), len(lines))
	}
}

// Cancelling kills the whole process group, grandchildren included.
func TestRunCancelKillsProcessGroup(t *testing.T) {
	oldGrace := killGrace
	killGrace = 500 * time.Millisecond
	defer func() { killGrace = oldGrace }()

	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		// The background sleep ignores SIGTERM, so SIGKILL must follow.
		_, err := runCommand(ctx, runSpec{
			Command: "trap '' TERM; sleep 300 & echo $! > " + pidFile + "; wait",
		}, outputSink{})
		done <- err
	}()
	var grandchild int
	for i := 0; i < 100 && grandchild == 0; i++ {
		time.Sleep(50 * time.Millisecond)
		if b, err := os.ReadFile(pidFile); err == nil && len(b) > 1 {
			grandchild, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
	}
	if grandchild == 0 {
		t.Fatal("command did not start")
	}
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "cancelled") {
			t.Fatalf("err %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancel did not stop the command")
	}
	if time.Since(start) > 8*time.Second {
		t.Fatal("took too long")
	}
	// The grandchild must be gone (reaped by init, or at least dead).
	deadline := time.Now().Add(3 * time.Second)
	for {
		if err := syscall.Kill(grandchild, 0); err != nil || isZombie(grandchild) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d survived cancellation", grandchild)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+1:])
	return len(f) > 0 && f[0] == "Z"
}

// Cancel on the provider ends in-flight operations and refuses new ones.
func TestProviderCancel(t *testing.T) {
	p := newProvider("1.2.1", nil)
	done := make(chan error, 1)
	go func() {
		_, _, err := create(t, p, props(map[string]any{"create": "sleep 300"}), false)
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if _, err := p.Cancel(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("cancelled create should fail")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancel did not stop the create")
	}
	if _, _, err := create(t, p, props(map[string]any{"create": "true"}), false); err == nil {
		t.Fatal("operations after Cancel should fail")
	}
}

// A previous output too large for one environment variable is left out (with
// a warning) rather than making exec fail with E2BIG; one that fits is passed.
func TestPreviousOutputEnvLimit(t *testing.T) {
	var warnings []string
	sink := outputSink{Warn: func(m string) { warnings = append(warnings, m) }}
	fits := strings.Repeat("a", maxEnvString-len(envPrevStdout)-2)
	res, err := runCommand(context.Background(), runSpec{
		Command: "echo ${#PULUMI_COMMAND_STDOUT} ${#PULUMI_COMMAND_STDERR}", PrevStdout: fits, PrevStderr: fits + "a",
	}, sink)
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa(len(fits)) + " 0"; res.Stdout != want {
		t.Fatalf("stdout %q, want %q", res.Stdout, want)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], envPrevStderr) {
		t.Fatalf("warnings %q", warnings)
	}
}
