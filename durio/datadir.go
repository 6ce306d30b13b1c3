package durio

import "errors"

// ErrDataDirInUse is returned by LockDataDir (and so by Serve and `durio
// snapshot restore`) when another process holds the data folder's lock.
var ErrDataDirInUse = errors.New("durio: the data folder is in use by another process")

// dataDirLockFile is the file in a data folder that LockDataDir locks; it
// holds the pid of the process that last took the lock.
const dataDirLockFile = "durio.lock"

// LockDataDir takes an exclusive lock on the data folder dir, which must
// exist, and returns the function that releases it; it fails with
// ErrDataDirInUse, naming the holder's pid, while another process holds
// it. Two replicas given the same --data-dir would write one raft log and
// one vote between them, so a replica could vote twice in a term or lose
// acknowledged entries: Serve takes this lock before it opens the store,
// and `durio snapshot restore` before it writes one, so a second process
// refuses to start instead. The operating system drops the lock when the
// process ends, however it ends, so a crash leaves nothing to clean up
// (the file stays, unlocked). The lock is an advisory flock(2) on Linux and
// macOS; elsewhere LockDataDir does nothing.
func LockDataDir(dir string) (release func(), err error) { return lockDataDir(dir) }
