package durio

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// persisterRecordFile, in a data folder, names the persister whose store
// is in its store folder (written by OpenStore).
const persisterRecordFile = "persister"

// durableBuiltins are the built-in persisters that keep a store in the
// store folder, and how to recognise each one's files there.
var durableBuiltins = []struct {
	name  string
	owned func(file string) bool
}{
	{"file", func(f string) bool { return strings.HasSuffix(f, ".wal") || f == "snapshot" || f == "snapshot.tmp" }},
	{"badger", func(f string) bool {
		return f == "MANIFEST" || f == "KEYREGISTRY" || strings.HasSuffix(f, ".vlog") || strings.HasSuffix(f, ".sst")
	}},
}

// checkPersister refuses to open the store folder storeDir of dataDir
// with persister when it holds another persister's store: the other
// store's files would be ignored, and the replica would start without its
// log, its snapshot and its vote (so it could vote twice in a term, and a
// cluster of such replicas would lose its data). The store's persister is
// the built-in one whose files storeDir holds or, for files no built-in
// store writes, the one recorded in dataDir at an earlier start. An empty
// or missing store folder (a new replica, or one whose store was moved
// aside) takes any persister, and a persister given as a plugin path is
// never refused (it may well read the same files: plugins/file is the
// file store). Otherwise the folder records persister, unless it keeps
// nothing (noop, memory).
func checkPersister(dataDir, storeDir, persister string) error {
	if dataDir == "" {
		return nil // no folder: nothing kept, nothing to check
	}
	entries, err := os.ReadDir(storeDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("durio: read the store folder: %w", err)
	}
	record := filepath.Join(dataDir, persisterRecordFile)
	recorded := readRecord(record)
	if len(entries) > 0 && !isPluginPath(persister) {
		held := recognise(entries)
		if held == "" {
			held = recorded
		}
		if held != "" && held != persister {
			return configErr("persister", "the data folder %s holds the store of persister %q, and the persister is %s: "+
				"the replica would start without its state (and could vote twice in a term it already voted in); start it "+
				"with --persister %q, or move %s aside to start it empty (see the README, \"Storage integrity\")",
				dataDir, held, persister, held, storeDir)
		}
	}
	if persister == recorded || (!isDurableBuiltin(persister) && !isPluginPath(persister)) {
		return nil // recorded already, or noop and memory, which keep no store
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return fmt.Errorf("durio: record the persister: %w", err)
	}
	if err := os.WriteFile(record, []byte(persister+"\n"), 0o640); err != nil {
		return fmt.Errorf("durio: record the persister: %w", err)
	}
	return nil
}

// readRecord returns the persister recorded in file ("" if none): its
// first line, at most maxRecordBytes read, as the file is not trusted.
func readRecord(file string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, maxRecordBytes))
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line)
}

// maxRecordBytes bounds what readRecord reads: a plugin path.
const maxRecordBytes = 4096

// recognise names the built-in persister whose files entries are, or "".
func recognise(entries []os.DirEntry) string {
	for _, e := range entries {
		for _, b := range durableBuiltins {
			if b.owned(e.Name()) {
				return b.name
			}
		}
	}
	return ""
}

func isDurableBuiltin(name string) bool {
	for _, b := range durableBuiltins {
		if b.name == name {
			return true
		}
	}
	return false
}

// isPluginPath reports whether a --persister value is a plugin binary's
// path (it contains a path separator), as persist/plugin decides.
func isPluginPath(persister string) bool {
	return strings.ContainsRune(persister, os.PathSeparator) || strings.Contains(persister, "/")
}
