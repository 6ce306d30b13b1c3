package filestore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/ruaft/ruaft/persist"
)

// Options configures a Store. The zero value is not valid; start from
// DefaultOptions.
type Options struct {
	// FS is the file system; nil means OSFS.
	FS FS
	// SegmentBytes is the size, in bytes, past which the log moves on to a
	// new segment file. Compaction drops whole segments, so smaller segments
	// free disk space sooner; larger ones mean fewer files. Minimum 4 KiB.
	SegmentBytes int64
	// NoSync skips every fsync: faster, and nothing survives a machine
	// crash. For tests and benchmarks only.
	NoSync bool
	// Logger receives recovery notices (a truncated torn tail) and cleanup
	// failures; nil discards them.
	Logger *slog.Logger
}

// DefaultOptions returns the options for a small machine: 16 MiB segments,
// fsync on.
func DefaultOptions() Options {
	return Options{SegmentBytes: 16 << 20}
}

// Validate reports the first invalid field.
func (o Options) Validate() error {
	if o.SegmentBytes < 4<<10 {
		return fmt.Errorf("%w: SegmentBytes %d is below 4096", ErrInvalidOptions, o.SegmentBytes)
	}
	return nil
}

// Set sets the option named name from its text, as passed through a plugin's
// options: segment_bytes (decimal).
func (o *Options) Set(name, value string) error {
	switch name {
	case "segment_bytes":
		v, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: option %s: %v", ErrInvalidOptions, name, err)
		}
		o.SegmentBytes = v
		return nil
	default:
		return fmt.Errorf("%w: unknown option %q", ErrInvalidOptions, name)
	}
}

// ErrInvalidOptions is returned by Open for options that fail Validate.
var ErrInvalidOptions = errors.New("filestore: invalid options")

// Store is a persist.Store that keeps the log in segment files of framed
// records (see record.go for the format) and the latest snapshot in its own
// file. Every Append is one record written and fsynced before it returns.
//
// Layout of the folder: 0000000000000001.wal, 0000000000000002.wal, ... (the
// log segments, oldest first), snapshot (the latest snapshot, replaced
// atomically), snapshot.tmp (a snapshot being written; deleted on open).
// Only one Store may have a folder open at a time.
//
// The Store methods and the bookkeeping they share with the other stores
// (closed and failed states, the contract's checks, the Size figure) come
// from persist.Base; the files are written by the Backend below.
type Store struct {
	*persist.Base // Load, Append, SaveSnapshot, Size, Close; calls files
}

var _ persist.Store = (*Store)(nil)

// files is the Store's persist.Backend: the folder and what is open in it.
// Base calls it one method at a time, under its mutex.
type files struct {
	dir  string
	fs   FS
	opts Options
	log  *slog.Logger

	firstSeg uint64    // the snapshot file's first segment (snapMeta.firstSeg)
	segs     []segInfo // live segments, oldest first; the last is cur
	cur      File      // the last segment, open for appending; nil before the first write
	curBytes int64     // length of cur
	buf      []byte    // reused record buffer
}

var (
	_ persist.Backend        = (*files)(nil)
	_ persist.SnapshotReader = (*files)(nil)
	_ persist.SnapshotStager = (*files)(nil)
)

type segInfo struct {
	id   uint64
	last uint64 // last log index once the segment's records are applied
}

func segName(id uint64) string { return fmt.Sprintf("%016x.wal", id) }

func parseSegName(name string) (uint64, bool) {
	hex, ok := strings.CutSuffix(name, ".wal")
	if !ok || len(hex) != 16 {
		return 0, false
	}
	id, err := strconv.ParseUint(hex, 16, 64)
	return id, err == nil && id > 0
}

// Open opens the store in dir, creating dir if needed, and recovers what is
// stored: a torn record at the end of the last segment (a crash during an
// Append) is truncated; any other damage fails with an error matching
// persist.ErrCorrupt that names the file and offset.
func Open(dir string, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &files{dir: dir, fs: opts.FS, opts: opts, log: opts.Logger}
	if s.fs == nil {
		s.fs = OSFS{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := s.fs.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("filestore: open %s: %w", dir, err)
	}
	rec, err := s.recover(true)
	if err != nil {
		return nil, err
	}
	s.firstSeg = rec.snap.firstSeg
	s.segs = rec.segs
	if n := len(s.segs); n > 0 {
		f, err := s.fs.OpenAppend(join(dir, segName(s.segs[n-1].id)))
		if err != nil {
			return nil, fmt.Errorf("filestore: open: %w", err)
		}
		if rec.truncated && !opts.NoSync {
			// Make the truncation durable before anything is appended.
			if err := f.Sync(); err != nil {
				_ = f.Close()
				return nil, fmt.Errorf("filestore: open: sync after truncating: %w", err)
			}
		}
		s.cur, s.curBytes = f, rec.lastSegBytes
	}
	return &Store{Base: persist.NewBase(s, &rec.state)}, nil
}

type recovered struct {
	state        persist.State
	snap         snapMeta
	segs         []segInfo
	lastSegBytes int64
	truncated    bool
}

// readSnapshot reads the snapshot file; none is the zero snapshot.
func (s *files) readSnapshot() (snapMeta, persist.Snapshot, error) {
	name := join(s.dir, snapshotFile)
	buf, err := s.fs.ReadFile(name)
	switch {
	case isNotExist(err):
		return snapMeta{}, persist.Snapshot{}, nil
	case err != nil:
		return snapMeta{}, persist.Snapshot{}, fmt.Errorf("filestore: read snapshot: %w", err)
	}
	return snapshotFrom(name, buf)
}

// snapshotFrom decodes the snapshot file name holding buf.
func snapshotFrom(name string, buf []byte) (snapMeta, persist.Snapshot, error) {
	meta, data, err := decodeSnapshot(name, buf)
	if err != nil {
		return snapMeta{}, persist.Snapshot{}, err
	}
	return meta, persist.Snapshot{Index: meta.index, Term: meta.term, Data: data, Config: meta.config}, nil
}

// OpenSnapshot implements persist.SnapshotReader: it opens the snapshot
// file, and read reads it through that handle without the store's lock. The
// file it opened is never written again: SaveSnapshot writes a new file and
// renames it over the name, and nothing else removes or truncates it while
// the store is open, so a read that runs during a SaveSnapshot, a
// compaction or Close still reads the snapshot it opened, whole.
func (s *files) OpenSnapshot() (func(context.Context) (persist.Snapshot, error), error) {
	name := join(s.dir, snapshotFile)
	f, err := s.fs.Open(name)
	switch {
	case isNotExist(err):
		return func(ctx context.Context) (persist.Snapshot, error) { return persist.Snapshot{}, ctx.Err() }, nil
	case err != nil:
		return nil, fmt.Errorf("filestore: open snapshot: %w", err)
	}
	return func(ctx context.Context) (persist.Snapshot, error) {
		buf, err := readAllCtx(ctx, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return persist.Snapshot{}, fmt.Errorf("filestore: read snapshot: %w", err)
		}
		_, snap, err := snapshotFrom(name, buf)
		return snap, err
	}, nil
}

// snapReadPiece is how much of the snapshot file readAllCtx reads between
// two looks at its context.
const snapReadPiece = 1 << 20

// readAllCtx reads f whole, a piece at a time, and stops with ctx's error
// once ctx ends (checked before each piece, the first included).
func readAllCtx(ctx context.Context, f Reader) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err // before allocating the whole snapshot
	}
	buf := make([]byte, f.Size())
	for off := 0; ; off += snapReadPiece {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if off >= len(buf) {
			return buf, nil
		}
		if _, err := f.ReadAt(buf[off:min(off+snapReadPiece, len(buf))], int64(off)); err != nil {
			return nil, err
		}
	}
}

// recover reads the folder. With repair it deletes leftovers (a temporary
// snapshot, segments a compaction left behind) and truncates a torn tail;
// without it, it only reads.
func (s *files) recover(repair bool) (recovered, error) {
	var rec recovered
	rec.state.HardState = persist.EmptyHardState
	var err error
	if rec.snap, rec.state.Snapshot, err = s.readSnapshot(); err != nil {
		return rec, err
	}
	names, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return rec, fmt.Errorf("filestore: list %s: %w", s.dir, err)
	}
	var ids []uint64
	for _, n := range names {
		id, ok := parseSegName(n)
		switch {
		case n == snapshotTemp && repair:
			if err := s.fs.Remove(join(s.dir, n)); err != nil {
				return rec, fmt.Errorf("filestore: remove leftover: %w", err)
			}
		case !ok:
		case id < rec.snap.firstSeg:
			if repair {
				if err := s.fs.Remove(join(s.dir, n)); err != nil {
					return rec, fmt.Errorf("filestore: remove compacted segment: %w", err)
				}
			}
		default:
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for i := 1; i < len(ids); i++ {
		if ids[i] != ids[i-1]+1 {
			return rec, fmt.Errorf("%w: %s: segment %s is missing", persist.ErrCorrupt, s.dir, segName(ids[i-1]+1))
		}
	}
	if rec.snap.firstSeg > 0 && (len(ids) == 0 || ids[0] != rec.snap.firstSeg) {
		return rec, fmt.Errorf("%w: %s: segment %s is missing", persist.ErrCorrupt, s.dir, segName(rec.snap.firstSeg))
	}
	var log []persist.Entry
	for i, id := range ids {
		name := join(s.dir, segName(id))
		buf, err := s.fs.ReadFile(name)
		if err != nil {
			return rec, fmt.Errorf("filestore: read segment: %w", err)
		}
		off := 0
		for off < len(buf) {
			r, n, err := decodeRecord(buf[off:])
			if err != nil {
				if i != len(ids)-1 || !tornTail(buf[off:], off, err) {
					return rec, fmt.Errorf("%w: %s at offset %d: %w", persist.ErrCorrupt, name, off, err)
				}
				if repair {
					s.log.Warn("filestore: truncating a torn record at the end of the log",
						"file", name, "offset", off, "bytes", len(buf)-off)
					if err := s.fs.Truncate(name, int64(off)); err != nil {
						return rec, fmt.Errorf("filestore: truncate torn tail: %w", err)
					}
					rec.truncated = true
				}
				break
			}
			rec.state.HardState = r.hs
			if len(r.entries) > 0 {
				first := r.entries[0].Index
				switch {
				case len(log) == 0 || first <= log[0].Index:
					log = r.entries
				case first > log[len(log)-1].Index+1:
					return rec, fmt.Errorf("%w: %s at offset %d: entry %d leaves a gap after %d",
						persist.ErrCorrupt, name, off, first, log[len(log)-1].Index)
				default:
					log = append(log[:first-log[0].Index], r.entries...)
				}
			}
			off += n
		}
		last := uint64(0)
		if len(log) > 0 {
			last = log[len(log)-1].Index
		}
		rec.segs = append(rec.segs, segInfo{id: id, last: last})
		rec.lastSegBytes = int64(off)
	}
	// Entries up to the snapshot are covered by it.
	for len(log) > 0 && log[0].Index <= rec.snap.index {
		log = log[1:]
	}
	if len(log) > 0 && log[0].Index != rec.snap.index+1 {
		return rec, fmt.Errorf("%w: %s: log starts at %d but the snapshot ends at %d",
			persist.ErrCorrupt, s.dir, log[0].Index, rec.snap.index)
	}
	rec.state.Entries = log
	return rec, nil
}

// sectorBytes is the unit in which a crash can leave a file's extended part
// unwritten (zeros): a disk sector.
const sectorBytes = 512

// tornTail reports whether a decoding error for the record at file offset
// off, with rest the bytes from there to the end of the last segment, is
// what a crash during an append leaves: a record cut short (the file ends
// inside it), or a zero-filled tail where the file system extended the file
// but never wrote the data — everything from off on is zero, or the last
// record's frame header is intact, the record ends exactly at the end of the
// file, and its bytes from some sector boundary on are all zero (sectors
// never written). Anything else is damage, in particular a complete last
// record that fails its checksum: dropping it as torn could silently drop an
// acknowledged write.
func tornTail(rest []byte, off int, err error) bool {
	if errors.Is(err, errTruncated) || allZero(rest) {
		return true
	}
	if len(rest) < frameHeaderBytes ||
		crc32.Checksum(rest[:8], crcTable) != binary.LittleEndian.Uint32(rest[8:]) ||
		int64(binary.LittleEndian.Uint32(rest))+frameHeaderBytes != int64(len(rest)) {
		return false
	}
	end := len(rest) // just after the last non-zero byte
	for end > 0 && rest[end-1] == 0 {
		end--
	}
	// The first sector boundary at or after end must lie inside the record:
	// at least one whole sector at its end was never written.
	boundary := (off+end+sectorBytes-1)/sectorBytes*sectorBytes - off
	return boundary < len(rest)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Reload implements persist.Backend: Load returns what Open recovered the
// first time, and reads the folder again for later calls.
func (s *files) Reload(context.Context) (persist.State, error) {
	rec, err := s.recover(false)
	if err != nil {
		return persist.State{}, err
	}
	return rec.state, nil
}

// WriteAppend implements persist.Backend: one record, fsynced before it
// returns.
func (s *files) WriteAppend(t *persist.Tracker, hs persist.HardState, entries []persist.Entry) error {
	s.buf = appendRecord(s.buf[:0], hs, entries)
	err := s.writeRecord(s.buf, s.cur == nil || s.curBytes >= s.opts.SegmentBytes, t.LastIndex())
	if cap(s.buf) > 1<<20 {
		s.buf = nil // don't pin a large batch's buffer
	}
	if err != nil {
		return fmt.Errorf("filestore: append: %w", err)
	}
	if len(entries) > 0 {
		s.segs[len(s.segs)-1].last = entries[len(entries)-1].Index
	}
	return nil
}

// writeRecord appends rec to the current segment, or to a new one if rotate,
// and makes it durable. A new segment's name is made durable too; last is
// the log's last index before rec, which a new segment starts from.
func (s *files) writeRecord(rec []byte, rotate bool, last uint64) error {
	if rotate {
		if s.cur != nil {
			if err := s.cur.Close(); err != nil {
				return err
			}
			s.cur = nil
		}
		id := uint64(1)
		if n := len(s.segs); n > 0 {
			id = s.segs[n-1].id + 1
		} else if s.firstSeg > 0 {
			id = s.firstSeg
		}
		f, err := s.fs.Create(join(s.dir, segName(id)))
		if err != nil {
			return err
		}
		s.segs = append(s.segs, segInfo{id: id, last: last})
		s.cur, s.curBytes = f, 0
	}
	n, err := s.cur.Write(rec)
	s.curBytes += int64(n)
	if err != nil {
		return err
	}
	if s.opts.NoSync {
		return nil
	}
	if err := s.cur.Sync(); err != nil {
		return err
	}
	if rotate {
		return s.fs.SyncDir(s.dir)
	}
	return nil
}

// WriteSnapshot implements persist.Backend. The snapshot file is replaced
// atomically; segments that hold nothing after the snapshot are deleted.
func (s *files) WriteSnapshot(t *persist.Tracker, snap persist.Snapshot) error {
	if err := s.saveSnapshot(t, snap); err != nil {
		return fmt.Errorf("filestore: save snapshot: %w", err)
	}
	return nil
}

// StageSnapshot implements persist.SnapshotStager: the snapshot file is
// written and synced under its temporary name beside the log's appends
// (recovery deletes that name), and commit renames it into place and
// deletes the segments it made obsolete.
func (s *files) StageSnapshot(_ *persist.Tracker, snap persist.Snapshot) (func() error, func(*persist.Tracker) error, error) {
	// Appends during the write only add entries after snap.Index, in this
	// segment or newer ones, so replaying from it still rebuilds them all.
	meta := s.keptFrom(snap)
	write := func() error {
		if err := s.writeSnapshotTemp(meta, snap.Data); err != nil {
			return fmt.Errorf("filestore: save snapshot: %w", err)
		}
		return nil
	}
	commit := func(*persist.Tracker) error {
		if err := s.installSnapshot(meta); err != nil {
			return fmt.Errorf("filestore: save snapshot: %w", err)
		}
		return nil
	}
	return write, commit, nil
}

// keptFrom is the metadata of snap, which keeps the log: its first segment
// is the oldest that wrote an entry after it (see recover: replaying from it
// rebuilds every entry after snap.Index).
func (s *files) keptFrom(snap persist.Snapshot) snapMeta {
	meta := snapMeta{index: snap.Index, term: snap.Term, config: slices.Clone(snap.Config)}
	meta.firstSeg = s.segs[len(s.segs)-1].id
	for _, sg := range s.segs {
		if sg.last > snap.Index {
			meta.firstSeg = sg.id
			break
		}
	}
	return meta
}

func (s *files) saveSnapshot(t *persist.Tracker, snap persist.Snapshot) error {
	var meta snapMeta
	if t.SnapshotKeeps(snap) {
		meta = s.keptFrom(snap)
	} else {
		meta = snapMeta{index: snap.Index, term: snap.Term, config: slices.Clone(snap.Config)}
		// The log is emptied: start a segment holding only the hard state,
		// so nothing before it counts once the snapshot names it.
		s.buf = appendRecord(s.buf[:0], t.HardState(), nil)
		if err := s.writeRecord(s.buf, true, snap.Index); err != nil {
			return err
		}
		meta.firstSeg = s.segs[len(s.segs)-1].id
	}
	if err := s.writeSnapshotTemp(meta, snap.Data); err != nil {
		return err
	}
	return s.installSnapshot(meta)
}

// installSnapshot renames the snapshot file written under its temporary
// name (meta) into place, and deletes the segments it made obsolete.
func (s *files) installSnapshot(meta snapMeta) error {
	if err := s.fs.Rename(join(s.dir, snapshotTemp), join(s.dir, snapshotFile)); err != nil {
		return err
	}
	if !s.opts.NoSync {
		if err := s.fs.SyncDir(s.dir); err != nil {
			return err
		}
	}
	s.firstSeg = meta.firstSeg
	// Dropping compacted segments needs no sync: a segment that comes back
	// after a crash is below firstSeg and deleted on open.
	for len(s.segs) > 0 && s.segs[0].id < meta.firstSeg {
		if err := s.fs.Remove(join(s.dir, segName(s.segs[0].id))); err != nil && !isNotExist(err) {
			s.log.Warn("filestore: removing a compacted segment failed", "err", err)
		}
		s.segs = s.segs[1:]
	}
	return nil
}

// writeSnapshotTemp writes and syncs the snapshot file under its temporary
// name. It touches nothing the log's appends use.
func (s *files) writeSnapshotTemp(meta snapMeta, data []byte) error {
	tmp := join(s.dir, snapshotTemp)
	f, err := s.fs.Create(tmp)
	if err != nil {
		return err
	}
	hdr := make([]byte, 0, snapHeaderBytes)
	hdr = append(hdr, snapMagic...)
	hdr = binary.LittleEndian.AppendUint64(hdr, meta.index)
	hdr = binary.LittleEndian.AppendUint64(hdr, meta.term)
	hdr = binary.LittleEndian.AppendUint64(hdr, meta.firstSeg)
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(len(data)))
	tail := binary.LittleEndian.AppendUint64(nil, uint64(len(meta.config)))
	tail = append(tail, meta.config...)
	sum := crc32.Update(crc32.Update(crc32.Checksum(hdr, crcTable), crcTable, data), crcTable, tail)
	err = writeAll(f, hdr, data, tail, binary.LittleEndian.AppendUint32(nil, sum))
	if err == nil && !s.opts.NoSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func writeAll(f File, parts ...[]byte) error {
	for _, p := range parts {
		if _, err := f.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// Release implements persist.Backend: Close closes the current segment;
// everything acknowledged is already durable.
func (s *files) Release() error {
	if s.cur != nil {
		err := s.cur.Close()
		s.cur = nil
		if err != nil {
			return fmt.Errorf("filestore: close: %w", err)
		}
	}
	return nil
}
