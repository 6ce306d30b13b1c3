package durio_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// The exactly-once table cannot be hijacked or grown without bound, and the
// value cap covers Append growth (issue 14, item 6), with real processes
// over REST.
func TestE2ESessionsAndValueCap(t *testing.T) {
	const maxSessions = 100
	c := startCluster(t, 3, "noop", "--max-value-bytes", "4096", "--max-sessions", strconv.Itoa(maxSessions))
	u := c.clients[1]
	code, body := httpDo(t, "POST", u+"/kvstore/session", "")
	id, _ := body["client_id"].(float64)
	if code != 200 || id <= 0 || id >= 1<<53 || body["idle_timeout_seconds"] != float64(600) {
		t.Fatalf("open session: %d %v", code, body)
	}
	owner := strconv.FormatUint(uint64(id), 10)
	put := func(key, value, header string) (int, map[string]any) {
		return httpDo(t, "POST", u+"/kvstore/put", `{"key":"`+key+`","value":"`+value+`"`+header+`}`)
	}
	if code, body := put("k", "v1", `,"client_id":`+owner+`,"sequence":1`); code != 200 {
		t.Fatalf("owner's write 1: %d %v", code, body)
	}

	// The hijack of issue 14: someone else's made-up id with the largest
	// sequence. Refused (412, no_session), and the owner is unaffected.
	code, body = put("k", "evil", `,"client_id":4242,"sequence":`+strconv.FormatUint(math.MaxUint64, 10))
	if meta, _ := body["meta"].(map[string]any); code != 412 || meta["reason"] != "no_session" {
		t.Fatalf("hijack attempt: %d %v, want 412 no_session", code, body)
	}
	if code, body := put("k", "v2", `,"client_id":`+owner+`,"sequence":2,"ack":2`); code != 200 {
		t.Fatalf("owner's write 2 after the hijack attempt: %d %v", code, body)
	}
	// A retry of write 2 is answered, not applied again; DELETE takes the
	// header as query parameters.
	if code, _ := httpDo(t, "POST", u+"/kvstore/append", `{"key":"k","value":"+","client_id":`+owner+`,"sequence":3}`); code != 200 {
		t.Fatalf("append: %d", code)
	}
	if code, _ := httpDo(t, "POST", u+"/kvstore/append", `{"key":"k","value":"+","client_id":`+owner+`,"sequence":3}`); code != 200 {
		t.Fatalf("append retry: %d", code)
	}
	if code, body := httpDo(t, "GET", u+"/kvstore/get/k", ""); code != 200 || body["value"] != "v2+" {
		t.Fatalf("after a retried append: %d %v, want v2+", code, body)
	}
	if code, body := httpDo(t, "DELETE", u+"/kvstore/k?client_id="+owner+"&sequence=4&ack=4", ""); code != 200 {
		t.Fatalf("delete with a header: %d %v", code, body)
	}
	if code, _ := httpDo(t, "DELETE", u+"/kvstore/k?client_id=x", ""); code != 400 {
		t.Fatalf("delete with a bad header: %d, want 400", code)
	}

	// Append growth past the cap: a clear 400 with reason too_large, and the
	// value stays as it was.
	chunk := strings.Repeat("x", 1000)
	for i := range 4 {
		if code, body := httpDo(t, "POST", u+"/kvstore/append", `{"key":"big","value":"`+chunk+`"}`); code != 200 {
			t.Fatalf("append %d: %d %v", i, code, body)
		}
	}
	code, body = httpDo(t, "POST", u+"/kvstore/append", `{"key":"big","value":"`+chunk+`"}`)
	if meta, _ := body["meta"].(map[string]any); code != 400 || meta["reason"] != "too_large" {
		t.Fatalf("append past the cap: %d %v, want 400 too_large", code, body)
	}
	if code, body := httpDo(t, "GET", u+"/kvstore/get/big", ""); code != 200 || len(body["value"].(string)) != 4000 {
		t.Fatalf("value after a refused append: %d, %d bytes", code, len(fmt.Sprint(body["value"])))
	}

	// 20,000 distinct client ids (2,000 under the race detector, whose
	// replicas are several times slower): made-up ids are refused and leave
	// nothing; opened sessions past the cap evict the least recently used
	// ones.
	total := int64(20000)
	if raceEnabled {
		total = 2000
	}
	var wg sync.WaitGroup
	var bad, busy atomic.Int64
	next := atomic.Int64{}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for range 32 {
		wg.Go(func() {
			for {
				n := next.Add(1)
				if n > total {
					return
				}
				var req *http.Request
				if n%2 == 0 {
					req, _ = http.NewRequest("POST", c.clients[n%3]+"/kvstore/session", nil)
				} else {
					req, _ = http.NewRequest("POST", c.clients[n%3]+"/kvstore/put",
						strings.NewReader(`{"key":"a","value":"b","client_id":`+strconv.FormatInt(1_000_000+n, 10)+`,"sequence":1}`))
				}
				req.Header.Set("Content-Type", "application/json") // every write, as CSRF protection asks
				resp, err := hc.Do(req)
				if err != nil {
					bad.Add(1)
					continue
				}
				resp.Body.Close()
				switch want := map[bool]int{true: 200, false: 412}[n%2 == 0]; resp.StatusCode {
				case want:
				case 503, 504:
					busy.Add(1) // an election on a loaded machine; nothing wrong
				default:
					bad.Add(1) // a made-up id applied (200), or any other answer
				}
			}
		})
	}
	wg.Wait()
	if b, y := bad.Load(), busy.Load(); b > 0 || y > total/10 {
		t.Fatalf("of %d requests, %d got a wrong answer and %d a 503/504", total, b, y)
	}
	for i, cu := range c.clients {
		st, err := kvv1.NewKVServiceProtobufClient(cu, http.DefaultClient).Status(context.Background(), &kvv1.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		// A follower may lag a few entries; none can exceed the cap.
		if st.GetSessions() > maxSessions || st.GetSessions() == 0 {
			t.Fatalf("replica %d holds %d sessions, cap %d", i, st.GetSessions(), maxSessions)
		}
	}
	// The owner's session was the least recently used: evicted. Its next
	// write is refused, not applied under a stranger's numbering.
	if code, body := put("k", "late", `,"client_id":`+owner+`,"sequence":5,"ack":5`); code != 412 {
		t.Fatalf("write in an evicted session: %d %v, want 412", code, body)
	}
}
