package durio

import (
	"io"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/twitchtv/twirp"
)

// The REST routes' hot bodies (the put and append request, the get and
// write answers) are read and written here without reflection. Both
// directions are exact stand-ins for encoding/json: an answer is the same
// bytes json.Encoder writes (TestRESTJSONMatchesEncoder), and a request
// body the fast reader does not fully understand (escapes, null, case
// variants of field names, numbers other than plain digits, duplicates,
// anything malformed) goes to encoding/json, which then decides and words
// the error (TestDecodeWriteFastMatchesJSON, FuzzDecodeWriteFast).

// jsonBufs holds answer buffers between requests.
var jsonBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledJSON is the largest buffer put back in jsonBufs: a rare large
// value should not pin its buffer.
const maxPooledJSON = 64 << 10

// writeAppended writes the bytes appendBody appends to a pooled buffer,
// unless it reports false (then nothing is written).
func writeAppended(w io.Writer, appendBody func([]byte) ([]byte, bool)) bool {
	bp := jsonBufs.Get().(*[]byte)
	b, ok := appendBody((*bp)[:0])
	if ok {
		_, _ = w.Write(b)
	}
	if cap(b) <= maxPooledJSON {
		*bp = b[:0]
		jsonBufs.Put(bp)
	}
	return ok
}

// plainJSON reports whether s needs no escaping in JSON as encoding/json
// writes it (which also escapes <, > and &, and anything not ASCII it
// checks rune by rune).
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x80, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// appendJSONString appends s as encoding/json quotes it.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendJSONEscaped(b, s)
	return append(b, '"')
}

// appendJSONEscaped appends s escaped as encoding/json escapes a string's
// contents (HTML characters, U+2028 and U+2029 included; invalid UTF-8
// becomes U+FFFD), without the quotes and without allocating.
func appendJSONEscaped(b []byte, s string) []byte {
	if plainJSON(s) {
		return append(b, s...)
	}
	const hex = "0123456789abcdef"
	start := 0 // s[start:i] is yet to be appended as it is
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(b, s[start:]...)
}

// jsonChunk is about the most of an answer held before it is written
// (see appendJSONStringTo).
const jsonChunk = 32 << 10

// jsonPiece is how much of a large string is escaped at a time: at most
// 6 bytes per byte (\u0001), so a piece adds at most 24 KiB to a chunk.
const jsonPiece = 4 << 10

// appendJSONStringTo is appendJSONString for a string that may be large
// (a value): when w is not nil, b is written to w, and appended to from
// empty again, whenever it passes jsonChunk, so that a large value's JSON
// (up to 6 MiB for a 1 MiB value of control characters) is never held
// whole. A client that reads slowly, or each of the watch streams and
// long polls that one large write wakes, then holds a chunk of its answer
// instead of all of it. A write error is left for the caller's next write
// to meet (a failed connection fails every write).
func appendJSONStringTo(w io.Writer, b []byte, s string) []byte {
	if w == nil || len(s) <= jsonPiece {
		return appendJSONString(b, s)
	}
	b = append(b, '"')
	for len(s) > 0 {
		n := min(len(s), jsonPiece)
		// Cut at a rune's start, where encoding/json's escaping of the
		// whole string is between runes too. Three continuation bytes
		// back there is none (invalid UTF-8): then any byte is.
		for back := 0; back < utf8.UTFMax-1 && n < len(s) && !utf8.RuneStart(s[n]); back++ {
			n--
		}
		if n < len(s) && !utf8.RuneStart(s[n]) {
			n = min(len(s), jsonPiece)
		}
		b = appendJSONEscaped(b, s[:n])
		s = s[n:]
		b = flushJSON(w, b)
	}
	return append(b, '"')
}

// flushJSON writes b to w and returns it emptied once it holds jsonChunk
// or more (w not nil): between the keys of a page and the events of a
// watch, as within a large value, so that many small values do not add
// up to a whole answer held either.
func flushJSON(w io.Writer, b []byte) []byte {
	if w == nil || len(b) < jsonChunk {
		return b
	}
	_, _ = w.Write(b)
	return b[:0]
}

// appendJSON appends kv as json.Encoder writes a restKV (without the
// newline), writing to w on the way when the value is large (see
// appendJSONStringTo; w may be nil).
func (kv *restKV) appendJSON(w io.Writer, b []byte) []byte {
	b = append(b, `{"key":`...)
	b = appendJSONString(b, kv.Key)
	b = append(b, `,"value":`...)
	b = appendJSONStringTo(w, b, kv.Value)
	b = append(b, `,"create_revision":`...)
	b = strconv.AppendUint(b, kv.CreateRevision, 10)
	b = append(b, `,"mod_revision":`...)
	b = strconv.AppendUint(b, kv.ModRevision, 10)
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, kv.Version, 10)
	if kv.Lease != 0 {
		b = append(b, `,"lease":`...)
		b = strconv.AppendUint(b, kv.Lease, 10)
	}
	return append(b, '}')
}

// appendJSON appends w as json.Encoder writes a restWritten (without the
// newline).
func (w *restWritten) appendJSON(b []byte) []byte {
	b = append(b, `{"revision":`...)
	b = strconv.AppendUint(b, w.Revision, 10)
	if w.Existed != nil {
		b = append(b, `,"existed":`...)
		b = strconv.AppendBool(b, *w.Existed)
	}
	if w.Lease != 0 {
		b = append(b, `,"lease":`...)
		b = strconv.AppendUint(b, w.Lease, 10)
	}
	if w.TTLMs != 0 {
		b = append(b, `,"ttl_ms":`...)
		b = strconv.AppendUint(b, w.TTLMs, 10)
	}
	return append(b, '}')
}

// appendKV appends kv as json.Encoder writes a *restKV (null for nil).
func appendKV(w io.Writer, b []byte, kv *restKV) []byte {
	if kv == nil {
		return append(b, "null"...)
	}
	return kv.appendJSON(w, b)
}

// appendJSON appends l as json.Encoder writes a restList (without the
// newline), writing to w on the way (see appendJSONStringTo).
func (l *restList) appendJSON(w io.Writer, b []byte) []byte {
	b = append(b, `{"kvs":`...)
	if l.KVs == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, kv := range l.KVs {
			if i > 0 {
				b = append(b, ',')
			}
			b = flushJSON(w, appendKV(w, b, kv))
		}
		b = append(b, ']')
	}
	b = append(b, `,"more":`...)
	b = strconv.AppendBool(b, l.More)
	b = append(b, `,"revision":`...)
	b = strconv.AppendUint(b, l.Revision, 10)
	return append(b, '}')
}

// appendJSON appends a as json.Encoder writes a restWatch (without the
// newline), writing to w on the way (see appendJSONStringTo).
func (a *restWatch) appendJSON(w io.Writer, b []byte) []byte {
	b = append(b, `{"events":`...)
	if a.Events == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, ev := range a.Events {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"type":`...)
			b = appendJSONString(b, ev.Type)
			b = append(b, `,"kv":`...)
			b = appendKV(w, b, ev.KV)
			if ev.PrevKV != nil {
				b = append(b, `,"prev_kv":`...)
				b = ev.PrevKV.appendJSON(w, b)
			}
			b = flushJSON(w, append(b, '}'))
		}
		b = append(b, ']')
	}
	b = append(b, `,"next_index":`...)
	b = strconv.AppendUint(b, a.NextIndex, 10)
	b = append(b, `,"revision":`...)
	b = strconv.AppendUint(b, a.Revision, 10)
	return append(b, '}')
}

// appendFastJSON appends v's JSON and a newline, as json.Encoder would,
// for the types that have a reflection-free encoding, writing to w (if
// not nil) on the way when it holds large values (see
// appendJSONStringTo); ok is false for any other type, and then nothing
// was written.
func appendFastJSON(w io.Writer, b []byte, v any) (_ []byte, ok bool) {
	switch v := v.(type) {
	case restKV:
		b = v.appendJSON(w, b)
	case *restKV:
		if v == nil {
			return b, false
		}
		b = v.appendJSON(w, b)
	case restWritten:
		b = v.appendJSON(b)
	case restList:
		b = v.appendJSON(w, b)
	case restWatch:
		b = v.appendJSON(w, b)
	default:
		return b, false
	}
	return append(b, '\n'), true
}

// appendErrorJSON appends a Twirp error body and a newline as json.Encoder
// writes the map {"code", "msg"[, "meta"]} of writeErrorStatus: keys
// sorted, meta left out when empty.
func appendErrorJSON(b []byte, terr twirp.Error) []byte {
	b = append(b, `{"code":`...)
	b = appendJSONString(b, string(terr.Code()))
	if meta := terr.MetaMap(); len(meta) > 0 {
		keys := make([]string, 0, len(meta))
		for k := range meta {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, `,"meta":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, meta[k])
		}
		b = append(b, '}')
	}
	b = append(b, `,"msg":`...)
	b = appendJSONString(b, terr.Msg())
	return append(b, "}\n"...)
}

// writeFields are the fields of a put or append body, as bits (a field
// seen twice sends the body to encoding/json).
const (
	fKey = 1 << iota
	fValue
	fClientID
	fSequence
	fAck
	fLease
	fTTLMs
	fIfAbsent
	fIfRevision
	fIfVersion
	fIfValue
)

// decodeWriteFast reads a put or append body into dst when it is plain
// JSON (see the top of this file), reporting whether it did; dst is only
// valid then. data is valid UTF-8 (decodeJSON checks first).
func decodeWriteFast(data []byte, dst *restWrite) bool {
	p := jsonScan{data: data}
	p.space()
	if !p.byte('{') {
		return false
	}
	seen := 0
	p.space()
	if p.byte('}') {
		return p.end()
	}
	for {
		p.space()
		name, ok := p.rawString()
		if !ok {
			return false
		}
		p.space()
		if !p.byte(':') {
			return false
		}
		p.space()
		var bit int
		switch string(name) {
		case "key":
			bit = fKey
			s, ok := p.str()
			if !ok {
				return false
			}
			dst.Key = &s
		case "value":
			bit = fValue
			s, ok := p.str()
			if !ok {
				return false
			}
			dst.Value = &s
		case "client_id":
			bit, ok = fClientID, p.uint(&dst.ClientID)
		case "sequence":
			bit, ok = fSequence, p.uint(&dst.Sequence)
		case "ack":
			bit, ok = fAck, p.uint(&dst.Ack)
		case "lease":
			bit, ok = fLease, p.uint(&dst.Lease)
		case "ttl_ms":
			bit, ok = fTTLMs, p.uint(&dst.TTLMs)
		case "if_absent":
			bit, ok = fIfAbsent, p.bool(&dst.IfAbsent)
		case "if_revision":
			var n uint64
			bit, ok = fIfRevision, p.uint(&n)
			dst.IfRevision = &n
		case "if_version":
			var n uint64
			bit, ok = fIfVersion, p.uint(&n)
			dst.IfVersion = &n
		case "if_value":
			bit = fIfValue
			s, sok := p.str()
			ok = sok
			dst.IfValue = &s
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		p.space()
		if p.byte('}') {
			return p.end()
		}
		if !p.byte(',') {
			return false
		}
	}
}

// jsonScan reads the plain subset of JSON decodeWriteFast accepts.
type jsonScan struct {
	data []byte
	i    int
}

func (p *jsonScan) space() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// byte consumes c if it is next.
func (p *jsonScan) byte(c byte) bool {
	if p.i < len(p.data) && p.data[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end reports whether only white space is left.
func (p *jsonScan) end() bool {
	p.space()
	return p.i == len(p.data)
}

// rawString reads a string without escapes or control characters,
// returning its bytes (aliasing data).
func (p *jsonScan) rawString() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.data) {
		switch c := p.data[p.i]; {
		case c == '"':
			s := p.data[start:p.i]
			p.i++
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		}
		p.i++
	}
	return nil, false
}

func (p *jsonScan) str() (string, bool) {
	b, ok := p.rawString()
	return string(b), ok
}

// uint reads a number of at most 19 digits without a leading zero (so it
// fits a uint64): what encoding/json stores in a uint64 field the same way.
func (p *jsonScan) uint(dst *uint64) bool {
	start := p.i
	var n uint64
	for p.i < len(p.data) && p.data[p.i] >= '0' && p.data[p.i] <= '9' {
		n = n*10 + uint64(p.data[p.i]-'0')
		p.i++
	}
	digits := p.i - start
	if digits == 0 || digits > 19 || digits > 1 && p.data[start] == '0' {
		return false
	}
	if p.i < len(p.data) {
		switch p.data[p.i] {
		case '.', 'e', 'E':
			return false
		}
	}
	*dst = n
	return true
}

func (p *jsonScan) bool(dst *bool) bool {
	rest := p.data[p.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		*dst, p.i = true, p.i+4
	case len(rest) >= 5 && string(rest[:5]) == "false":
		*dst, p.i = false, p.i+5
	default:
		return false
	}
	return true
}
