package main

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// The admin API on a unix socket: only its owner may open it, and a socket
// left by a killed broker does not stop the next one.
func TestListenOnUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	for round := 0; round < 2; round++ {
		ln, local, err := listenOn("unix:" + path)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if !local {
			t.Fatal("a unix: address is local")
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
			t.Fatalf("socket mode %v, want a socket with 0600", fi.Mode())
		}
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		// Round 0 leaves the file behind, as a killed broker would.
		if l, ok := ln.(*net.UnixListener); ok {
			l.SetUnlinkOnClose(false)
		}
		ln.Close()
	}
	// A regular file at the path is not a stale socket: refused, not removed.
	file := filepath.Join(t.TempDir(), "not-a-socket")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := listenOn("unix:" + file); err == nil {
		t.Fatal("listened over a regular file")
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatal("the regular file was removed")
	}
}

func TestListenOnTCP(t *testing.T) {
	ln, local, err := listenOn("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if local {
		t.Fatal("a TCP address is not local")
	}
}

// The admin API never shares the relays' listener, and never crosses the
// network without TLS.
func TestCheckAdminListen(t *testing.T) {
	for _, c := range []struct {
		admin, relays string
		tls           bool
		ok            bool
	}{
		{"unix:/run/kb/admin.sock", "[::]:8443", false, true},
		{"127.0.0.1:8444", "[::]:8443", false, true},
		{"[::1]:8444", "[::]:8443", false, true},
		{"localhost:8444", "[::]:8443", false, true},
		{"127.0.0.1:0", "127.0.0.1:0", false, true}, // two ephemeral ports
		{"[::]:8443", "[::]:8443", true, false},
		{"0.0.0.0:8444", "[::]:8443", false, false},
		{"192.0.2.1:8444", "[::]:8443", false, false},
		{"192.0.2.1:8444", "[::]:8443", true, true},
		{"no-port", "[::]:8443", true, false},
	} {
		if err := checkAdminListen(c.admin, c.relays, c.tls); (err == nil) != c.ok {
			t.Errorf("checkAdminListen(%q, %q, tls %v) = %v", c.admin, c.relays, c.tls, err)
		}
	}
}
