package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"diskless-relays/tools/broker/internal/fsutil"
	"diskless-relays/tools/broker/internal/protocol"
)

// ensureDir makes dir (0700, owned by uid:gid), refusing a symlink.
func ensureDir(dir string, uid, gid int) error {
	st, err := os.Lstat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	case err != nil:
		return err
	case !st.IsDir():
		return fmt.Errorf("%s exists and is not a directory", dir)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// InstallFiles writes a bundle into the tor data directory: directories
// 0700 and files 0600, all owned by uid:gid. Every file is first staged
// (written and synced under a temporary name) and only then are all renamed
// into place, so a failure leaves no partial key set under the real names.
// Names were checked against the fixed list, so none escapes dir.
func InstallFiles(dir string, files protocol.Files, uid, gid int) error {
	if err := protocol.CheckFiles(files, nil); err != nil {
		return err
	}
	if err := ensureDir(dir, uid, gid); err != nil {
		return err
	}
	if err := ensureDir(filepath.Join(dir, "keys"), uid, gid); err != nil {
		return err
	}
	owner := &fsutil.Owner{UID: uid, GID: gid}
	type staged struct{ tmp, dst string }
	var done []staged
	abort := func() {
		for _, s := range done {
			fsutil.Abort(s.tmp)
		}
	}
	for _, name := range files.Names() {
		dst := filepath.Join(dir, filepath.FromSlash(name))
		tmp, err := fsutil.Stage(dst, files[name], 0o600, owner)
		if err != nil {
			abort()
			return err
		}
		done = append(done, staged{tmp, dst})
	}
	for i, s := range done {
		if err := os.Rename(s.tmp, s.dst); err != nil {
			for _, r := range done[i:] {
				fsutil.Abort(r.tmp)
			}
			return err
		}
	}
	if err := fsutil.SyncDir(filepath.Join(dir, "keys")); err != nil {
		return err
	}
	return fsutil.SyncDir(dir)
}

// ReadMutableFiles reads the onion keys (with .old when present), state and
// directory documents from the tor data directory. Symlinks and non-regular
// files are refused. A directory document that is too large, or that tor has
// not written whole, is left behind and named in skipped: the next boot
// fetches it anew, and the keys still go.
func ReadMutableFiles(dir string) (files protocol.Files, skipped []string, err error) {
	files = protocol.Files{}
	for _, name := range protocol.MutableFiles {
		p := filepath.Join(dir, filepath.FromSlash(name))
		data, err := readRegular(p, protocol.MaxSizeOf(name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			if protocol.IsDirectoryDocument(name) {
				skipped = append(skipped, fmt.Sprintf("%s (%v)", name, err))
				continue
			}
			return nil, nil, err
		}
		if protocol.IsDirectoryDocument(name) && protocol.CheckFiles(protocol.Files{name: data}, nil) != nil {
			skipped = append(skipped, name+" (not a directory document)")
			continue
		}
		files[name] = data
	}
	if err := protocol.CheckFiles(files, protocol.IsMutableFile); err != nil {
		return nil, nil, err
	}
	return files, skipped, nil
}

func readRegular(p string, limit int) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("%s is a symlink; refusing", p)
		}
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", p, limit)
	}
	return data, nil
}

const pushSecretFile = "push-secret"

func writePushSecret(dir string, secret []byte) error {
	if err := ensureDir(dir, os.Getuid(), os.Getgid()); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, pushSecretFile), secret, 0o600)
}

func readPushSecret(dir string) ([]byte, error) {
	data, err := readRegular(filepath.Join(dir, pushSecretFile), protocol.MaxTokenSize)
	if err != nil {
		return nil, fmt.Errorf("push secret (from this boot's key release): %w", err)
	}
	return data, nil
}
