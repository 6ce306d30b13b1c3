package kvraft

import (
	"strconv"
	"strings"
	"testing"
)

// BenchmarkStateApply measures the state machine's apply path alone: puts
// of 256-byte values over 1,000 keys by 64 sessions, as compare.sh's put
// load sends them (bytes and allocations per applied command; the history
// at durio serve's default bounds).
//
//	go test -run '^$' -bench StateApply -benchmem ./kvraft/
func BenchmarkStateApply(b *testing.B) {
	s := newState(stateLimits{historyEvents: 5000, historyBytes: 1 << 20})
	const sessions = 64
	for c := uint64(1); c <= sessions; c++ {
		s.Apply(0, encodeOp(op{kind: opOpenSession, id: WriteID{ClientID: c}, limit: 4096}))
	}
	value := strings.Repeat("v", 256)
	cmds := make([][]byte, 4096)
	seq := make([]uint64, sessions+1)
	for i := range cmds {
		c := uint64(i%sessions) + 1
		seq[c]++
		cmds[i] = encodeOp(op{kind: opPut | opChecked | opRevisioned, id: WriteID{ClientID: c, Seq: seq[c], Ack: seq[c]},
			key: "key" + strconv.Itoa(i*7919%1000), value: value})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		// Past the prepared commands the writes are retries of applied
		// ones below the floor: refused as stale, as cheap as a lookup, so
		// re-encode to keep every iteration a fresh write.
		if i > 0 && i%len(cmds) == 0 {
			b.StopTimer()
			for j := range cmds {
				c := uint64(j%sessions) + 1
				seq[c]++
				cmds[j] = encodeOp(op{kind: opPut | opChecked | opRevisioned, id: WriteID{ClientID: c, Seq: seq[c], Ack: seq[c]},
					key: "key" + strconv.Itoa(j*7919%1000), value: value})
			}
			b.StartTimer()
		}
		if res, ok := s.Apply(uint64(i), cmds[i%len(cmds)]).(writeResult); !ok || res.refused != nil {
			b.Fatalf("apply %d: %#v", i, res)
		}
	}
}
