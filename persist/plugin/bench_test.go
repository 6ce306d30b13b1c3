package plugin_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/plugin"
)

// BenchmarkAppend measures Append of batches of 1, 16 and 256 entries of 256
// bytes on every store, in-process and through a plugin subprocess, with
// fsync on for the durable stores. Run:
//
//	go test -run '^$' -bench BenchmarkAppend -benchtime 2s ./persist/plugin/
func BenchmarkAppend(b *testing.B) {
	for _, kind := range plugin.Builtins() {
		for _, mode := range []string{"inprocess", "plugin"} {
			for _, batch := range []int{1, 16, 256} {
				b.Run(fmt.Sprintf("store=%s/mode=%s/batch=%d", kind, mode, batch), func(b *testing.B) {
					benchAppend(b, kind, mode, batch)
				})
			}
		}
	}
}

func benchAppend(b *testing.B, kind, mode string, batch int) {
	dir := b.TempDir()
	var st persist.Store
	var err error
	if mode == "plugin" {
		cfg := plugin.Config{Persister: kind, DataDir: dir, SocketDir: benchSocketDir(b)}
		if kind == "noop" || kind == "memory" {
			cfg.DataDir = ""
		}
		st, err = plugin.Open(ctx, cfg)
	} else {
		st, err = plugin.OpenBuiltin(kind, plugin.Params{DataDir: dir, Sync: true}, nil)
	}
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	entries := make([]persist.Entry, batch)
	for i := range entries {
		entries[i] = persist.Entry{Term: 1, Type: persist.EntryCommand, Data: make([]byte, 256)}
	}
	hs := persist.HardState{Term: 1, VotedFor: 0}
	next := uint64(1)
	b.SetBytes(int64(batch * 256))
	b.ResetTimer()
	for range b.N {
		for j := range entries {
			entries[j].Index = next + uint64(j)
		}
		if err := st.Append(ctx, hs, entries); err != nil {
			b.Fatal(err)
		}
		next += uint64(batch)
		if next%(1<<14) < uint64(batch) {
			// Compact now and then, as a replica would, outside the timing.
			b.StopTimer()
			if err := st.SaveSnapshot(ctx, persist.Snapshot{Index: next - 1, Term: 1, Data: []byte("s")}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
}

func benchSocketDir(b *testing.B) string {
	d, err := os.MkdirTemp("", "rb")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}
