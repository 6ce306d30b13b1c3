package plugin_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
	"github.com/ruaft/ruaft/persist/plugin"
)

// BenchmarkAppend measures Append of batches of 0 (hard state only), 1, 16
// and 256 entries of 256 bytes on every store, side by side: in-process
// (mode=inprocess), through a plugin subprocess over the direct Append
// channel (mode=plugin, what a replica uses) and through the same plugin over
// the gRPC Append call (mode=grpc, the old path), with fsync on for the
// durable stores. Run (see docs/benchmarks.md for the table):
//
//	go test -run '^$' -bench BenchmarkAppend -count 6 ./persist/plugin/ | tee new.txt
//	benchstat -col /mode new.txt
//
// store=file-nosync is the file store with fsync off: its in-process cost is
// CPU only, so it shows the boundary's share without the disk's noise.
func BenchmarkAppend(b *testing.B) {
	for _, kind := range append(plugin.Builtins(), "file-nosync") {
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
	kind, noSync := strings.CutSuffix(kind, "-nosync")
	var st persist.Store
	var err error
	if mode != "inprocess" {
		cfg := plugin.Config{Persister: kind, DataDir: dir, SocketDir: benchSocketDir(b), NoDirectAppend: mode == "grpc", NoSync: noSync}
		if kind == "noop" || kind == "memory" {
			cfg.DataDir = ""
		}
		st, err = plugin.Open(ctx, cfg)
	} else {
		st, err = plugin.OpenBuiltin(kind, plugin.Params{DataDir: dir, Sync: !noSync}, nil)
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
	cpu := startPluginCPU(st)
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
	cpu.report(b, b.N)
}

// pluginCPU measures the CPU time (user + system, all threads) plugin
// processes use from its start, from /proc/PID/stat; nothing where there is
// no /proc or the store is in-process.
type pluginCPU struct {
	pids  []int
	ticks int64
}

func startPluginCPU(stores ...persist.Store) pluginCPU {
	var c pluginCPU
	for _, st := range stores {
		if ps, ok := st.(*plugin.Store); ok {
			c.pids = append(c.pids, ps.PID())
		}
	}
	c.ticks = c.now()
	return c
}

// now is the plugins' CPU time so far in clock ticks (USER_HZ, 100 on
// Linux), or -1 if it cannot be read.
func (c pluginCPU) now() int64 {
	var total int64
	for _, pid := range c.pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return -1
		}
		// Fields after the command name (which may hold spaces): state is
		// field 3, utime 14 and stime 15.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		var ut, stt int64
		if len(f) < 13 {
			return -1
		}
		if _, err := fmt.Sscan(f[11], &ut); err != nil {
			return -1
		}
		if _, err := fmt.Sscan(f[12], &stt); err != nil {
			return -1
		}
		total += ut + stt
	}
	return total
}

// report adds the plugins' CPU microseconds per call (calls in all) to b's
// metrics. Ticks are 10 ms: run enough calls for a few hundred of them.
func (c pluginCPU) report(b *testing.B, calls int) {
	end := c.now()
	if len(c.pids) == 0 || c.ticks < 0 || end < 0 || calls == 0 {
		return
	}
	b.ReportMetric(float64(end-c.ticks)*1e4/float64(calls), "plugin-cpu-µs/op")
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
			st, err := plugin.Open(ctx, plugin.Config{Persister: kind, DataDir: b.TempDir(), SocketDir: benchSocketDir(b),
				Options: benchOptions(b, kind)})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			cpu := startPluginCPU(st)
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
			cpu.report(b, b.N)
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

// reportPluginRSS adds the largest peak resident set (VmHWM) of the stores'
// plugin processes to b's metrics, in MiB (Linux only).
func reportPluginRSS(b *testing.B, stores ...persist.Store) {
	var peak int64
	for _, st := range stores {
		ps, ok := st.(*plugin.Store)
		if !ok {
			continue
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", ps.PID()))
		if err != nil {
			return
		}
		if kib, ok := procField(string(status), "VmHWM"); ok {
			peak = max(peak, kib)
		}
	}
	if peak > 0 {
		b.ReportMetric(float64(peak)/1024, "plugin-VmHWM-MiB")
	}
}

// benchOptions are the store options BENCH_OPTIONS_<STORE> gives
// (name=value pairs separated by commas, e.g.
// BENCH_OPTIONS_BADGER=memtable_bytes=1048576), to compare settings.
func benchOptions(b *testing.B, kind string) map[string]string {
	v := os.Getenv("BENCH_OPTIONS_" + strings.ToUpper(kind))
	if v == "" {
		return nil
	}
	opts := map[string]string{}
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			b.Fatalf("BENCH_OPTIONS_%s: %q is not name=value", strings.ToUpper(kind), kv)
		}
		opts[k] = val
	}
	return opts
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

// BenchmarkAppendThreeWriters runs three stores, each through its own plugin
// subprocess and in its own folder on the same disk, appending batches of 16
// entries of 256 bytes at the same time, as the three replicas of a cluster
// on one machine do, and reports the median and 99th percentile of one
// Append. Compare with ../shared/bench's fsyncbench run three times at once
// (see docs/benchmarks.md). b.N is the number of Appends per writer.
//
//	go test -run '^$' -bench AppendThreeWriters -benchtime 2000x ./persist/plugin/
func BenchmarkAppendThreeWriters(b *testing.B) {
	for _, kind := range []string{"file", "badger"} {
		b.Run("store="+kind, func(b *testing.B) {
			stores := make([]persist.Store, 3)
			for i := range stores {
				st, err := plugin.Open(ctx, plugin.Config{Persister: kind, DataDir: b.TempDir(), SocketDir: benchSocketDir(b)})
				if err != nil {
					b.Fatal(err)
				}
				defer st.Close()
				stores[i] = st
			}
			lat := make([][]time.Duration, len(stores))
			errs := make(chan error, len(stores))
			var wg sync.WaitGroup
			cpu := startPluginCPU(stores...)
			b.ResetTimer()
			for w, st := range stores {
				wg.Go(func() {
					entries := make([]persist.Entry, 16)
					for i := range entries {
						entries[i] = persist.Entry{Term: 1, Type: persist.EntryCommand, Data: make([]byte, 256)}
					}
					next := uint64(1)
					for range b.N {
						for j := range entries {
							entries[j].Index = next + uint64(j)
						}
						t0 := time.Now()
						if err := st.Append(ctx, persist.HardState{Term: 1, Commit: next}, entries); err != nil {
							errs <- err
							return
						}
						lat[w] = append(lat[w], time.Since(t0))
						next += uint64(len(entries))
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			all := slices.Concat(lat...)
			slices.Sort(all)
			b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
			cpu.report(b, len(all))
			reportPluginRSS(b, stores...)
		})
	}
}

// BenchmarkAppendPaced appends batches of 16 entries of 256 bytes with a
// pause between them, as a replica under a moderate load sends them, and
// reports the plugin's CPU per Append. Back-to-back Appends (the other
// benchmarks) keep the plugin's thread busy; with pauses it waits for each
// call, and what waiting costs it (the Go runtime's sysmon waking to take
// the processor from a thread blocked in a syscall, and the wake-ups that
// follow) shows here and not there.
//
//	go test -run '^$' -bench AppendPaced -benchtime 2000x ./persist/plugin/
func BenchmarkAppendPaced(b *testing.B) {
	for _, kind := range []string{"file", "badger"} {
		for _, pause := range []time.Duration{200 * time.Microsecond, 2 * time.Millisecond} {
			b.Run(fmt.Sprintf("store=%s/pause=%v", kind, pause), func(b *testing.B) {
				st, err := plugin.Open(ctx, plugin.Config{Persister: kind, DataDir: b.TempDir(), SocketDir: benchSocketDir(b)})
				if err != nil {
					b.Fatal(err)
				}
				defer st.Close()
				entries := make([]persist.Entry, 16)
				for i := range entries {
					entries[i] = persist.Entry{Term: 1, Type: persist.EntryCommand, Data: make([]byte, 256)}
				}
				next := uint64(1)
				cpu := startPluginCPU(st)
				b.ResetTimer()
				for range b.N {
					for j := range entries {
						entries[j].Index = next + uint64(j)
					}
					if err := st.Append(ctx, persist.HardState{Term: 1, Commit: next}, entries); err != nil {
						b.Fatal(err)
					}
					next += uint64(len(entries))
					time.Sleep(pause)
				}
				b.StopTimer()
				cpu.report(b, b.N)
			})
		}
	}
}
