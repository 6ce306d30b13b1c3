package filestore

import (
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
)

// Op names an FS operation, for fault injection in MemFS.
type Op string

// The operations MemFS can fail.
const (
	OpCreate   Op = "create"
	OpOpen     Op = "open"
	OpRead     Op = "read"
	OpReadDir  Op = "readdir"
	OpWrite    Op = "write"
	OpSync     Op = "sync"
	OpTruncate Op = "truncate"
	OpRename   Op = "rename"
	OpRemove   Op = "remove"
	OpSyncDir  Op = "syncdir"
)

// MemFS is an in-memory FS that remembers what was synced, for tests. Crash
// returns the FS a machine crash would leave: file contents as of their last
// Sync (optionally plus a torn part of what followed) and folder entries as of
// their folder's last SyncDir. SetFault injects errors. Safe for concurrent
// use.
type MemFS struct {
	mu      sync.Mutex             // guards every field below and every inode
	dirs    map[string]bool        // folders (always durable)
	names   map[string]*memInode   // the current namespace
	durable map[string]*memInode   // the namespace a crash would leave
	fault   func(Op, string) error // nil, or decides an error per operation
}

type memInode struct {
	data   []byte // current content
	synced []byte // content as of the last Sync
}

var _ FS = (*MemFS)(nil)

// NewMemFS returns an empty MemFS.
func NewMemFS() *MemFS {
	return &MemFS{dirs: map[string]bool{}, names: map[string]*memInode{}, durable: map[string]*memInode{}}
}

// SetFault installs f, called before each operation with the operation and
// the file or folder name; a non-nil result fails the operation with that
// error and changes nothing. nil removes the fault.
func (m *MemFS) SetFault(f func(op Op, name string) error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fault = f
}

// Crash returns the FS a power loss would leave now: every file's content as
// of its last Sync and every folder's entries as of its last SyncDir. If rng
// is not nil, each file also keeps a random prefix of the bytes written
// after its last Sync (a torn write); with nil, all of them are dropped. m
// itself is unchanged.
func (m *MemFS) Crash(rng *rand.Rand) *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := NewMemFS()
	for d := range m.dirs {
		out.dirs[d] = true
	}
	copied := map[*memInode]*memInode{}
	for name, ino := range m.durable {
		c, ok := copied[ino]
		if !ok {
			data := slices.Clone(ino.synced)
			if rng != nil && len(ino.data) > len(ino.synced) && string(ino.data[:len(ino.synced)]) == string(ino.synced) {
				extra := ino.data[len(ino.synced):]
				data = append(data, extra[:rng.IntN(len(extra)+1)]...)
			}
			c = &memInode{data: data, synced: slices.Clone(data)}
			copied[ino] = c
		}
		out.names[name] = c
		out.durable[name] = c
	}
	return out
}

// Files returns the names of all files, sorted.
func (m *MemFS) Files() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for n := range m.names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Corrupt XORs the byte at offset off of file name with mask, as a disk
// error would, durably.
func (m *MemFS) Corrupt(name string, off int64, mask byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, ok := m.names[name]
	if !ok || off < 0 || off >= int64(len(ino.data)) {
		return fmt.Errorf("memfs: corrupt %s at %d: out of range", name, off)
	}
	ino.data[off] ^= mask
	if off < int64(len(ino.synced)) {
		ino.synced[off] ^= mask
	}
	return nil
}

// Size returns the current length of file name, or -1 if it does not exist.
func (m *MemFS) Size(name string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ino, ok := m.names[name]; ok {
		return int64(len(ino.data))
	}
	return -1
}

func (m *MemFS) check(op Op, name string) error {
	if m.fault != nil {
		if err := m.fault(op, name); err != nil {
			return &fs.PathError{Op: string(op), Path: name, Err: err}
		}
	}
	return nil
}

func (m *MemFS) parentExists(name string) error {
	if d := filepath.Dir(name); !m.dirs[d] {
		return &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return nil
}

// MkdirAll implements FS.
func (m *MemFS) MkdirAll(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		m.dirs[d] = true
		if p := filepath.Dir(d); p == d {
			return nil
		}
	}
}

// Create implements FS.
func (m *MemFS) Create(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(OpCreate, name); err != nil {
		return nil, err
	}
	if err := m.parentExists(name); err != nil {
		return nil, err
	}
	ino, ok := m.names[name]
	if ok {
		ino.data = nil
	} else {
		ino = &memInode{}
		m.names[name] = ino
	}
	return &memFile{fs: m, ino: ino, name: name}, nil
}

// OpenAppend implements FS.
func (m *MemFS) OpenAppend(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, err := m.existing(OpOpen, name)
	if err != nil {
		return nil, err
	}
	return &memFile{fs: m, ino: ino, name: name}, nil
}

// ReadFile implements FS.
func (m *MemFS) ReadFile(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, err := m.existing(OpRead, name)
	if err != nil {
		return nil, err
	}
	return slices.Clone(ino.data), nil
}

// existing returns the inode of name, which must exist, once op on it
// passes the injected faults; m.mu must be held.
func (m *MemFS) existing(op Op, name string) (*memInode, error) {
	if err := m.check(op, name); err != nil {
		return nil, err
	}
	ino, ok := m.names[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return ino, nil
}

// Open implements FS.
func (m *MemFS) Open(name string) (Reader, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, err := m.existing(OpOpen, name)
	if err != nil {
		return nil, err
	}
	return &memReader{fs: m, ino: ino, name: name, size: int64(len(ino.data))}, nil
}

// ReadDir implements FS.
func (m *MemFS) ReadDir(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(OpReadDir, dir); err != nil {
		return nil, err
	}
	dir = filepath.Clean(dir)
	if !m.dirs[dir] {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	var out []string
	for n := range m.names {
		if filepath.Dir(n) == dir {
			out = append(out, filepath.Base(n))
		}
	}
	slices.Sort(out)
	return out, nil
}

// Truncate implements FS.
func (m *MemFS) Truncate(name string, size int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(OpTruncate, name); err != nil {
		return err
	}
	ino, ok := m.names[name]
	if !ok {
		return &fs.PathError{Op: "truncate", Path: name, Err: fs.ErrNotExist}
	}
	if size < int64(len(ino.data)) {
		ino.data = ino.data[:size:size]
	} else {
		ino.data = append(ino.data, make([]byte, size-int64(len(ino.data)))...)
	}
	return nil
}

// Rename implements FS.
func (m *MemFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(OpRename, oldname); err != nil {
		return err
	}
	ino, ok := m.names[oldname]
	if !ok {
		return &fs.PathError{Op: "rename", Path: oldname, Err: fs.ErrNotExist}
	}
	if err := m.parentExists(newname); err != nil {
		return err
	}
	delete(m.names, oldname)
	m.names[newname] = ino
	return nil
}

// Remove implements FS.
func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(OpRemove, name); err != nil {
		return err
	}
	if _, ok := m.names[name]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(m.names, name)
	return nil
}

// SyncDir implements FS.
func (m *MemFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(OpSyncDir, dir); err != nil {
		return err
	}
	dir = filepath.Clean(dir)
	for n := range m.durable {
		if filepath.Dir(n) == dir {
			delete(m.durable, n)
		}
	}
	for n, ino := range m.names {
		if filepath.Dir(n) == dir {
			m.durable[n] = ino
		}
	}
	return nil
}

type memFile struct {
	fs     *MemFS
	ino    *memInode
	name   string
	closed bool // guarded by fs.mu
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return 0, fs.ErrClosed
	}
	if err := f.fs.check(OpWrite, f.name); err != nil {
		return 0, err
	}
	f.ino.data = append(f.ino.data, p...)
	return len(p), nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return fs.ErrClosed
	}
	if err := f.fs.check(OpSync, f.name); err != nil {
		return err
	}
	f.ino.synced = slices.Clone(f.ino.data)
	return nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	f.closed = true
	return nil
}

// memReader reads an inode, wherever its name has gone since it was opened.
type memReader struct {
	fs     *MemFS
	ino    *memInode
	name   string
	size   int64
	closed bool // guarded by fs.mu
}

func (r *memReader) ReadAt(p []byte, off int64) (int, error) {
	r.fs.mu.Lock()
	defer r.fs.mu.Unlock()
	if r.closed {
		return 0, fs.ErrClosed
	}
	if err := r.fs.check(OpRead, r.name); err != nil {
		return 0, err
	}
	if off >= int64(len(r.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, r.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (r *memReader) Size() int64 { return r.size }

func (r *memReader) Close() error {
	r.fs.mu.Lock()
	defer r.fs.mu.Unlock()
	r.closed = true
	return nil
}
