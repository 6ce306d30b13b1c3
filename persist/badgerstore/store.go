// Package badgerstore is a durable persist.Store on
// github.com/dgraph-io/badger/v4, durable before each call returns with one
// fsync per commit (sync.go), sized by default for a small machine (a 1 GB
// Raspberry Pi).
//
// Keys: "h" the hard state; "m" the snapshot metadata; "c"+gen+n the
// snapshot data in chunks of generation gen; "e"+first+'r' (big-endian) a
// run of consecutive log entries, one key per Append (runs.go, which also
// has the format story: stores written with one key per entry, "e"+index,
// still open). A batch that fits in one badger transaction is written
// atomically; a larger one is written in several, ordered so that any
// prefix of them is a valid state (hard state term and vote first, then the
// replaced runs deleted from the end backwards and the run the batch starts
// inside cut to its head, then the new runs in order, then the final hard
// state). A snapshot is written in chunks under a new generation
// and made current by one small transaction; its chunks are above the
// value threshold, so they go to badger's value log, whose dead space is
// collected as reopenForGC says. Every transaction is synced before the
// next one starts.
//
// Where things live: store.go (Options, Open, the persist.Backend that
// reads and writes the keys; the Store methods and the bookkeeping every
// store shares come from persist.Base), runs.go (the log's layout), sync.go (one sync per commit, and
// value-log GC at open), verify.go (checking badger's files before it opens
// them), register.go (the store's registration as "badger").
package badgerstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/ruaft/ruaft/persist"
)

// Options configures a Store. Start from DefaultOptions.
type Options struct {
	// NoSync turns off synchronous writes: faster, and the last writes are
	// lost in a machine crash. For tests and benchmarks only.
	NoSync bool
	// MemTableBytes is the size of one memtable, in bytes; it also sets the
	// table sizes (see DefaultOptions). A transaction holds at most 15% of
	// it, so batches and snapshot chunks are split to fit. Minimum 1 MiB.
	MemTableBytes int64
	// ValueLogFileBytes is the size of one value log file, in bytes. Keep it
	// small on 32-bit machines (address space).
	ValueLogFileBytes int64
	// ValueThresholdBytes: values of this size or more go to the value log.
	// Must stay below 15% of MemTableBytes.
	ValueThresholdBytes int64
	// BlockCacheBytes and IndexCacheBytes size badger's caches, in bytes;
	// 0 means none (see DefaultOptions).
	BlockCacheBytes int64
	IndexCacheBytes int64
	// Logger receives badger's warnings and errors; nil discards them.
	Logger *slog.Logger
}

// DefaultOptions are sized for a small machine (a 1 GB Raspberry Pi running
// a replica next to other things), where a Raft log is short-lived: entries
// are written once, read back only at startup, and deleted by the next
// snapshot. Measured with BenchmarkPluginMemory (README, "Persister
// plugins"), badger's memory is almost all table building and memtables,
// both proportional to MemTableBytes, so that is the main knob:
//
//   - MemTableBytes 2 MiB (badger's default: 64 MiB). A memtable costs its
//     size twice (the skiplist arena on the heap and the mmapped WAL), at
//     most two exist (NumMemtables 2), and every flush builds a table in
//     buffers that badger's allocator pool keeps (up to eight, each twice
//     the table size rounded up to a power of two). A heap profile of a
//     plugin under a 64-client put load had ~15 MiB live: 12 MiB three such
//     4 MiB buffers (a flush and two compactions at once; the pool frees
//     one only after 2 s without a table build, never under steady
//     writes), 2.6 MiB the memtable's arena. A transaction holds at most 15% of it (~300 KiB,
//     about 1,000 entries of 256 bytes); larger batches go in steps (see the
//     package doc). 1 MiB saves a few MiB more but flushes and compacts
//     twice as often, which showed as stalls at 256-entry batches; measured
//     again with the plugin's default memory limit (persist/plugin
//     pluginRuntimeDefaults, GOMEMLIMIT=40MiB): peak 68-71 MiB instead of
//     72-75 and the same anonymous memory (31-34 MiB), for 3-10% more plugin
//     CPU per Append (BenchmarkPluginMemory, three runs each), so 2 MiB stays.
//     With that limit the Go heap, not badger's settings, decides most of
//     the plugin's memory: without it the same runs held 47-62 MiB
//     anonymous, 111-122 MiB peak. The plugin's GOGC=25 (same place) keeps
//     the heap near the live ~15 MiB (README, "Persister plugins").
//   - Tables: two LSM levels (minLevels), tables of MemTableBytes
//     (BaseTableSize and BaseLevelSize), 64 KiB blocks (blockBytes), two L0
//     tables before compaction and four before writes stall, two
//     compactors (badger's minimum). With the log in runs (runs.go) this
//     halved the plugin's CPU per Append against one key per entry, seven
//     levels, tables of MemTableBytes/4 and 4 KiB blocks
//     (BenchmarkPluginMemory, README "Persister plugins"): most of badger's
//     work on a log is flushing and compacting keys that are deleted soon
//     after, and each level a key passes through rewrites it once more.
//   - No compression (badger's default: Snappy): log entries are read once,
//     compressing them costs CPU on every flush and compaction, and
//     compression starts 2×GOMAXPROCS goroutines with buffers per table.
//   - No block cache and no index cache (0): without compression or
//     encryption badger reads blocks straight from the mmapped tables, and
//     reads happen only at startup; a cache would hold memory for nothing.
//   - ValueThresholdBytes 64 KiB: entries below it live in the LSM tree only
//     (written once, to the memtable's WAL, which is the one file an Append
//     syncs); larger entries and snapshot chunks go to the value log, in
//     16 MiB files (ValueLogFileBytes; mmapped, so keep them small on 32-bit
//     machines), and their commits sync it too. Dead value-log space is
//     collected when the store opens and after every 64 MiB of value-log
//     growth (reopenForGC).
//   - One version per key, no conflict detection, no metrics, writes synced
//     by the store (see NoSync).
//
// One sync per commit: badger runs without its own synchronous writes
// (which flush both its write-ahead log and its value log on every commit,
// two disk cache flushes); the store fdatasyncs the write-ahead log after
// each commit itself, and the value log too when a commit wrote to it (an
// entry of ValueThresholdBytes or more, or snapshot chunks). See sync.go.
func DefaultOptions() Options {
	return Options{
		MemTableBytes:       2 << 20,
		ValueLogFileBytes:   16 << 20,
		ValueThresholdBytes: 64 << 10,
		BlockCacheBytes:     0,
		IndexCacheBytes:     0,
	}
}

// ErrInvalidOptions is returned by Open and Set for a bad option.
var ErrInvalidOptions = errors.New("badgerstore: invalid options")

// Validate reports the first invalid field.
func (o Options) Validate() error {
	switch {
	case o.MemTableBytes < 1<<20:
		return fmt.Errorf("%w: MemTableBytes %d is below 1 MiB", ErrInvalidOptions, o.MemTableBytes)
	case o.ValueLogFileBytes < 1<<20 || o.ValueLogFileBytes >= 2<<30:
		return fmt.Errorf("%w: ValueLogFileBytes %d is outside [1 MiB, 2 GiB)", ErrInvalidOptions, o.ValueLogFileBytes)
	case o.ValueThresholdBytes < 1 || o.ValueThresholdBytes >= o.MemTableBytes*15/100:
		return fmt.Errorf("%w: ValueThresholdBytes %d must be in [1, 15%% of MemTableBytes)", ErrInvalidOptions, o.ValueThresholdBytes)
	case o.BlockCacheBytes < 0:
		return fmt.Errorf("%w: BlockCacheBytes %d is negative", ErrInvalidOptions, o.BlockCacheBytes)
	case o.IndexCacheBytes < 0:
		return fmt.Errorf("%w: IndexCacheBytes %d is negative", ErrInvalidOptions, o.IndexCacheBytes)
	}
	return nil
}

// Set sets the option named name (memtable_bytes, value_log_file_bytes,
// value_threshold_bytes, block_cache_bytes, index_cache_bytes) from its
// decimal value, as passed through a plugin's options.
func (o *Options) Set(name, value string) error {
	var field *int64
	switch name {
	case "memtable_bytes":
		field = &o.MemTableBytes
	case "value_log_file_bytes":
		field = &o.ValueLogFileBytes
	case "value_threshold_bytes":
		field = &o.ValueThresholdBytes
	case "block_cache_bytes":
		field = &o.BlockCacheBytes
	case "index_cache_bytes":
		field = &o.IndexCacheBytes
	default:
		return fmt.Errorf("%w: unknown option %q", ErrInvalidOptions, name)
	}
	v, err := strconv.ParseInt(value, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: option %s: %v", ErrInvalidOptions, name, err)
	}
	*field = v
	return nil
}

// blockBytes is the size of badger's table blocks (its default: 4 KiB).
// A block holds whole keys, and the table builder grows a block's buffer
// by doubling it for each key that does not fit, keeping every buffer
// until the table is done: a log run of 16 KiB in 4 KiB blocks costs
// 60 KiB of buffers. Blocks of 64 KiB hold two runs or more (maxRunBytes),
// and the table index is smaller; the cost of large blocks, reading a
// whole block for one key, is paid only at startup, when the log is read
// in order anyway.
const blockBytes = 64 << 10

// minLevels is the number of LSM levels the store asks badger for: L0 and
// one more. A log's keys grow with its index and are deleted soon after,
// so with more levels every byte was rewritten into each level in turn
// and its tombstone after it, only to be dropped; with two, a flushed
// table is compacted once, into the last level, where tombstones and the
// entries they delete meet and both go. A store created with more levels
// (badger's default, 7, before) keeps the number it has tables in (see
// open).
const minLevels = 2

// badger returns badger's options for dir, with levels LSM levels.
func (o Options) badger(dir string, levels int) badger.Options {
	b := badger.DefaultOptions(dir).
		// The store syncs each commit itself, once (see sync.go).
		WithSyncWrites(false).
		WithMemTableSize(o.MemTableBytes).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(4).
		WithBaseTableSize(o.MemTableBytes).
		WithBaseLevelSize(o.MemTableBytes).
		WithMaxLevels(levels).
		WithBlockSize(blockBytes).
		WithBlockCacheSize(o.BlockCacheBytes).
		WithIndexCacheSize(o.IndexCacheBytes).
		WithValueLogFileSize(o.ValueLogFileBytes).
		WithValueThreshold(o.ValueThresholdBytes).
		WithCompression(options.None).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithMetricsEnabled(false).
		WithDetectConflicts(false).
		// Refuse to lie: verify every block and value-log value when it is
		// read, so a flipped byte fails a read instead of returning garbage.
		// Whole tables are verified before Open by verifyDir, not by
		// badger's OnTableRead: that would read them all a second time, and
		// it crashes the process on a damaged block.
		WithChecksumVerificationMode(options.OnBlockRead).
		WithVerifyValueChecksum(true).
		WithLogger(nil)
	if o.Logger != nil {
		b = b.WithLogger(slogLogger{o.Logger})
	}
	return b
}

// slogLogger routes badger's warnings and errors to slog and drops the rest.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Errorf(f string, a ...any)   { s.l.Error("badger: " + fmt.Sprintf(f, a...)) }
func (s slogLogger) Warningf(f string, a ...any) { s.l.Warn("badger: " + fmt.Sprintf(f, a...)) }
func (s slogLogger) Infof(string, ...any)        {}
func (s slogLogger) Debugf(string, ...any)       {}

var (
	keyHardState = []byte("h")
	keySnapMeta  = []byte("m")
	prefixChunk  = []byte("c")
	prefixEntry  = []byte("e")
)

func chunkKey(gen, n uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64([]byte{'c'}, gen), n)
}

// snapMeta is the value of keySnapMeta: five uint64s, then the raft
// configuration stored with the snapshot (absent in stores written before
// configurations were stored).
type snapMeta struct {
	index, term, gen, size, chunks uint64
	config                         []byte
}

const snapMetaBytes = 40

func (m snapMeta) encode() []byte {
	b := make([]byte, 0, snapMetaBytes+len(m.config))
	for _, v := range []uint64{m.index, m.term, m.gen, m.size, m.chunks} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return append(b, m.config...)
}

func encodeHardState(hs persist.HardState) []byte {
	b := binary.LittleEndian.AppendUint64(nil, hs.Term)
	b = binary.LittleEndian.AppendUint64(b, uint64(int64(hs.VotedFor)))
	return binary.LittleEndian.AppendUint64(b, hs.Commit)
}

// Store is a persist.Store on badger. See the package doc for the layout.
// The Store methods and the bookkeeping they share with the other stores
// (closed and failed states, the contract's checks, the Size figure) come
// from persist.Base; the database is written by the Backend below.
type Store struct {
	*persist.Base // Load, Append, SaveSnapshot, Size, Close; calls backend
}

var _ persist.Store = (*Store)(nil)

// backend is the Store's persist.Backend. Base calls it one method at a time,
// under its mutex.
type backend struct {
	dir  string
	opts Options
	// dbMu guards db against being closed or replaced (Release,
	// reopenForGC, both under Base's mutex) while a snapshot read that runs
	// without Base's mutex uses it (OpenSnapshot, which holds it shared).
	// The other methods run under Base's mutex and need not take it.
	dbMu      sync.RWMutex
	db        *badger.DB
	chunk     int        // snapshot chunk size, bytes
	atomicMax int64      // batches estimated below this go in one transaction
	threshold int64      // values of this size or more go to badger's value log
	syncer    *syncer    // makes each commit durable; nil with NoSync
	syncMu    sync.Mutex // serializes syncer's syncs (a staged snapshot's commits run beside the log's)
	gcAt      int64      // value-log bytes at which reopenForGC collects next
	gcReopens int        // how many times it did (for tests)
	snap      snapMeta   // the stored snapshot's metadata (generation, chunks)
	maxRun    int        // the largest run value written (maxRunBytes)
	levels    int        // LSM levels badger is opened with (minLevels)
	runs      []run      // the log's keys in index order (runs.go)
	// staging is the metadata of the snapshot staged last (StageSnapshot),
	// its chunk count filled in by its write, until its commit; one still
	// set at the next snapshot was abandoned (its caller gave up, or the
	// log was replaced under it): its chunks stay in the database, so the
	// next snapshot takes a newer generation and deletes them (abandoned)
	// when it switches.
	staging   *snapMeta
	abandoned []snapMeta

	// failCommit, if positive, makes that commit from now fail without
	// writing (1: the next), as a crash there would leave the store (tests).
	failCommit int
}

var errInjected = errors.New("badgerstore: injected commit failure")

// chunkBytes is the size of a snapshot chunk: half a transaction, at most
// 1 MiB. With the default options that is above the value threshold, so
// snapshot data goes to the value log, written once (in the LSM tree, a
// 32 MiB snapshot took 30 times as long, stalled by memtable flushes and
// compaction); a replaced snapshot's space comes back by value-log GC, see
// reopenForGC.
func chunkBytes(o Options) int {
	return int(min(o.MemTableBytes*15/100/2, 1<<20))
}

// commit commits txn and makes it durable (with valueLog, the commit wrote
// to the value log).
func (s *backend) commit(txn *badger.Txn, valueLog bool) error {
	if s.failCommit > 0 {
		if s.failCommit--; s.failCommit == 0 {
			return errInjected
		}
	}
	if err := txn.Commit(); err != nil {
		return err
	}
	if s.syncer == nil {
		return nil
	}
	// A staged snapshot's chunks commit beside the log's appends.
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	return s.syncer.sync(valueLog)
}

// toValueLog reports whether badger stores a value of n bytes in its value
// log rather than in the LSM tree.
func (s *backend) toValueLog(n int) bool { return int64(n) >= s.threshold }

var (
	_ persist.Backend        = (*backend)(nil)
	_ persist.SnapshotReader = (*backend)(nil)
	_ persist.SnapshotStager = (*backend)(nil)
)

// Open opens (or creates) the store in dir, recovers its state and deletes
// leftovers of an interrupted snapshot or compaction.
func Open(dir string, o Options) (*Store, error) {
	st, _, err := open(dir, o)
	return st, err
}

// open is Open, also returning the Backend (for tests).
func open(dir string, o Options) (*Store, *backend, error) {
	if err := o.Validate(); err != nil {
		return nil, nil, err
	}
	levels, err := verifyDir(dir)
	if err != nil {
		return nil, nil, err
	}
	maxBatch := o.MemTableBytes * 15 / 100
	s := &backend{dir: dir, opts: o, chunk: chunkBytes(o), atomicMax: maxBatch * 9 / 10,
		threshold: o.ValueThresholdBytes, maxRun: maxRunBytes(o.ValueThresholdBytes),
		// badger refuses (panics on) a table at a level it was not given.
		levels: max(minLevels, levels)}
	if err := s.openDB(); err != nil {
		return nil, nil, err
	}
	st, err := s.read(true)
	if err != nil {
		_ = s.Release()
		return nil, nil, err
	}
	return &Store{Base: persist.NewBase(s, &st)}, s, nil
}

// read reads the whole state and sets s.snap; with cleanup it also deletes
// entries the snapshot covers and chunks of other generations (leftovers of
// an interrupted SaveSnapshot).
func (s *backend) read(cleanup bool) (persist.State, error) {
	st := persist.State{HardState: persist.EmptyHardState}
	var meta snapMeta
	var stale [][]byte
	var runs []run
	err := s.db.View(func(txn *badger.Txn) error {
		v, err := getValue(txn, keyHardState, 24)
		if err != nil {
			return err
		}
		if v != nil {
			st.HardState = persist.HardState{Term: binary.LittleEndian.Uint64(v),
				VotedFor: int(int64(binary.LittleEndian.Uint64(v[8:]))), Commit: binary.LittleEndian.Uint64(v[16:])}
		}
		if st.Snapshot, meta, err = readSnapshot(context.Background(), txn, &stale); err != nil {
			return err
		}

		// The log after the snapshot, consecutive, in runs (runs.go).
		it2 := txn.NewIterator(badger.IteratorOptions{Prefix: prefixEntry})
		defer it2.Close()
		var es []persist.Entry
		var newest uint64 // the version of the last run taken into the log
		for it2.Rewind(); it2.Valid(); it2.Next() {
			item := it2.Item()
			k := item.Key()
			first, legacy, err := decodeKey(k)
			if err != nil {
				return err
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			es = es[:0]
			switch {
			case !legacy:
				if es, err = decodeRun(k, first, v, es); err != nil {
					return err
				}
			case len(v) < 9:
				return fmt.Errorf("%w: badger key %x: entry value of %d bytes", persist.ErrCorrupt, k, len(v))
			default:
				es = append(es, persist.Entry{Index: first, Term: binary.LittleEndian.Uint64(v),
					Type: persist.EntryType(v[8]), Data: v[9:]})
			}
			if len(es) == 0 {
				return fmt.Errorf("%w: badger key %x: empty run", persist.ErrCorrupt, k)
			}
			r := run{first: first, n: uint64(len(es)), legacy: legacy}
			// Along the log, versions never decrease: every write of a
			// run deletes or rewrites the runs after it. An older run
			// after a newer one is a replaced run that badger's value-log
			// GC wrote back (it rewrites a value at its own version even
			// when a newer tombstone exists, and a compaction may then
			// drop the tombstone): stale, like a run the snapshot covers.
			if r.last() <= meta.index || item.Version() < newest {
				stale = append(stale, item.KeyCopy(nil))
				continue
			}
			newest = item.Version()
			runs = append(runs, r)
			for _, e := range es {
				if e.Index <= meta.index {
					continue
				}
				if want := meta.index + 1 + uint64(len(st.Entries)); e.Index != want {
					return fmt.Errorf("%w: badger key %x: entry %d where %d belongs", persist.ErrCorrupt, k, e.Index, want)
				}
				st.Entries = append(st.Entries, e)
			}
		}
		return nil
	})
	if err != nil {
		return st, wrap("read", err)
	}
	if last := meta.index + uint64(len(st.Entries)); st.HardState.Commit > last {
		// The commit index never passes what was stored with it: entries
		// are missing.
		return st, fmt.Errorf("%w: badger: hard state commit index %d is past the last stored index %d",
			persist.ErrCorrupt, st.HardState.Commit, last)
	}
	s.snap = meta
	if !cleanup {
		return st, nil
	}
	s.runs = runs
	if len(stale) > 0 {
		w := s.newWriter()
		for _, k := range stale {
			w.delete(k)
		}
		if err := w.commit(); err != nil {
			return st, wrap("clean up", err)
		}
	}
	return st, nil
}

// getValue reads key's value, which must be size bytes long, or at least
// -size bytes if size is negative; nil if the key is absent.
func getValue(txn *badger.Txn, key []byte, size int) ([]byte, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, err
	}
	if (size >= 0 && len(v) != size) || (size < 0 && len(v) < -size) {
		return nil, fmt.Errorf("%w: badger key %q: %d bytes, want %d", persist.ErrCorrupt, key, len(v), size)
	}
	return v, nil
}

func wrap(op string, err error) error {
	if errors.Is(err, persist.ErrCorrupt) {
		return err
	}
	return fmt.Errorf("badgerstore: %s: %w", op, err)
}

// writer applies sets and deletes in order, committing a transaction
// whenever the next operation would not fit, so any prefix of its
// transactions is what a crash can leave.
type writer struct {
	s        *backend
	txn      *badger.Txn
	valueLog bool // txn wrote to the value log
	err      error
}

func (s *backend) newWriter() *writer { return &writer{s: s, txn: s.db.NewTransaction(true)} }

func (w *writer) do(op func(*badger.Txn) error) {
	if w.err != nil {
		return
	}
	err := op(w.txn)
	if errors.Is(err, badger.ErrTxnTooBig) {
		// Each transaction is durable before the next one starts: a crash
		// leaves a prefix of them.
		if w.err = w.s.commit(w.txn, w.valueLog); w.err != nil {
			return
		}
		w.txn, w.valueLog = w.s.db.NewTransaction(true), false
		err = op(w.txn)
	}
	w.err = err
}

// flush commits the transaction so far (durable, like every commit) and
// starts another.
func (w *writer) flush() {
	if w.err != nil {
		return
	}
	if w.err = w.s.commit(w.txn, w.valueLog); w.err == nil {
		w.txn, w.valueLog = w.s.db.NewTransaction(true), false
	}
}

func (w *writer) set(k, v []byte) {
	w.do(func(t *badger.Txn) error {
		w.valueLog = w.valueLog || w.s.toValueLog(len(v))
		return t.Set(k, v)
	})
}

func (w *writer) delete(k []byte) { w.do(func(t *badger.Txn) error { return t.Delete(k) }) }

// commit commits the last transaction and returns the first error.
func (w *writer) commit() error {
	if w.err != nil {
		w.txn.Discard()
		return w.err
	}
	return w.s.commit(w.txn, w.valueLog)
}

// Reload implements persist.Backend: Load returns what Open read the first
// time, and reads the database again for later calls.
func (s *backend) Reload(context.Context) (persist.State, error) { return s.read(false) }

// WriteAppend implements persist.Backend: one transaction (and one commit)
// for a batch that fits in one, else several in a crash-safe order.
func (s *backend) WriteAppend(t *persist.Tracker, hs persist.HardState, entries []persist.Entry) error {
	var (
		runs []run // what s.runs becomes
		del  []run // the runs the batch replaces
		head *run  // the run the batch starts inside, cut to what comes before
		hv   []byte
	)
	runs = s.runs
	if len(entries) > 0 {
		first := entries[0].Index
		p := runAt(s.runs, first)
		runs, del = s.runs[:p], s.runs[p:]
		if len(del) > 0 {
			runs = runs[:p:p] // appending must not overwrite del
		}
		if len(del) > 0 && del[0].first < first {
			r := run{first: del[0].first, n: first - del[0].first}
			v, err := s.head(del[0], first)
			if err != nil {
				return wrap("append", err)
			}
			head, hv, del = &r, v, del[1:]
			runs = append(runs, r)
		}
	}
	split := splitRuns(entries, s.maxRun)
	est := int64(64 + 32*len(del) + len(hv))
	for _, e := range entries {
		// badger counts key, value and a few bytes per key against the
		// transaction limit; a batch estimated too low fails with
		// ErrTxnTooBig before anything is written and goes in steps.
		est += int64(len(e.Data)) + runHeaderWire
	}
	est += int64(len(split)) * 32
	for _, es := range split {
		runs = append(runs, run{first: es[0].Index, n: uint64(len(es))})
	}
	var err error
	if est <= s.atomicMax {
		err = s.appendAtomic(hs, del, head, hv, split)
	}
	if est > s.atomicMax || errors.Is(err, badger.ErrTxnTooBig) {
		err = s.appendInSteps(hs, del, head, hv, split, t.HardState().Commit)
	}
	if err != nil {
		return wrap("append", err)
	}
	s.runs = runs
	return nil
}

// head returns the value of run r cut to its entries before index i.
func (s *backend) head(r run, i uint64) ([]byte, error) {
	var v []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(r.key())
		if err != nil {
			return err
		}
		if v, err = item.ValueCopy(nil); err != nil {
			return err
		}
		es, err := decodeRun(r.key(), r.first, v, nil)
		if err != nil {
			return err
		}
		if uint64(len(es)) < i-r.first {
			return fmt.Errorf("%w: badger key %x: run of %d entries, %d expected", persist.ErrCorrupt, r.key(), len(es), r.n)
		}
		v = encodeRun(es[:i-r.first])
		return nil
	})
	return v, err
}

// appendAtomic writes the batch in one transaction: the runs it replaces
// deleted, the run it starts inside cut (head, its value hv), its runs, the
// hard state.
func (s *backend) appendAtomic(hs persist.HardState, del []run, head *run, hv []byte, split [][]persist.Entry) error {
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	for _, r := range del {
		if err := txn.Delete(r.key()); err != nil {
			return err
		}
	}
	if head != nil {
		if err := txn.Set(head.key(), hv); err != nil {
			return err
		}
	}
	valueLog := false
	for _, es := range split {
		v := encodeRun(es)
		valueLog = valueLog || s.toValueLog(len(v))
		if err := txn.Set(run{first: es[0].Index}.key(), v); err != nil {
			return err
		}
	}
	if err := txn.Set(keyHardState, encodeHardState(hs)); err != nil {
		return err
	}
	return s.commit(txn, valueLog)
}

// appendInSteps writes a batch too large for one transaction so that every
// state a crash can leave is valid: the new term and vote first (with the
// old commit index), then the replaced runs deleted from the end
// backwards, then the run the batch starts inside cut to its head (each of
// those leaves a prefix of the old log), then the new runs in order, then
// the final hard state.
func (s *backend) appendInSteps(hs persist.HardState, del []run, head *run, hv []byte, split [][]persist.Entry, oldCommit uint64) error {
	w := s.newWriter()
	early := hs
	early.Commit = min(hs.Commit, oldCommit)
	w.set(keyHardState, encodeHardState(early))
	for i := len(del) - 1; i >= 0; i-- {
		w.delete(del[i].key())
	}
	if head != nil {
		w.set(head.key(), hv)
	}
	for _, es := range split {
		w.set(run{first: es[0].Index}.key(), encodeRun(es))
	}
	w.set(keyHardState, encodeHardState(hs))
	return w.commit()
}

// WriteSnapshot implements persist.Backend.
func (s *backend) WriteSnapshot(t *persist.Tracker, snap persist.Snapshot) error {
	if err := s.saveSnapshot(snap, t.SnapshotKeeps(snap)); err != nil {
		return wrap("save snapshot", err)
	}
	return nil
}

func (s *backend) saveSnapshot(snap persist.Snapshot, match bool) error {
	meta := s.nextSnapshot(snap)
	if err := s.writeChunks(&meta, snap.Data, false, !match, snap.Index); err != nil {
		return err
	}
	return s.switchSnapshot(snap, meta, match)
}

// StageSnapshot implements persist.SnapshotStager: the chunks of the new
// generation are written beside the log's appends (nothing reads them
// before the snapshot's metadata names their generation, and Open deletes
// them if it never does), and commit switches to them.
func (s *backend) StageSnapshot(_ *persist.Tracker, snap persist.Snapshot) (func() error, func(*persist.Tracker) error, error) {
	meta := s.nextSnapshot(snap)
	staged := &meta
	s.staging = staged
	write := func() error {
		// Held shared, as a snapshot read holds it: the database is not
		// closed or replaced under the write (nothing does while a
		// SaveSnapshot runs, but Release and reopenForGC say so).
		s.dbMu.RLock()
		defer s.dbMu.RUnlock()
		if err := s.writeChunks(staged, snap.Data, true, false, 0); err != nil {
			return wrap("save snapshot", err)
		}
		return nil
	}
	commit := func(*persist.Tracker) error {
		s.staging = nil
		if err := s.switchSnapshot(snap, *staged, true); err != nil {
			return wrap("save snapshot", err)
		}
		return nil
	}
	return write, commit, nil
}

// nextSnapshot is the metadata of snap as the next generation, before its
// chunks are written.
func (s *backend) nextSnapshot(snap persist.Snapshot) snapMeta {
	gen := s.snap.gen + 1
	if p := s.staging; p != nil {
		// Abandoned: never reuse its generation, whose chunks may
		// outnumber the new snapshot's.
		s.abandoned = append(s.abandoned, *p)
		s.staging = nil
	}
	if n := len(s.abandoned); n > 0 {
		gen = max(gen, s.abandoned[n-1].gen+1)
	}
	return snapMeta{index: snap.Index, term: snap.Term, gen: gen, size: uint64(len(snap.Data)), config: slices.Clone(snap.Config)}
}

// writeChunks writes data in chunks of meta's generation (ignored until
// switchSnapshot names it), counting them in meta.chunks; with commitEach,
// one commit per chunk (a staged snapshot, beside the log's Appends, which
// then wait for at most a chunk's commit). With dropAfter it
// also deletes, from the end backwards, the runs that start after index
// (every prefix of the log is a valid log under the old snapshot): a
// snapshot the log does not continue.
func (s *backend) writeChunks(meta *snapMeta, data []byte, commitEach, dropAfter bool, index uint64) error {
	w := s.newWriter()
	for off := 0; off < len(data); off += s.chunk {
		end := min(off+s.chunk, len(data))
		w.set(chunkKey(meta.gen, meta.chunks), data[off:end])
		meta.chunks++
		if commitEach && end < len(data) {
			// badger counts a value-log value by its pointer, so one
			// transaction would hold the whole snapshot, and an Append
			// beside it would wait behind that one commit.
			w.flush()
		}
	}
	if dropAfter {
		for i := len(s.runs) - 1; i >= 0 && s.runs[i].first > index; i-- {
			w.delete(s.runs[i].key())
		}
	}
	return w.commit()
}

// switchSnapshot makes meta, whose chunks are written, the stored snapshot,
// and deletes what it made obsolete. Without match (the log does not
// continue the snapshot), writeChunks dropped the runs after it, and the run
// it ends inside goes in the same transaction as the switch.
func (s *backend) switchSnapshot(snap persist.Snapshot, meta snapMeta, match bool) error {
	// The runs the snapshot covers whole, the one it ends inside, and those
	// after it.
	p := sort.Search(len(s.runs), func(j int) bool { return s.runs[j].last() > snap.Index })
	covered, rest := s.runs[:p], s.runs[p:]
	var inside *run
	if len(rest) > 0 && rest[0].first <= snap.Index {
		inside = &rest[0]
	}
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	if err := txn.Set(keySnapMeta, meta.encode()); err != nil {
		return err
	}
	if !match && inside != nil {
		if err := txn.Delete(inside.key()); err != nil {
			return err
		}
	}
	if err := s.commit(txn, false); err != nil {
		return err
	}
	if !match {
		rest = nil
	}
	// Delete what it made obsolete; a crash before this is cleaned up on
	// Open.
	w := s.newWriter()
	for _, r := range covered {
		w.delete(r.key())
	}
	for n := uint64(0); n < s.snap.chunks; n++ {
		w.delete(chunkKey(s.snap.gen, n))
	}
	for _, a := range s.abandoned {
		for n := uint64(0); n < a.chunks; n++ {
			w.delete(chunkKey(a.gen, n))
		}
	}
	s.abandoned = nil
	err := w.commit()
	s.snap = meta
	s.runs = slices.Clone(rest)
	if err != nil {
		return err
	}
	return s.reopenForGC()
}

// gcReopenFiles is how many value-log files' worth of new data (64 MiB with
// the default options) make reopenForGC collect while the store is open:
// disk space held by replaced snapshots, against a pause per collection.
const gcReopenFiles = 4

// openDB collects dead value-log space (reclaimValueLog), then opens the
// database and the syncer.
func (s *backend) openDB() error {
	if err := reclaimValueLog(s.dir, s.opts, s.levels); err != nil {
		return err
	}
	db, err := badger.Open(s.opts.badger(s.dir, s.levels))
	if err != nil {
		return fmt.Errorf("badgerstore: open %s: %w", s.dir, err)
	}
	s.db = db
	s.gcAt = valueLogBytes(s.dir) + gcReopenFiles*s.opts.ValueLogFileBytes
	if !s.opts.NoSync {
		if s.syncer, err = newSyncer(s.dir); err != nil {
			_ = db.Close()
			return err
		}
	}
	return nil
}

// slowGCReopen is how long a collection may hold appends before
// reopenForGC logs it as a warning: about a raft election timeout.
const slowGCReopen = 150 * time.Millisecond

// reopenForGC gives back the value-log space of replaced snapshots once
// the value log has grown by gcReopenFiles files' worth since the last
// collection: badger's value-log GC is crash-safe only in a handle with its
// own synchronous writes, so the store closes its handle, collects in one
// opened that way, and opens its own again. Appends wait meanwhile (about
// 60 ms for a 160 MiB value log on the CI machine). What GC can collect
// depends on badger's compaction having seen the deletes, so the next
// collection waits for as much new data again, whatever this one freed.
//
// A snapshot read in progress (OpenSnapshot) postpones the collection to
// the next SaveSnapshot rather than make this one, and the Appends behind
// it, wait for the read.
func (s *backend) reopenForGC() error {
	if valueLogBytes(s.dir) < s.gcAt || !s.dbMu.TryLock() {
		return nil
	}
	defer s.dbMu.Unlock()
	s.gcReopens++
	start, before := time.Now(), valueLogBytes(s.dir)
	if err := s.closeDB(); err != nil {
		return err
	}
	err := s.openDB()
	if took := time.Since(start); s.opts.Logger != nil {
		// A warning once it could cost a heartbeat (a plugin logs only
		// warnings and errors): appends waited all that time.
		lvl := slog.LevelInfo
		if took >= slowGCReopen {
			lvl = slog.LevelWarn
		}
		s.opts.Logger.Log(context.Background(), lvl, "badgerstore: collected the value log; appends waited meanwhile",
			"took", took.Round(time.Millisecond), "bytes_before", before, "bytes_after", valueLogBytes(s.dir))
	}
	return err
}

// Release implements persist.Backend: Close closes the database, once the
// snapshot reads in progress are done.
func (s *backend) Release() error {
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	return s.closeDB()
}

// closeDB closes the database and the syncer; dbMu must be held.
func (s *backend) closeDB() error {
	if s.syncer != nil {
		_ = s.syncer.close()
		s.syncer = nil
	}
	if s.db == nil {
		return nil // a reopen failed; nothing is open
	}
	db := s.db
	s.db = nil
	if err := db.Close(); err != nil {
		return wrap("close", err)
	}
	return nil
}

// readSnapshot reads the snapshot in txn and its metadata; stale, if not
// nil, collects the keys of chunks of other generations (leftovers of an
// interrupted SaveSnapshot). It stops with ctx's error once ctx ends
// (checked before each chunk).
func readSnapshot(ctx context.Context, txn *badger.Txn, stale *[][]byte) (persist.Snapshot, snapMeta, error) {
	var meta snapMeta
	v, err := getValue(txn, keySnapMeta, -snapMetaBytes)
	if err != nil {
		return persist.Snapshot{}, meta, err
	}
	if v != nil {
		meta = snapMeta{binary.LittleEndian.Uint64(v), binary.LittleEndian.Uint64(v[8:]),
			binary.LittleEndian.Uint64(v[16:]), binary.LittleEndian.Uint64(v[24:]), binary.LittleEndian.Uint64(v[32:]), nil}
		if len(v) > snapMetaBytes {
			meta.config = v[snapMetaBytes:]
		}
	}
	snap := persist.Snapshot{Index: meta.index, Term: meta.term, Config: meta.config}

	// Snapshot chunks, in key order: generation, then number.
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixChunk})
	defer it.Close()
	var data []byte
	next := uint64(0)
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		if len(k) != 17 {
			return snap, meta, fmt.Errorf("%w: badger key %x: bad chunk key", persist.ErrCorrupt, k)
		}
		if gen := binary.BigEndian.Uint64(k[1:]); gen != meta.gen || meta.index == 0 {
			if stale != nil {
				*stale = append(*stale, it.Item().KeyCopy(nil))
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return snap, meta, err
		}
		if n := binary.BigEndian.Uint64(k[9:]); n != next {
			return snap, meta, fmt.Errorf("%w: badger key %x: snapshot chunk %d missing", persist.ErrCorrupt, k, next)
		}
		next++
		err := it.Item().Value(func(v []byte) error {
			if data == nil {
				data = make([]byte, 0, min(meta.size, 64<<20)) // a damaged size must not panic
			}
			data = append(data, v...)
			return nil
		})
		if err != nil {
			return snap, meta, err
		}
	}
	if next != meta.chunks || uint64(len(data)) != meta.size {
		return snap, meta, fmt.Errorf("%w: badger key %q: snapshot has %d chunks, %d bytes; metadata says %d, %d",
			persist.ErrCorrupt, keySnapMeta, next, len(data), meta.chunks, meta.size)
	}
	snap.Data = data
	return snap, meta, nil
}

// OpenSnapshot implements persist.SnapshotReader: a read transaction,
// which sees the snapshot stored now whatever is committed after it
// (badger's MVCC: the chunks a later SaveSnapshot deletes stay readable at
// the transaction's timestamp). read holds dbMu shared, so that the
// database is not closed under it (Close waits for it; reopenForGC does
// not collect while a read runs).
func (s *backend) OpenSnapshot() (func(context.Context) (persist.Snapshot, error), error) {
	s.dbMu.RLock()
	txn := s.db.NewTransaction(false)
	return func(ctx context.Context) (persist.Snapshot, error) {
		defer s.dbMu.RUnlock()
		defer txn.Discard()
		snap, _, err := readSnapshot(ctx, txn, nil)
		if err != nil {
			return persist.Snapshot{}, wrap("read snapshot", err)
		}
		return snap, nil
	}, nil
}
