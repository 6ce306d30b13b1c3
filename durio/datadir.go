package durio

import (
	"errors"
	"os"
)

// ErrDataDirInUse is returned by LockDataDir (and so by Serve and `durio
// snapshot restore`) when another process holds the data folder's lock.
var ErrDataDirInUse = errors.New("durio: the data folder is in use by another process")

// dataDirLockFile is the file in a data folder that LockDataDir locks; it
// holds the pid of the process that last took the lock.
const dataDirLockFile = "durio.lock"

// DataDirLock is an exclusive lock on a data folder (LockDataDir).
type DataDirLock struct {
	f *os.File // nil where there is no lock (not Linux or macOS)
}

// LockDataDir takes an exclusive lock on the data folder dir, creating the
// folder if need be; it fails with ErrDataDirInUse, naming the holder's pid, while
// another process holds it. Two replicas given the same --data-dir would
// write one raft log and one vote between them, so a replica could vote
// twice in a term or lose acknowledged entries: Serve takes this lock
// before it opens the store, and `durio snapshot restore` before it writes
// one, so a second process refuses to start instead.
//
// The lock lasts until Release, or until the process ends, however it ends
// (a crash leaves nothing to clean up; the file stays, unlocked), and also
// while the persister plugin that OpenStore started with WithDataDirLock
// runs: the plugin, which writes the store, inherits the lock, so a
// replica killed by a signal does not free its folder before its plugin
// has gone too. The lock is an advisory flock(2) on Linux and macOS;
// elsewhere LockDataDir does nothing.
func LockDataDir(dir string) (*DataDirLock, error) {
	f, err := lockDataDir(dir)
	if err != nil {
		return nil, err
	}
	return &DataDirLock{f: f}, nil
}

// Release gives up this process's hold on the lock (a plugin that
// inherited it holds it until it exits). Releasing twice does nothing.
func (l *DataDirLock) Release() {
	if l != nil && l.f != nil {
		_ = l.f.Close() // closing the last descriptor drops the lock
		l.f = nil
	}
}
