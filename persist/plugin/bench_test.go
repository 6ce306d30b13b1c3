package plugin_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/plugin"
)

// BenchmarkAppend measures Append of batches of 0 (hard state only), 1, 16
// and 256 entries of 256 bytes on every store, side by side: in-process
// (mode=inprocess), through a plugin subprocess over the direct Append
// channel (mode=plugin, what a replica uses) and through the same plugin over
// the gRPC Append call (mode=grpc, the old path), with fsync on for the
// durable stores. Run (see the README for the table):
//
//	go test -run '^$' -bench BenchmarkAppend -count 6 ./persist/plugin/ | tee new.txt
//	benchstat -col /mode new.txt
func BenchmarkAppend(b *testing.B) {
	for _, kind := range plugin.Builtins() {
		for _, batch := range []int{0, 1, 16, 256} {
			for _, mode := range []string{"inprocess", "plugin", "grpc"} {
				b.Run(fmt.Sprintf("store=%s/batch=%d/mode=%s", kind, batch, mode), func(b *testing.B) {
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
	if mode != "inprocess" {
		cfg := plugin.Config{Persister: kind, DataDir: dir, SocketDir: benchSocketDir(b), NoDirectAppend: mode == "grpc"}
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
		if batch > 0 && next%(1<<14) < uint64(batch) {
			// Compact now and then, as a replica would, outside the timing.
			b.StopTimer()
			if err := st.SaveSnapshot(ctx, persist.Snapshot{Index: next - 1, Term: 1, Data: []byte("s")}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	if batch > 0 {
		b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
	}
}

func benchSocketDir(b *testing.B) string {
	d, err := os.MkdirTemp("", "rb")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

// BenchmarkPluginMemory appends batches of 64 entries of 256 bytes (what a
// replica writes under a 64-client put load) through a plugin subprocess
// and reports the plugin process's peak resident set (VmHWM: Go heap,
// stacks, and the pages of the store's memory-mapped files it touched) and
// its anonymous part at the end (RssAnon), in MiB. Linux only. Run:
//
//	go test -run '^$' -bench PluginMemory -benchtime 20000x ./persist/plugin/
func BenchmarkPluginMemory(b *testing.B) {
	for _, kind := range []string{"file", "badger"} {
		b.Run("store="+kind, func(b *testing.B) {
			st, err := plugin.Open(ctx, plugin.Config{Persister: kind, DataDir: b.TempDir(), SocketDir: benchSocketDir(b)})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			entries := make([]persist.Entry, 64)
			for i := range entries {
				entries[i] = persist.Entry{Term: 1, Type: persist.EntryCommand, Data: make([]byte, 256)}
			}
			next := uint64(1)
			b.SetBytes(int64(len(entries) * 256))
			for i := range b.N {
				for j := range entries {
					entries[j].Index = next + uint64(j)
					entries[j].Data[0] = byte(i)
				}
				if err := st.Append(ctx, persist.HardState{Term: 1, VotedFor: 0, Commit: next}, entries); err != nil {
					b.Fatal(err)
				}
				next += uint64(len(entries))
				if next%(1<<15) < uint64(len(entries)) {
					// Compact as a replica with a ~8 MiB log threshold would.
					if err := st.SaveSnapshot(ctx, persist.Snapshot{Index: next - 1, Term: 1, Data: make([]byte, 1<<20)}); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.PID()))
			if err != nil {
				b.Skipf("no /proc: %v", err)
			}
			for _, field := range []string{"VmHWM", "RssAnon", "RssFile"} {
				if kib, ok := procField(string(status), field); ok {
					b.ReportMetric(float64(kib)/1024, field+"-MiB")
				}
			}
		})
	}
}

// procField returns the value in KiB of field in a /proc/PID/status text.
func procField(status, field string) (int64, bool) {
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			var kib int64
			_, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kib)
			return kib, err == nil
		}
	}
	return 0, false
}
