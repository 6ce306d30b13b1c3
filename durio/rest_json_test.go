package durio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twitchtv/twirp"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// The hand-written answers are byte for byte what json.Encoder writes,
// escapes and omitted fields included.
func TestRESTJSONMatchesEncoder(t *testing.T) {
	yes, no := true, false
	strs := []string{"", "k", "config/db/host", strings.Repeat("v", 256), `quote " backslash \ slash /`,
		"<script>&amp;</script>", "tab\tnl\ncr\r\x00\x1f\x7f", "héllo wörld ☃", "\u2028\u2029", "bad \xff utf8 \xc3",
		"emoji 🙂"}
	var vals []any
	for _, s := range strs {
		vals = append(vals, restKV{Key: s, Value: s}, &restKV{Key: "k", Value: s, CreateRevision: 1, ModRevision: 18446744073709551615,
			Version: 3, Lease: 7})
	}
	vals = append(vals, restKV{}, restWritten{}, restWritten{Revision: 42}, restWritten{Revision: 1, Existed: &yes},
		restWritten{Revision: 1, Existed: &no}, restWritten{Revision: 9, Lease: 5, TTLMs: 1000},
		restList{}, restList{KVs: []*restKV{}, More: true, Revision: 3},
		restList{KVs: []*restKV{{Key: "a", Value: "<1>"}, nil, {Key: "b", Value: "\x00", Lease: 2}}, Revision: 9},
		restWatch{}, restWatch{Events: []restEvent{}, NextIndex: 4, Revision: 5},
		restWatch{Events: []restEvent{{Type: "put", KV: &restKV{Key: "k", Value: "v\n", ModRevision: 7}},
			{Type: "delete", KV: &restKV{Key: "k", ModRevision: 8}, PrevKV: &restKV{Key: "k", Value: "v&"}}, {Type: "put"}},
			NextIndex: 8, Revision: 8})
	for _, v := range vals {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(v); err != nil {
			t.Fatal(err)
		}
		got, ok := appendFastJSON(nil, nil, v)
		if !ok {
			t.Fatalf("%#v: no fast encoding", v)
		}
		if string(got) != want.String() {
			t.Errorf("%#v:\n got %s\nwant %s", v, got, want.Bytes())
		}
	}
	// Random bytes, invalid UTF-8 and every ASCII character included, are
	// escaped as encoding/json escapes them.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		const some = "a<\"\\\x00\x08\x0c\x1f\x7f\xe2\x80\xa8\xa9\xff\xc3\xa9\xf0\x9f"
		buf := make([]byte, rng.IntN(24))
		for i := range buf {
			buf[i] = some[rng.IntN(len(some))]
			if rng.IntN(4) == 0 {
				buf[i] = byte(rng.IntN(256))
			}
		}
		want, _ := json.Marshal(string(buf))
		if got := appendJSONString(nil, string(buf)); string(got) != string(want) {
			t.Fatalf("%q: got %s, want %s", buf, got, want)
		}
	}
	if _, ok := appendFastJSON(nil, nil, map[string]string{}); ok {
		t.Error("a map took the fast encoding")
	}
}

// Error bodies other than a failed condition's are byte for byte what
// json.Encoder writes for writeErrorStatus's map.
func TestErrorJSONMatchesEncoder(t *testing.T) {
	errs := []twirp.Error{
		twirp.NotFoundError("key not found"),
		twirp.NewError(twirp.Internal, "internal error; <see> the log & \"more\""),
		twirp.InvalidArgumentError("key", "is not valid UTF-8"),
		errBodyTooLarge(1 << 20),
		twirp.NewError(twirp.Unavailable, "no leader").WithMeta("leader_url", "http://a/?x=1&y=<2>").WithMeta("b", "").
			WithMeta("a", "\u2028 ☃"),
	}
	for _, terr := range errs {
		body := map[string]any{"code": terr.Code(), "msg": terr.Msg()}
		if meta := terr.MetaMap(); len(meta) > 0 {
			body["meta"] = meta
		}
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(body); err != nil {
			t.Fatal(err)
		}
		if got := appendErrorJSON(nil, terr); string(got) != want.String() {
			t.Errorf("%v:\n got %s\nwant %s", terr, got, want.Bytes())
		}
	}
}

// decodeWriteSlow is what decodeJSON does with a put body: encoding/json,
// unknown fields and trailing data refused.
func decodeWriteSlow(data []byte) (restWrite, error) {
	var w restWrite
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return w, err
	}
	if extra := dec.Decode(&struct{}{}); extra != io.EOF {
		return w, errors.New("trailing data")
	}
	return w, nil
}

// checkDecodeWriteFast fails when the fast reader accepts a body that
// encoding/json refuses or reads differently.
func checkDecodeWriteFast(t *testing.T, body string) bool {
	t.Helper()
	data := []byte(body)
	if !utf8.Valid(data) {
		return false // decodeJSON refuses these before either reader
	}
	var fast restWrite
	if !decodeWriteFast(data, &fast) {
		return false
	}
	slow, err := decodeWriteSlow(data)
	if err != nil {
		t.Fatalf("%q: the fast reader took it, encoding/json says %v", body, err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q: fast %+v, encoding/json %+v", body, fast, slow)
	}
	return true
}

var decodeWriteCorpus = []string{
	`{"key":"k","value":"v"}`,
	` { "key" : "k" , "value" : "` + strings.Repeat("v", 256) + `" } ` + "\n",
	`{"key":"a/b","value":"","client_id":12,"sequence":3,"ack":2}`,
	`{"key":"k","value":"v","if_absent":true}`,
	`{"key":"k","value":"v","if_absent":false,"if_revision":0}`,
	`{"key":"k","value":"v","if_revision":0,"sequence":1,"client_id":1,"ack":0}`,
	`{"key":"k","value":"v","if_version":9999999999999999999}`,
	`{"key":"k","value":"v","if_value":"old","lease":5}`,
	`{"key":"k","value":"v","ttl_ms":1500}`,
	`{"key":"héllo ☃","value":"<&>"}`,
	`{}`,
	`{"value":"v"}`,
	// What the fast reader leaves to encoding/json:
	`{"key":"k","value":"v","if_version":18446744073709551615}`,
	`{"key":"k\"q","value":"v"}`,
	`{"key":"k\u0041","value":"v"}`,
	`{"KEY":"k","value":"v"}`,
	`{"key":"k","value":"v","extra":1}`,
	`{"key":"k","key":"k2","value":"v"}`,
	`{"key":null,"value":"v"}`,
	`{"key":"k","value":"v","client_id":-1}`,
	`{"key":"k","value":"v","client_id":1.0}`,
	`{"key":"k","value":"v","client_id":1e3}`,
	`{"key":"k","value":"v","client_id":01}`,
	`{"key":"k","value":"v","client_id":"1"}`,
	`{"key":"k","value":"v","if_absent":1}`,
	`{"key":"k","value":"v","if_absent":truex}`,
	`{"key":"k","value":"v"} {}`,
	`{"key":"k","value":"v"}x`,
	`{"key":"k","value":"v",}`,
	`{"key":"k" "value":"v"}`,
	`{"key":"k","value":v}`,
	`{"key":"k","value":"v"`,
	`{"key":"tab	in","value":"v"}`,
	`["k","v"]`,
	``,
}

// The fast reader takes the plain bodies clients send, and whatever it
// takes, it reads exactly as encoding/json does.
func TestDecodeWriteFastMatchesJSON(t *testing.T) {
	for i, body := range decodeWriteCorpus {
		took := checkDecodeWriteFast(t, body)
		if i < 12 && !took { // the first twelve are plain
			t.Errorf("%q: left to encoding/json", body)
		}
		if i >= 12 && took {
			t.Errorf("%q: the fast reader took it", body)
		}
	}
}

func FuzzDecodeWriteFast(f *testing.F) {
	for _, body := range decodeWriteCorpus {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body string) { checkDecodeWriteFast(t, body) })
}

// chunkWriter records what it is sent and the largest single write.
type chunkWriter struct {
	bytes.Buffer
	largest int
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	w.largest = max(w.largest, len(p))
	return w.Buffer.Write(p)
}

// An answer with a large value is written in pieces of about jsonChunk as
// it is encoded, never held whole (a value of control characters escapes
// to 6 bytes per byte: a 1 MiB value held 6 MiB per slow reader, and per
// watch stream that a write of it woke), and the pieces are exactly what
// json.Encoder writes, at every cut: multi-byte runes, escapes, invalid
// UTF-8.
func TestRESTJSONLargeValuesWrittenInPieces(t *testing.T) {
	values := []string{
		strings.Repeat("\x01", 1<<20),
		strings.Repeat("v", 300<<10),
		strings.Repeat("é☃🙂<&>\u2028", 20000),
		strings.Repeat("a", jsonPiece-1) + "🙂" + strings.Repeat("\xff\x80\x80\x80\x80", 5000) + "\xf0\x9f",
	}
	for i, value := range values {
		kv := &restKV{Key: "k", Value: value, ModRevision: 3}
		for _, v := range []any{kv, restList{KVs: []*restKV{kv, kv}, Revision: 3},
			restWatch{Events: []restEvent{{Type: "put", KV: kv, PrevKV: kv}}, NextIndex: 3, Revision: 3}} {
			var want bytes.Buffer
			if err := json.NewEncoder(&want).Encode(v); err != nil {
				t.Fatal(err)
			}
			var w chunkWriter
			b, ok := appendFastJSON(&w, nil, v)
			if !ok {
				t.Fatalf("%T: no fast encoding", v)
			}
			w.Write(b)
			if w.String() != want.String() {
				t.Fatalf("value %d, %T: the pieces differ from json.Encoder's answer", i, v)
			}
			if limit := jsonChunk + 6*jsonPiece; w.largest > limit || len(b) > limit {
				t.Fatalf("value %d, %T: a write of %d bytes (left %d), want at most %d", i, v, w.largest, len(b), limit)
			}
		}
	}
}

// largestWrite is a recorder that keeps the size of the largest write.
type largestWrite struct {
	*httptest.ResponseRecorder
	largest int
}

func (w *largestWrite) Write(p []byte) (int, error) {
	w.largest = max(w.largest, len(p))
	return w.ResponseRecorder.Write(p)
}

// A get, a list, a long poll and a watch stream of a value of 1 MiB of
// control characters (6 MiB as JSON) write it in pieces of about
// jsonChunk: the answer was built whole first, so that each client that did
// not read (or each of a thousand streams one such write woke) held 6 MiB
// and more of the replica's memory (100 stalled streams took a replica
// from 25 MiB to 2 GiB of resident memory after one put).
func TestRESTLargeValueAnswersWrittenInPieces(t *testing.T) {
	big := strings.Repeat("\x01", 1<<20)
	kv := newStreamKV()
	kv.m["big"] = big
	kv.list = func(*kvv1.ListRequest) (*kvv1.ListResponse, error) {
		return &kvv1.ListResponse{Kvs: []*kvv1.KeyValue{{Key: "big", Value: big}}}, nil
	}
	limits := DefaultLimits()
	limits.MaxWatchWait = time.Minute
	h := clientHandler(kv.scriptKV, limits, nil)
	serve := func(path string, header http.Header, feed func(cancel func())) *largestWrite {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req := httptest.NewRequest("GET", "http://127.0.0.1"+path, nil).WithContext(ctx)
		maps.Copy(req.Header, header)
		w := &largestWrite{ResponseRecorder: httptest.NewRecorder()}
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.ServeHTTP(w, req)
		}()
		if feed != nil {
			feed(cancel)
		}
		<-done
		return w
	}
	event := func() *kvv1.WatchResponse {
		return &kvv1.WatchResponse{NextAfterRevision: 2, Events: []*kvv1.Event{{Kv: &kvv1.KeyValue{Key: "big", Value: big, ModRevision: 2}}}}
	}
	limit := jsonChunk + 6*jsonPiece
	// And a page or a batch of many small values.
	small := strings.Repeat("\x01", 4000)
	var kvs []*kvv1.KeyValue
	var evs []*kvv1.Event
	for i := range 1000 {
		kv := &kvv1.KeyValue{Key: fmt.Sprintf("small/%04d", i), Value: small, ModRevision: uint64(i + 2)}
		kvs, evs = append(kvs, kv), append(evs, &kvv1.Event{Kv: kv})
	}
	smallList := func(*kvv1.ListRequest) (*kvv1.ListResponse, error) { return &kvv1.ListResponse{Kvs: kvs}, nil }
	smallEvents := func() *kvv1.WatchResponse { return &kvv1.WatchResponse{NextAfterRevision: 1001, Events: evs} }
	for _, c := range []struct {
		name, path string
		header     http.Header
		feed       func(cancel func())
	}{
		{"get", "/kvstore/get/big", nil, nil},
		{"list", "/kvstore/list", nil, nil},
		{"long poll", "/kvstore/watch/big?index=1&wait=30s", nil, func(func()) { kv.feed <- event() }},
		{"stream", "/kvstore/watch/big?index=1", http.Header{"Accept": {"text/event-stream"}}, func(cancel func()) {
			kv.feed <- event()
			waitUntil(t, "the stream waits for the next change", func() bool { return kv.calls.Load() >= 2 })
			cancel()
		}},
		{"list of small values", "/kvstore/list?prefix=small/", nil, nil},
		{"long poll of small values", "/kvstore/watch/small/?prefix=true&index=1&wait=30s", nil, func(func()) { kv.feed <- smallEvents() }},
		{"stream of small values", "/kvstore/watch/small/?prefix=true&index=1", http.Header{"Accept": {"text/event-stream"}}, func(cancel func()) {
			kv.feed <- smallEvents()
			waitUntil(t, "the stream waits for the next change", func() bool { return kv.calls.Load() >= 2 })
			cancel()
		}},
	} {
		if strings.Contains(c.name, "small") {
			kv.list = smallList
		}
		kv.calls.Store(0)
		w := serve(c.path, c.header, c.feed)
		if w.Code != http.StatusOK || w.Body.Len() < 6<<20 {
			t.Fatalf("%s: %d with %d bytes, want 200 with the whole value", c.name, w.Code, w.Body.Len())
		}
		if w.largest > limit {
			t.Errorf("%s: one write of %d bytes, want at most %d", c.name, w.largest, limit)
		}
	}
}
