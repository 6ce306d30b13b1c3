package kvtest

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"
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
