//go:build unix

package durio

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("durio: the data folder: %w", err)
	}
	path := filepath.Join(dir, dataDirLockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("durio: lock the data folder: %w", err)
	}
	// Opened close-on-exec (as Go opens every file): a process this one
	// starts inherits the lock only if given it (the persister plugin is:
	// WithDataDirLock).
	if err := flock(f); err != nil {
		holder := ""
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b := make([]byte, 32)
			n, _ := f.ReadAt(b, 0)
			if pid, perr := strconv.Atoi(string(bytes.TrimSpace(b[:n]))); perr == nil && pid > 0 {
				holder = fmt.Sprintf(" (process %d holds %s)", pid, path)
			}
			err = fmt.Errorf("%w: %s%s", ErrDataDirInUse, dir, holder)
		} else {
			err = fmt.Errorf("durio: lock the data folder %s: %w", dir, err)
		}
		f.Close()
		return nil, err
	}
	// The pid is for the message above only; failing to write it is no
	// reason not to run.
	if f.Truncate(0) == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// flock takes an exclusive, non-blocking flock on f, retrying on EINTR.
func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != syscall.EINTR {
			return err
		}
	}
}
