package fsutil

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, content := range []string{"one", "two, longer"} {
		if err := WriteFileAtomic(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(p)
		if string(b) != content {
			t.Fatalf("content %q, want %q", b, content)
		}
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left-over files: %v", entries)
	}
}

func TestStageAbortAndOwner(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	tmp, err := Stage(p, []byte("x"), 0o600, &Owner{UID: os.Getuid(), GID: os.Getgid()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatal("staged file visible under its name")
	}
	Abort(tmp)
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("left-over files: %v", entries)
	}
}

func TestCreateExclusive(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secret")
	if err := CreateExclusive(p, []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CreateExclusive(p, []byte("b"), 0o600); err == nil {
		t.Fatal("existing file overwritten")
	}
	b, _ := os.ReadFile(p)
	if string(b) != "a" {
		t.Fatalf("content %q", b)
	}
}

func TestAppendLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	for _, l := range []string{"a", "b"} {
		if err := AppendLine(p, []byte(l), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(p)
	if string(b) != "a\nb\n" {
		t.Fatalf("log %q", b)
	}
}
