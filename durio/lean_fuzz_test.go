package durio

import (
	"bufio"
	"bytes"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// FuzzLeanParse: whenever the lean loop would serve a request itself, Go's
// own request parser must read the same bytes the same way — the same
// method, target, Host, length, connection close and header fields, and the
// same end of the header — so that the two can never disagree on where a
// request ends or what it asks.
func FuzzLeanParse(f *testing.F) {
	for _, seed := range []string{
		"GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /kvstore/put HTTP/1.1\r\nHost: h:1\r\nContent-Length: 5\r\nContent-Type: application/json\r\n\r\nhello",
		"DELETE /kvstore/a%2Fb?x=1 HTTP/1.1\r\nhost: [::1]:9\r\nconnection: close\r\n\r\n",
		"POST /twirp/kv.v1.KVService/Get HTTP/1.1\r\nHost: h\r\nContent-Length: 0005\r\n\r\n{}{}{",
		"GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\nX-A:\t v \t\r\nX-A: w\r\nConnection: keep-alive, close\r\n\r\n",
		"GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
		"GET /kvstore/get/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /kvstore/get/a HTTP/1.1\nHost: h\n\n",
		"OPTIONS /kvstore/put HTTP/1.1\r\nHost: h\r\nOrigin: http://a.example\r\nAccess-Control-Request-Method: POST\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var p leanRequest
		br := bufio.NewReaderSize(bytes.NewReader(raw), leanReadBuffer)
		if _, err := br.Peek(1); err != nil {
			return
		}
		n, verdict := p.parse(br, leanReadBuffer)
		if verdict != leanServe {
			return
		}
		if _, err := url.ParseRequestURI(p.target); err != nil {
			return // handed over too (leanConn.request)
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			t.Fatalf("the lean loop serves %q, net/http refuses it: %v", raw, err)
		}
		if !bytes.HasSuffix(raw[:n], []byte("\r\n\r\n")) || bytes.Contains(raw[:n-2], []byte("\r\n\r\n")) {
			t.Fatalf("header of %d bytes does not end at the first blank line: %q", n, raw)
		}
		switch {
		case req.Method != p.method:
			t.Fatalf("method %q, net/http %q", p.method, req.Method)
		case req.RequestURI != p.target:
			t.Fatalf("target %q, net/http %q", p.target, req.RequestURI)
		case req.Host != p.host:
			t.Fatalf("host %q, net/http %q", p.host, req.Host)
		case req.ContentLength != p.length:
			t.Fatalf("length %d, net/http %d", p.length, req.ContentLength)
		case req.Close != p.close:
			t.Fatalf("close %v, net/http %v", p.close, req.Close)
		case len(req.TransferEncoding) != 0:
			t.Fatalf("net/http sees a transfer encoding %v", req.TransferEncoding)
		}
		for name, want := range req.Header {
			if got := p.header[name]; !slices.Equal(got, want) {
				t.Fatalf("header %q = %q, net/http %q", name, got, want)
			}
		}
		for name := range p.header {
			if _, ok := req.Header[name]; !ok && !strings.EqualFold(name, "Host") {
				t.Fatalf("header %q, which net/http does not have", name)
			}
		}
	})
}
