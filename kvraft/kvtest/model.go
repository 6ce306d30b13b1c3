package kvtest

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// Operation kinds in a KV history.
const (
	OpGet uint8 = iota
	OpPut
	OpAppend
	OpDelete
)

// KVInput is the input of one operation in a history.
type KVInput struct {
	Op    uint8
	Key   string
	Value string
}

// KVOutput is the output of one operation: a digest of the value a Get
// returned (a missing key reads as ""). Values grow to hundreds of
// kilobytes in the long tests; a history of digests stays small.
type KVOutput struct {
	Value Digest
}

// Digest stands for a string in histories: its length, a polynomial hash
// modulo 2^61-1 that can be extended by an append without the string, and
// its last few bytes for descriptions.
type Digest struct {
	N    int
	Hash uint64
	Tail string
}

const (
	hashMod  = 1<<61 - 1
	hashBase = 1_000_003
	tailLen  = 24
)

// DigestOf returns the digest of s.
func DigestOf(s string) Digest {
	var h uint64
	for i := 0; i < len(s); i++ {
		h = addMod(mulMod(h, hashBase), uint64(s[i]))
	}
	return Digest{N: len(s), Hash: h, Tail: tail(s)}
}

// Append returns the digest of the digested string followed by v.
func (d Digest) Append(v string) Digest {
	dv := DigestOf(v)
	return Digest{N: d.N + dv.N, Hash: addMod(mulMod(d.Hash, powMod(hashBase, uint64(dv.N))), dv.Hash), Tail: tail(d.Tail + v)}
}

// tail returns the last tailLen bytes of s, copied so that a digest does
// not keep a large value alive.
func tail(s string) string {
	if len(s) > tailLen {
		s = s[len(s)-tailLen:]
	}
	return strings.Clone(s)
}

func mulMod(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	// a, b < 2^61, so the product is below 2^122: fold the high bits.
	v := (lo & hashMod) + (lo >> 61) + (hi << 3)
	for v >= hashMod {
		v -= hashMod
	}
	return v
}

func addMod(a, b uint64) uint64 {
	v := a + b
	for v >= hashMod {
		v -= hashMod
	}
	return v
}

func powMod(b, e uint64) uint64 {
	r := uint64(1)
	for ; e > 0; e >>= 1 {
		if e&1 == 1 {
			r = mulMod(r, b)
		}
		b = mulMod(b, b)
	}
	return r
}

func (d Digest) String() string {
	if d.N > len(d.Tail) {
		return fmt.Sprintf("%d bytes …%q", d.N, d.Tail)
	}
	return fmt.Sprintf("%q", d.Tail)
}

// KVModel is the porcupine model of the store, partitioned per key so each
// partition's state is the digest of one value. Delete makes a key read as
// "".
var KVModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := make(map[string][]porcupine.Operation)
		var keys []string
		for _, op := range history {
			k := op.Input.(KVInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return Digest{} },
	Step: func(state, input, output any) (bool, any) {
		in, out, st := input.(KVInput), output.(KVOutput), state.(Digest)
		switch in.Op {
		case OpGet:
			return out.Value == st, st
		case OpPut:
			return true, DigestOf(in.Value)
		case OpAppend:
			return true, st.Append(in.Value)
		default:
			return true, Digest{}
		}
	},
	Equal: func(a, b any) bool { return a.(Digest) == b.(Digest) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(KVInput), output.(KVOutput)
		switch in.Op {
		case OpGet:
			return fmt.Sprintf("get(%q) -> %v", in.Key, out.Value)
		case OpPut:
			return fmt.Sprintf("put(%q, %q)", in.Key, short(in.Value))
		case OpAppend:
			return fmt.Sprintf("append(%q, %q)", in.Key, short(in.Value))
		default:
			return fmt.Sprintf("delete(%q)", in.Key)
		}
	},
	DescribeState: func(state any) string { return state.(Digest).String() },
}

func short(s string) string {
	if len(s) > 40 {
		return "…" + s[len(s)-39:]
	}
	return s
}

// OpLog records a history of operations with their call and return times.
// It is safe for concurrent use.
type OpLog struct {
	start time.Time
	mu    sync.Mutex // guards ops
	ops   []porcupine.Operation
}

// NewOpLog returns an empty history whose clock starts now.
func NewOpLog() *OpLog { return &OpLog{start: time.Now()} }

// Now is the history's clock, in nanoseconds.
func (l *OpLog) Now() int64 { return int64(time.Since(l.start)) }

// Add records an operation by client cli that was called at call and
// returned at ret (times from Now).
func (l *OpLog) Add(cli int, in KVInput, out KVOutput, call, ret int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, porcupine.Operation{ClientId: cli, Input: in, Output: out, Call: call, Return: ret})
}

// Len returns the number of recorded operations.
func (l *OpLog) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ops)
}

// linearizabilityTimeout bounds porcupine's search.
const linearizabilityTimeout = time.Minute

// errNotLinearizable is returned by check for a history porcupine rejects.
var errNotLinearizable = errors.New("history is not linearizable")

// CheckLinearizable checks the history with porcupine and fails t if it is
// not linearizable, writing porcupine's HTML visualisation to a file under
// os.TempDir named in the failure message.
func (l *OpLog) CheckLinearizable(t testing.TB) {
	t.Helper()
	begin := time.Now()
	res, path, err := l.check(t.Name())
	t.Logf("porcupine: %d operations, %v, checked in %v", l.Len(), res, time.Since(begin).Round(time.Millisecond))
	switch {
	case err != nil && path != "":
		t.Fatalf("%v; visualisation: %s", err, path)
	case err != nil:
		t.Fatal(err)
	case res == porcupine.Unknown:
		t.Logf("porcupine timed out after %v; history not proven linearizable", linearizabilityTimeout)
	}
}

// check runs porcupine; for a history that is not linearizable it writes
// the visualisation to a new file named after name and returns its path.
func (l *OpLog) check(name string) (porcupine.CheckResult, string, error) {
	l.mu.Lock()
	ops := append([]porcupine.Operation(nil), l.ops...)
	l.mu.Unlock()
	res, info := porcupine.CheckOperationsVerbose(KVModel, ops, linearizabilityTimeout)
	if res != porcupine.Illegal {
		return res, "", nil
	}
	path := visualise(name, KVModel, info)
	return res, path, errNotLinearizable
}

// visualise writes porcupine's visualisation of a failed check to a new
// file named after name and returns its path (or why it could not).
func visualise(name string, model porcupine.Model, info porcupine.LinearizationInfo) string {
	name = regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(name, "_")
	f, err := os.CreateTemp(os.TempDir(), "kvraft-"+name+"-*.html")
	if err != nil {
		return fmt.Sprintf("(creating the visualisation file failed: %v)", err)
	}
	path, _ := filepath.Abs(f.Name())
	f.Close()
	if err := porcupine.VisualizePath(model, info, path); err != nil {
		return fmt.Sprintf("(writing the visualisation failed: %v)", err)
	}
	return path
}
