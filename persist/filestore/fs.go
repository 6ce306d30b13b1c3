package filestore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// FS is the file system a Store does all its I/O through, so tests can drop
// unsynced writes and inject errors (see MemFS). Names are slash or OS paths
// as filepath builds them.
type FS interface {
	// MkdirAll creates dir and its parents; an existing dir is fine.
	MkdirAll(dir string) error
	// Create creates name, or truncates it if it exists, for writing.
	Create(name string) (File, error)
	// OpenAppend opens the existing file name for writing at its end.
	OpenAppend(name string) (File, error)
	// ReadFile returns the whole content of name. A missing file yields an
	// error matching fs.ErrNotExist.
	ReadFile(name string) ([]byte, error)
	// Open opens the existing file name for reading. The handle reads the
	// file it opened even after another file is renamed over name or name
	// is removed, as on POSIX file systems. A missing file yields an error
	// matching fs.ErrNotExist.
	Open(name string) (Reader, error)
	// ReadDir returns the names (not paths) of the files in dir, sorted.
	ReadDir(dir string) ([]string, error)
	// Truncate cuts name to size bytes. The change is durable only after a
	// Sync of the file.
	Truncate(name string, size int64) error
	// Rename atomically replaces newname with oldname. It is durable only
	// after SyncDir of the folder.
	Rename(oldname, newname string) error
	// Remove deletes name. It is durable only after SyncDir of the folder.
	Remove(name string) error
	// SyncDir makes the folder's entries (creations, renames, removals)
	// durable.
	SyncDir(dir string) error
}

// File is a file open for writing.
type File interface {
	// Write appends p.
	Write(p []byte) (int, error)
	// Sync makes everything written so far durable.
	Sync() error
	// Close closes the file; it does not sync.
	Close() error
}

// Reader is a file open for reading.
type Reader interface {
	// ReadAt reads len(p) bytes from offset off, as io.ReaderAt.
	ReadAt(p []byte, off int64) (int, error)
	// Size is the file's length when it was opened.
	Size() int64
	// Close closes the file.
	Close() error
}

// OSFS is the FS of the operating system.
type OSFS struct{}

var _ FS = OSFS{}

// MkdirAll implements FS.
func (OSFS) MkdirAll(dir string) error { return os.MkdirAll(dir, 0o750) }

// Create implements FS.
func (OSFS) Create(name string) (File, error) {
	return os.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
}

// OpenAppend implements FS.
func (OSFS) OpenAppend(name string) (File, error) {
	return os.OpenFile(name, os.O_APPEND|os.O_WRONLY, 0)
}

// ReadFile implements FS.
func (OSFS) ReadFile(name string) ([]byte, error) { return os.ReadFile(name) }

// Open implements FS.
func (OSFS) Open(name string) (Reader, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return osReader{f: f, size: fi.Size()}, nil
}

type osReader struct {
	f    *os.File
	size int64
}

func (r osReader) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }
func (r osReader) Size() int64                             { return r.size }
func (r osReader) Close() error                            { return r.f.Close() }

// ReadDir implements FS.
func (OSFS) ReadDir(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, de := range des {
		if de.Type().IsRegular() {
			names = append(names, de.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// Truncate implements FS.
func (OSFS) Truncate(name string, size int64) error { return os.Truncate(name, size) }

// Rename implements FS.
func (OSFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

// Remove implements FS.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// SyncDir implements FS.
func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// isNotExist reports whether err says a file does not exist, for any FS.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// join builds a path inside the store's folder.
func join(dir, name string) string { return filepath.Join(dir, name) }
