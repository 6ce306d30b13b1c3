package raft

import (
	"fmt"
	"strings"
	"testing"
)

// With SnapshotStateRatio 1 the threshold follows the state: a state that
// grows to many times SnapshotThresholdBytes is snapshotted about once per
// doubling (each snapshot at least as much log as the last snapshot's
// size), not once per threshold of log, and the log stays within about
// the state's size; and the restarted node learns the size from the
// snapshot it installs.
func TestNodeSnapshotStateRatio(t *testing.T) {
	const threshold = 1000
	cmd := strings.Repeat("c", 100)
	run := func(ratio float64) (asks int, maxLog int64) {
		cl := newCluster(t, 1, func(c *Config) {
			c.SnapshotThresholdBytes = threshold
			c.SnapshotStateRatio = ratio
		})
		for i := range 400 { // about 40 KB of state: 40 thresholds
			cl.commit(fmt.Sprintf("%s%03d", cmd, i))
			maxLog = max(maxLog, cl.nodes[0].Status().LogSizeBytes)
		}
		cl.apps[0].mu.Lock()
		asks = cl.apps[0].askCount
		cl.apps[0].mu.Unlock()
		if ratio > 0 {
			// After a restart the node learns the size from the snapshot it
			// installs: the next few commands ask for no new snapshot.
			cl.crash(0)
			cl.start(0)
			for i := range 10 {
				cl.commit(fmt.Sprintf("after restart %d", i))
			}
			cl.apps[0].mu.Lock()
			after := cl.apps[0].askCount
			cl.apps[0].mu.Unlock()
			if after != 0 {
				t.Errorf("the restarted node asked for %d snapshots with a 120-byte log", after)
			}
		}
		return asks, maxLog
	}
	fixed, fixedLog := run(0)
	ratio, ratioLog := run(1)
	t.Logf("fixed threshold: %d snapshots, log at most %d bytes; ratio 1: %d snapshots, log at most %d bytes", fixed, fixedLog, ratio, ratioLog)
	if fixed < 30 {
		t.Fatalf("the fixed threshold asked only %d times for 40 thresholds of log", fixed)
	}
	if ratio > 10 {
		t.Fatalf("ratio 1 asked %d times, want about one per doubling of the state (at most 10)", ratio)
	}
	if ratioLog > 2*45_000 {
		t.Fatalf("ratio 1 let the log reach %d bytes, more than twice the state", ratioLog)
	}
}

func TestConfigSnapshotStateRatio(t *testing.T) {
	for _, r := range []float64{-1, 2e6} {
		c := testConfig(0, 1)
		c.SnapshotStateRatio = r
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "SnapshotStateRatio") {
			t.Errorf("ratio %v: %v", r, err)
		}
	}
}
