package kvraft

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// A Get's value shares its record's array, which later Appends extend in
// place (into the spare capacity, past the value's length): readers of the
// answer and the applying goroutine touch disjoint bytes of one array. The
// race detector must agree (CI runs with -race), and the answer must keep
// its contents.
func TestReviewAppendIntoSharedArrayWhileReading(t *testing.T) {
	s := newState(testLimits)
	raiseTo(s, 2)
	applyOp(s, op{kind: rPut, key: "k", value: "x"})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, _ := s.get("k")
				v := r.valueString()
				c := strings.Clone(v)
				time.Sleep(time.Microsecond)
				if v != c || strings.Trim(v, "x") != "" {
					t.Errorf("a value changed under its reader: %d bytes", len(v))
					return
				}
			}
		}()
	}
	deadline := time.Now().Add(2 * time.Second)
	for i := 0; time.Now().Before(deadline) && i < 20000; i++ {
		applyOp(s, op{kind: rAppend, key: "k", value: "x", limit: 1 << 20})
		if i%5000 == 4999 {
			applyOp(s, op{kind: rPut, key: "k", value: "x"})
		}
	}
	close(stop)
	wg.Wait()
}
