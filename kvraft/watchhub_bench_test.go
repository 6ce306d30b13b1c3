package kvraft

import (
	"strconv"
	"testing"
)

// BenchmarkWatchHubNotifyIdlePrefixes: the cost an applied change pays for
// 10,000 prefix watchers of other prefixes (distinct ones, as one watcher per
// user or per folder makes), which it must not wake.
func BenchmarkWatchHubNotifyIdlePrefixes(b *testing.B) {
	h := newWatchHub()
	for i := range 10000 {
		h.add(newWaiter("users/"+strconv.Itoa(i)+"/", true))
	}
	for b.Loop() {
		h.notify("orders/17", 1)
	}
}
