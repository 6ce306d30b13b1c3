// Package filestore is a durable persist.Store in plain files: a segmented,
// append-only log of CRC-framed records and a snapshot file replaced
// atomically.
//
// Each Append is one record holding the hard state and the batch of entries,
// written and fsynced before Append returns, so a batch (hard state
// included) becomes durable whole or not at all. A record whose first index
// is at or below the last stored one replaces the entries from there on;
// recovery replays the records in order. Segments rotate once they pass
// Options.SegmentBytes. SaveSnapshot writes the snapshot file (temp file,
// fsync, rename, fsync of the folder) naming the first segment still needed,
// then deletes the segments before it.
//
// Recovery on Open truncates a torn record at the end of the last segment
// (a crash during an Append, which was never acknowledged): one the file
// ends inside of, or a zero-filled tail (sectors the file system allocated
// but never wrote). It refuses any other damage with an error matching
// persist.ErrCorrupt that names the file and offset — a complete last record
// with a bad checksum included, since it may hold an acknowledged write. After a write or fsync error the store refuses further use
// (persist.ErrFailed): the replica must reopen it.
//
// All I/O goes through the FS interface; MemFS is an in-memory FS for tests
// that can drop unsynced writes (Crash) and inject errors (SetFault).
//
// Where things live: store.go (Open, recovery, the persist.Backend that
// writes segments and the snapshot; the Store methods and the bookkeeping
// every store shares come from persist.Base), record.go (the record
// format), snapfile.go (the snapshot file), fs.go and memfs.go (FS, OSFS,
// MemFS), register.go (the store's registration as "file").
package filestore
