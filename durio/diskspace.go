package durio

import (
	"errors"
	"fmt"
	"time"
)

// lowDiskSpace is the free space below which a store failure is put down to
// a full disk: badger's next memtable flush or value-log file needs a few
// MiB at once, and the file store's next snapshot as much as the state.
const lowDiskSpace = 64 << 20

// freeSpace returns the bytes this process may still write on the file
// system that holds dir, and whether it could tell (a variable for tests).
var freeSpace = statFree

// errDiskFull is matched by a store failure that diskFull explained.
var errDiskFull = errors.New("durio: the data folder's disk is full")

// diskFullError is a store failure on a file system with less than
// lowDiskSpace free.
type diskFullError struct {
	err  error
	dir  string
	free uint64
}

func (e *diskFullError) Error() string {
	return fmt.Sprintf("%v (only %d KiB free on the file system of %s: the disk is full or nearly; make room, then restart the replica)",
		e.err, e.free>>10, e.dir)
}

func (e *diskFullError) Unwrap() []error { return []error{e.err, errDiskFull} }

// diskFull adds to err, a store failure, that the data folder's file system
// is (nearly) full, when it is: a memory-mapped store (badger) dies of
// SIGBUS on a full disk, and its plugin's crash says nothing of space.
func diskFull(dir string, err error) error {
	if dir == "" || err == nil {
		return err
	}
	type answer struct {
		free uint64
		ok   bool
	}
	// statfs of a file system whose disk hangs (NFS, FUSE) may hang too:
	// the failure is then reported without it rather than not at all.
	ch := make(chan answer, 1)
	stat := freeSpace
	go func() {
		free, ok := stat(dir)
		ch <- answer{free, ok}
	}()
	select {
	case a := <-ch:
		if a.ok && a.free < lowDiskSpace {
			return &diskFullError{err: err, dir: dir, free: a.free}
		}
	case <-time.After(statfsWait):
	}
	return err
}

// statfsWait bounds diskFull's wait for the file system's free space.
const statfsWait = time.Second
