package kvtest

import (
	"errors"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"

	"github.com/ruaft/ruaft/kvraft"
)

func TestDigestAppend(t *testing.T) {
	parts := []string{"", "a", "hello world", string(make([]byte, 1000)), "x 1 2 y"}
	d, s := Digest{}, ""
	for _, p := range parts {
		d, s = d.Append(p), s+p
		if d != DigestOf(s) {
			t.Fatalf("Append digest %v != DigestOf %v", d, DigestOf(s))
		}
	}
	if DigestOf("ab") == DigestOf("ba") {
		t.Fatal("digest ignores order")
	}
}

func TestModelRejectsStaleRead(t *testing.T) {
	op := func(cli int, in KVInput, out string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: cli, Input: in, Output: KVOutput{Value: DigestOf(out)}, Call: call, Return: ret}
	}
	ok := []porcupine.Operation{
		op(0, KVInput{Op: OpPut, Key: "k", Value: "a"}, "", 0, 10),
		op(1, KVInput{Op: OpAppend, Key: "k", Value: "b"}, "", 20, 30),
		op(0, KVInput{Op: OpGet, Key: "k"}, "ab", 40, 50),
		op(1, KVInput{Op: OpDelete, Key: "k"}, "", 60, 70),
		op(0, KVInput{Op: OpGet, Key: "k"}, "", 80, 90),
	}
	if !porcupine.CheckOperations(KVModel, ok) {
		t.Fatal("linearizable history rejected")
	}
	stale := append(ok[:2:2], op(0, KVInput{Op: OpGet, Key: "k"}, "a", 40, 50))
	if porcupine.CheckOperations(KVModel, stale) {
		t.Fatal("stale read accepted")
	}

	// A failing history is written as porcupine's visualisation.
	l := NewOpLog()
	for _, o := range stale {
		l.Add(o.ClientId, o.Input.(KVInput), o.Output.(KVOutput), o.Call, o.Return)
	}
	res, path, err := l.check(t.Name())
	if res != porcupine.Illegal || !errors.Is(err, errNotLinearizable) || path == "" {
		t.Fatalf("check = %v, %q, %v", res, path, err)
	}
	defer os.Remove(path)
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), "<html") {
		t.Fatalf("visualisation %s: %d bytes, %v", path, len(b), err)
	}
}

// RevModel judges a Txn whole: its writes at consecutive revisions if
// every condition held, none otherwise, and a failure that names exactly
// the conditions that did not hold.
func TestRevModelTxn(t *testing.T) {
	kv := func(k int, v string, create, mod, version uint64) kvraft.KeyValue {
		return kvraft.KeyValue{Key: RevKey(k), Value: v, CreateRevision: create, ModRevision: mod, Version: version}
	}
	txn := RevInput{Op: RevTxn, Conds: []RevCompare{{Key: 0, Cond: kvraft.IfModRevision(1)}, {Key: 1, Cond: kvraft.IfAbsent()}},
		Writes: []RevWrite{{Key: 0, Value: "b"}, {Key: 1, Value: "c"}}}
	op := func(cli int, in RevInput, out RevOutput, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: cli, Input: in, Output: out, Call: call, Return: ret}
	}
	put := op(0, RevInput{Op: RevPut, Key: 0, Value: "a"}, RevOutput{Rev: 1}, 0, 10)
	list := func(out RevOutput) porcupine.Operation { return op(1, RevInput{Op: RevList}, out, 30, 40) }
	both := RevOutput{Rev: 3, KVs: []kvraft.KeyValue{kv(0, "b", 1, 2, 2), kv(1, "c", 3, 3, 1)}}
	for name, tc := range map[string]struct {
		ops  []porcupine.Operation
		want bool
	}{
		"applied": {[]porcupine.Operation{put, op(0, txn, RevOutput{Rev: 3}, 20, 25), list(both)}, true},
		"half applied": {[]porcupine.Operation{put, op(0, txn, RevOutput{Rev: 3}, 20, 25),
			list(RevOutput{Rev: 2, KVs: []kvraft.KeyValue{kv(0, "b", 1, 2, 2)}})}, false},
		"one revision for both": {[]porcupine.Operation{put, op(0, txn, RevOutput{Rev: 2}, 20, 25), list(both)}, false},
		"failed but applied": {[]porcupine.Operation{put, op(0, txn, RevOutput{Failed: true, Rev: 1, FailedConds: []int{0},
			CurrentKVs: []kvraft.KeyValue{kv(0, "a", 1, 1, 1)}}, 20, 25), list(both)}, false},
		"failed, wrong conditions named": {[]porcupine.Operation{op(0, txn, RevOutput{Failed: true, FailedConds: []int{0, 1}}, 20, 25)}, false},
		"failed rightly":                 {[]porcupine.Operation{op(0, txn, RevOutput{Failed: true, FailedConds: []int{0}}, 20, 25)}, true},
		"unknown, applied later":         {[]porcupine.Operation{put, op(0, txn, RevOutput{Unknown: true}, 20, math.MaxInt64), list(both)}, true},
	} {
		if got := porcupine.CheckOperations(RevModel, tc.ops); got != tc.want {
			t.Errorf("%s: linearizable %v, want %v", name, got, tc.want)
		}
	}
}
