//go:build !linux

package badgerstore

import (
	"errors"
	"io/fs"
	"os"
)

// datasync flushes f (fsync; fdatasync is Linux's).
func datasync(f *os.File) error { return f.Sync() }

// exists reports whether a file named name exists.
func exists(name string) (bool, error) {
	_, err := os.Stat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
