package fsutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadBounded(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	if data, err := ReadBounded(file, 5); err != nil || string(data) != "12345" {
		t.Fatalf("a file at the limit: %q, %v", data, err)
	}
	if _, err := ReadBounded(file, 4); err == nil || !strings.Contains(err.Error(), "larger than 4 bytes") {
		t.Fatalf("a file over the limit: %v", err)
	}
	if _, err := ReadBounded(dir, 4); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("a directory: %v", err)
	}
	if _, err := ReadBounded(filepath.Join(dir, "missing"), 4); !os.IsNotExist(err) {
		t.Fatalf("a missing file: %v", err)
	}
}
