package durio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkPersister: a store folder holding one persister's store refuses
// every other built-in persister, whether the folder recorded it or only
// its files tell; an empty or moved-aside store takes any; a plugin path is
// never refused.
func TestCheckPersister(t *testing.T) {
	type step struct {
		files     []string // created in the store folder before the check
		persister string
		refused   string // the held persister named in the refusal; "" to pass
	}
	cases := map[string][]step{
		"new folder, then the same persister": {
			{nil, "file", ""}, {[]string{"0000000000000001.wal"}, "file", ""},
		},
		"file store, badger refused, then file again": {
			{[]string{"0000000000000001.wal"}, "badger", "file"}, {nil, "file", ""},
		},
		"badger store, file, noop and memory refused": {
			{[]string{"MANIFEST", "000001.vlog"}, "file", "badger"}, {nil, "noop", "badger"}, {nil, "memory", "badger"},
		},
		"a folder from before the record, told by its files": {
			{[]string{"KEYREGISTRY"}, "file", "badger"},
		},
		"a plugin path is not refused, and a builtin is then refused by the record": {
			{nil, "/opt/durio/my-store", ""}, {[]string{"data.bin"}, "/opt/durio/my-store", ""}, {nil, "file", "/opt/durio/my-store"},
		},
		"noop keeps nothing: a durable store may follow": {
			{nil, "noop", ""}, {[]string{"0000000000000001.wal"}, "file", ""},
		},
	}
	for name, steps := range cases {
		t.Run(name, func(t *testing.T) {
			dataDir := t.TempDir()
			storeDir := filepath.Join(dataDir, "store")
			if err := os.MkdirAll(storeDir, 0o750); err != nil {
				t.Fatal(err)
			}
			for i, s := range steps {
				for _, f := range s.files {
					if err := os.WriteFile(filepath.Join(storeDir, f), nil, 0o640); err != nil {
						t.Fatal(err)
					}
				}
				err := checkPersister(dataDir, storeDir, s.persister)
				switch {
				case s.refused == "" && err != nil:
					t.Fatalf("step %d (%s): %v", i, s.persister, err)
				case s.refused != "" && (!errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), fmt.Sprintf("holds the store of persister %q", s.refused))):
					t.Fatalf("step %d (%s): %v, want a refusal naming %s", i, s.persister, err, s.refused)
				}
			}
		})
	}

	// The store moved aside (the README's way to start a damaged replica
	// empty): any persister starts, and is recorded.
	dataDir := t.TempDir()
	storeDir := filepath.Join(dataDir, "store")
	if err := os.MkdirAll(storeDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := checkPersister(dataDir, storeDir, "file"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(storeDir, "0000000000000001.wal"), nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(storeDir, storeDir+".damaged"); err != nil {
		t.Fatal(err)
	}
	if err := checkPersister(dataDir, storeDir, "badger"); err != nil {
		t.Fatalf("badger on a moved-aside store: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dataDir, persisterRecordFile)); strings.TrimSpace(string(b)) != "badger" {
		t.Fatalf("recorded %q, want badger", b)
	}
}

// A record that is not a persister's name (damaged, or huge) is read only
// up to a bound, and shown quoted.
func TestCheckPersisterHostileRecord(t *testing.T) {
	dataDir := t.TempDir()
	storeDir := filepath.Join(dataDir, "store")
	if err := os.MkdirAll(storeDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(storeDir, "data.bin"), nil, 0o640); err != nil {
		t.Fatal(err)
	}
	junk := "\x1b[2J" + strings.Repeat("x", 1<<20)
	if err := os.WriteFile(filepath.Join(dataDir, persisterRecordFile), []byte(junk), 0o640); err != nil {
		t.Fatal(err)
	}
	err := checkPersister(dataDir, storeDir, "file")
	if !errors.Is(err, ErrConfig) || strings.Contains(err.Error(), "\x1b") || len(err.Error()) > 2*maxRecordBytes+1000 {
		t.Fatalf("a junk record: %.300q (%d bytes)", err, len(err.Error()))
	}
}

// OpenStore's callers need not create the data folder first (it did so
// before the check existed), and a configuration without one is left alone.
func TestCheckPersisterCreatesTheFolder(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "new", "replica")
	if err := checkPersister(dataDir, filepath.Join(dataDir, "store"), "file"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dataDir, persisterRecordFile)); strings.TrimSpace(string(b)) != "file" {
		t.Fatalf("recorded %q, want file", b)
	}
	if err := checkPersister("", "store", "file"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(persisterRecordFile); err == nil {
		t.Fatal("a configuration without a data folder wrote a record in the working directory")
	}
}
