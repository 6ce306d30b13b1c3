package badgerstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// One sync per commit.
//
// With badger's SyncWrites, every commit syncs two files: the current
// value-log file (always, even when the commit wrote nothing to it) and
// then the memtable's write-ahead log. Each is an msync, and on a
// journalling file system each costs a disk cache flush, even the one of a
// file with nothing dirty; that doubled the store's Append latency against
// one fsync (docs/benchmarks.md, "The store path").
//
// So the store opens badger without SyncWrites and makes each commit
// durable itself (syncer.sync, after every commit): a commit whose values
// all stay in the LSM tree (below ValueThresholdBytes: every log entry of
// usual size) lives only in the memtable's write-ahead log, so one
// fdatasync of that file makes it durable. A commit that wrote to the value
// log (an entry of ValueThresholdBytes or more, snapshot chunks) also syncs
// the newest value-log files. What badger writes on its
// own is durable without our syncs: a flushed memtable becomes a table that
// badger syncs, with its manifest and folder, before it deletes the
// write-ahead log.
//
// badger names its write-ahead logs NNNNN.mem in sequence, creates (and
// syncs the folder of) the next one when the current is full, and at open
// creates a new one after the highest. syncer follows that: it keeps the
// newest file open and, before each sync, checks whether the next one
// exists; if so it syncs every file it passes on the way, so that a run of
// commits split over two files is durable in order. Value-log GC rewrites
// values and deletes files, which is crash-safe only with badger's own
// synchronous writes, so it runs only in a handle opened that way
// (reclaimValueLog), at Open and, with the store's handle closed, after
// large snapshots (reopenForGC); never under the store's own handle.
type syncer struct {
	dir string
	fid int      // the newest write-ahead log's number
	wal *os.File // that file, open for fsync

	// Counts, for tests: fsyncs of write-ahead logs and of value-log files.
	walSyncs, vlogSyncs int
}

const (
	walExt  = ".mem"
	vlogExt = ".vlog"
)

// badger's names for its write-ahead logs and value-log files.
func walName(fid int) string  { return fmt.Sprintf("%05d%s", fid, walExt) }
func vlogName(fid int) string { return fmt.Sprintf("%06d%s", fid, vlogExt) }

// newSyncer finds the write-ahead log badger writes to after Open (the
// highest-numbered one).
func newSyncer(dir string) (*syncer, error) {
	fids, err := fileNumbers(dir, walExt)
	if err != nil {
		return nil, err
	}
	if len(fids) == 0 {
		return nil, fmt.Errorf("badgerstore: no %s file in %s after open", walExt, dir)
	}
	s := &syncer{dir: dir, fid: fids[len(fids)-1]}
	if s.wal, err = os.Open(filepath.Join(dir, walName(s.fid))); err != nil {
		return nil, fmt.Errorf("badgerstore: open write-ahead log: %w", err)
	}
	return s, nil
}

// sync makes every commit so far durable: the write-ahead log (following
// badger to newer ones) and, if valueLog, the newest value-log files.
func (s *syncer) sync(valueLog bool) error {
	for {
		name := filepath.Join(s.dir, walName(s.fid+1))
		if ok, err := exists(name); err != nil || !ok {
			if err != nil {
				return fmt.Errorf("badgerstore: write-ahead log: %w", err)
			}
			break
		}
		next, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("badgerstore: open write-ahead log: %w", err)
		}
		// badger moved on: the old file may hold commits not yet synced
		// (a multi-transaction write spanning the rotation).
		err = datasync(s.wal)
		s.walSyncs++
		_ = s.wal.Close()
		s.wal, s.fid = next, s.fid+1
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("badgerstore: sync write-ahead log: %w", err)
		}
	}
	s.walSyncs++
	if err := datasync(s.wal); err != nil {
		return fmt.Errorf("badgerstore: sync write-ahead log: %w", err)
	}
	if valueLog {
		return s.syncValueLog()
	}
	return nil
}

// syncValueLog syncs the two newest value-log files: a commit's values go
// to one file, and badger may have started the next one right after it.
func (s *syncer) syncValueLog() error {
	fids, err := fileNumbers(s.dir, vlogExt)
	if err != nil {
		return err
	}
	for _, fid := range fids[max(0, len(fids)-2):] {
		s.vlogSyncs++
		if err := syncFile(filepath.Join(s.dir, vlogName(fid))); err != nil {
			return fmt.Errorf("badgerstore: sync value log: %w", err)
		}
	}
	return nil
}

func (s *syncer) close() error { return s.wal.Close() }

func syncFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// fileNumbers returns the numbers of the files named NUMBER+ext in dir,
// sorted.
func fileNumbers(dir, ext string) ([]int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("badgerstore: list %s: %w", dir, err)
	}
	var fids []int
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ext); ok {
			if fid, err := strconv.Atoi(n); err == nil {
				fids = append(fids, fid)
			}
		}
	}
	slices.Sort(fids)
	return fids, nil
}

// valueLogBytes is the size of badger's value-log files in dir but the
// newest, which badger writes to (preallocated while open) and never
// collects.
func valueLogBytes(dir string) int64 {
	fids, err := fileNumbers(dir, vlogExt)
	if err != nil || len(fids) == 0 {
		return 0
	}
	var total int64
	for _, fid := range fids[:len(fids)-1] {
		if fi, err := os.Stat(filepath.Join(dir, vlogName(fid))); err == nil {
			total += fi.Size()
		}
	}
	return total
}

// gcPasses bounds the value-log GC at Open: each pass rewrites one file.
const gcPasses = 16

// reclaimValueLog gives back the space of dead values in badger's value
// log (entries of ValueThresholdBytes or more that a snapshot has since
// covered, and chunks of replaced snapshots).
// GC rewrites the live values of a file and deletes it, which survives a
// machine crash only if the rewrite was synced first, so it runs here, in a
// handle opened with badger's synchronous writes, while the store's own is closed.
// It runs only when the value log holds at least one file's worth
// (ValueLogFileBytes) besides the file badger writes to, so that a store
// with little in its value log opens badger once.
func reclaimValueLog(dir string, o Options, levels int) error {
	if valueLogBytes(dir) < o.ValueLogFileBytes {
		return nil
	}
	db, err := badger.Open(o.badger(dir, levels).WithSyncWrites(!o.NoSync))
	if err != nil {
		return fmt.Errorf("badgerstore: open %s for value-log GC: %w", dir, err)
	}
	for range gcPasses {
		if err = db.RunValueLogGC(0.5); err != nil {
			break
		}
	}
	if errors.Is(err, badger.ErrNoRewrite) {
		err = nil
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("badgerstore: value-log GC: %w", err)
	}
	return nil
}
