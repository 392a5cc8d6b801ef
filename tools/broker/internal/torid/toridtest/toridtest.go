// Package toridtest makes the test-only tor relay keys that the torid and
// relayproof tests read, with real tor (make-fixtures.sh), into a private
// temporary directory: no file named like a secret key is ever committed.
// I/O: runs bash, tor and faketime; writes under the system's temp directory.
package toridtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Make runs script (make-fixtures.sh, given relative to the calling test's
// package directory) and returns the directory holding relay-a/, relay-b/
// and relay-a-expired/, and a function that removes it.
func Make(script string) (dir string, cleanup func(), err error) {
	tmp, err := os.MkdirTemp("", "tor-fixtures-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(tmp) }
	dir = filepath.Join(tmp, "keys")
	out, err := exec.Command("bash", script, dir).CombinedOutput()
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("%s (needs tor and faketime, installed by scripts/setup.sh): %v\n%s", script, err, out)
	}
	return dir, cleanup, nil
}
