// Package fsutil writes files so that a crash at any moment leaves either
// the old content or the new, never a torn file: write a temporary file in
// the same directory, fsync it, rename it over the target, fsync the
// directory.
// It also reads the files a program is pointed at within a bound
// (ReadBounded, read.go).
package fsutil

import (
	"fmt"
	"os"
	"path/filepath"
)

// Owner optionally sets the owner of a written file (uid, gid); nil keeps
// the process's.
type Owner struct {
	UID, GID int
}

// WriteFileAtomic replaces path with data, mode perm.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return WriteFileAtomicOwned(path, data, perm, nil)
}

// WriteFileAtomicOwned is WriteFileAtomic that also chowns the file before it
// becomes visible under its name.
func WriteFileAtomicOwned(path string, data []byte, perm os.FileMode, owner *Owner) error {
	tmp, err := Stage(path, data, perm, owner)
	if err != nil {
		return err
	}
	return Commit(tmp, path)
}

// Stage writes data to a synced temporary file next to path and returns its
// name; Commit then renames it into place. Staging several files before
// committing any keeps a failed write from leaving a partial set.
func Stage(path string, data []byte, perm os.FileMode, owner *Owner) (string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(name)
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if owner != nil {
		if err := f.Chown(owner.UID, owner.GID); err != nil {
			return fail(err)
		}
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return name, nil
}

// Commit renames a staged file over path and syncs the directory.
func Commit(tmp, path string) error {
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// Abort removes a staged file that will not be committed.
func Abort(tmp string) { os.Remove(tmp) }

// SyncDir fsyncs a directory so that renames and creations in it are durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// CreateExclusive writes a new file that must not exist yet (O_EXCL), syncs
// it and its directory. Used for secrets that must never be overwritten.
func CreateExclusive(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// AppendLine appends one line (a newline is added) and fsyncs. Lines are
// written with a single write(2) on an O_APPEND descriptor.
func AppendLine(path string, line []byte, perm os.FileMode) error {
	return appendLine(path, line, perm, true)
}

// AppendLineNoSync appends like AppendLine without waiting for the disk: for
// lines whose loss in a crash costs nothing (refusals of anonymous requests).
func AppendLineNoSync(path string, line []byte, perm os.FileMode) error {
	return appendLine(path, line, perm, false)
}

func appendLine(path string, line []byte, perm os.FileMode, sync bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, perm)
	if err != nil {
		return err
	}
	buf := make([]byte, 0, len(line)+1)
	buf = append(buf, line...)
	buf = append(buf, '\n')
	if _, err := f.Write(buf); err != nil {
		f.Close()
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
