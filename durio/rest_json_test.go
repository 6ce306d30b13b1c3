package durio

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/twitchtv/twirp"
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
		restWritten{Revision: 1, Existed: &no}, restWritten{Revision: 9, Lease: 5, TTLMs: 1000})
	for _, v := range vals {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(v); err != nil {
			t.Fatal(err)
		}
		got, ok := appendFastJSON(nil, v)
		if !ok {
			t.Fatalf("%#v: no fast encoding", v)
		}
		if string(got) != want.String() {
			t.Errorf("%#v:\n got %s\nwant %s", v, got, want.Bytes())
		}
	}
	if _, ok := appendFastJSON(nil, map[string]string{}); ok {
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
