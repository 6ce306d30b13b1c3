package durio

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/kvraft/kvwire"
	kvv1 "github.com/ruaft/ruaft/rpc/kv/v1"
)

// idRecord is a log record that carries a request id.
type idRecord struct {
	listener, msg, id string
}

// idLog is an slog.Handler that keeps the records carrying a request_id
// (with their listener, from the logger's attributes) and the text of
// every record's attributes (to check what never reaches the log).
type idLog struct {
	attrs []slog.Attr // from WithAttrs
	*idStore
}

type idStore struct {
	mu      sync.Mutex // guards records and all
	records []idRecord
	all     strings.Builder
}

func newIDLog() *idLog { return &idLog{idStore: &idStore{}} }

func (h *idLog) Enabled(context.Context, slog.Level) bool { return true }

func (h *idLog) Handle(_ context.Context, r slog.Record) error {
	rec := idRecord{msg: r.Message}
	note := func(a slog.Attr) bool {
		switch a.Key {
		case "listener":
			rec.listener = a.Value.String()
		case "request_id":
			rec.id = a.Value.String()
		}
		return true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range h.attrs {
		note(a)
		h.all.WriteString(a.String() + " ")
	}
	r.Attrs(func(a slog.Attr) bool {
		h.all.WriteString(a.String() + " ")
		return note(a)
	})
	h.all.WriteString("\n")
	if rec.id != "" {
		h.records = append(h.records, rec)
	}
	return nil
}

func (h *idLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &idLog{attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], attrs...), idStore: h.idStore}
}

func (h *idLog) WithGroup(string) slog.Handler { return h }

// find returns the records with id logged by the peer listener.
func (h *idLog) find(id string) []idRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []idRecord
	for _, r := range h.records {
		if r.id == id && r.listener == "peer" {
			out = append(out, r)
		}
	}
	return out
}

func (h *idLog) text() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.all.String()
}

// A request sent to a follower keeps its X-Request-Id at the leader: a
// write forwarded in a batch (over the peer stream, or per-request Twirp
// without it) and a call forwarded over KVService are both logged by the
// leader's peer listener under the id the client sent, or under the one
// the follower made up for a request that came without a usable id.
func TestForwardedRequestsKeepTheirID(t *testing.T) {
	for _, stream := range []bool{true, false} {
		name := map[bool]string{true: "peer stream", false: "twirp"}[stream]
		t.Run(name, func(t *testing.T) {
			logs := make([]*idLog, 3)
			for i := range logs {
				logs[i] = newIDLog()
			}
			c := startLoggedTestCluster(t, 3, "http", func(cfg *Config) { cfg.NoPeerStream = !stream },
				func(id int) *slog.Logger { return slog.New(logs[id]) })
			leader, _ := c.waitLeader(t)
			follower := (leader + 1) % 3
			base := "http://" + c.replicas[follower].ClientAddr()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			// loggedAtLeader waits until a replica other than the
			// follower (the leader, or one that took over) logs id on its
			// peer listener under msg.
			loggedAtLeader := func(what, id, msg string) {
				t.Helper()
				deadline := time.Now().Add(10 * time.Second)
				for {
					for i, l := range logs {
						for _, r := range l.find(id) {
							if i != follower && r.msg == msg {
								return
							}
						}
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s: no %q record with request id %q on another replica's peer listener within 10s", what, msg, id)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			withID := func(id string) context.Context {
				hctx, err := twirp.WithHTTPRequestHeaders(ctx, http.Header{RequestIDHeader: {id}})
				if err != nil {
					t.Fatal(err)
				}
				return hctx
			}
			kv := kvv1.NewKVServiceProtobufClient(base, http.DefaultClient)
			if _, err := kv.Put(withID("put-1"), &kvv1.PutRequest{Key: "k", Value: "v"}); err != nil {
				t.Fatal(err)
			}
			loggedAtLeader("forwarded put", "put-1", "forwarded write")
			if _, err := kv.Delete(withID("delete-1"), &kvv1.DeleteRequest{Key: "k"}); err != nil {
				t.Fatal(err)
			}
			loggedAtLeader("forwarded delete", "delete-1", "forwarded write")
			if _, err := kv.LeaseGrant(withID("lease-1"), &kvv1.LeaseGrantRequest{TtlMs: 60_000}); err != nil {
				t.Fatal(err)
			}
			loggedAtLeader("forwarded lease grant", "lease-1", "request")

			// Without an id, or with one that is not usable, the follower
			// makes one up, echoes it, and the leader logs that one.
			for _, sent := range []string{"", "two words", `"quoted"`, strings.Repeat("x", kvwire.MaxRequestIDLen+1)} {
				code, h, body := request(t, "POST", base+"/kvstore/put", `{"key":"k2","value":"v"}`,
					map[string]string{"Content-Type": "application/json", RequestIDHeader: sent})
				id := h.Get(RequestIDHeader)
				if code != http.StatusOK || id == "" || id == sent || !kvwire.ValidRequestID(id) {
					t.Fatalf("put with id %q: %d %v, id %q; want 200 and a fresh id", sent, code, body, id)
				}
				loggedAtLeader("put with id "+sent, id, "forwarded write")
			}
			for i, l := range logs {
				if text := l.text(); strings.Contains(text, "two words") || strings.Contains(text, `"quoted"`) ||
					strings.Contains(text, strings.Repeat("x", kvwire.MaxRequestIDLen+1)) {
					t.Fatalf("replica %d logged an id it should have refused:\n%s", i, text)
				}
			}
		})
	}
}

// A peer that sends an id that is not usable (control characters, too
// long) does not get it into the leader's log: the leader logs the write or
// the call under a fresh id.
func TestLeaderRefusesBadForwardedIDs(t *testing.T) {
	logs := make([]*idLog, 3)
	for i := range logs {
		logs[i] = newIDLog()
	}
	c := startLoggedTestCluster(t, 3, "http", nil, func(id int) *slog.Logger { return slog.New(logs[id]) })
	leader, _ := c.waitLeader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	peer := "http://" + c.replicas[leader].PeerAddr()
	bad := []string{"\x1b[31mred\x1b[0m\nfake line", strings.Repeat("y", 4096), "tab\there"}
	batch := &kvv1.WriteBatchRequest{}
	for i, id := range bad {
		batch.Ops = append(batch.Ops, &kvv1.WriteOp{RequestId: id,
			Op: &kvv1.WriteOp_Put{Put: &kvv1.PutRequest{Key: "bad" + string(rune('0'+i)), Value: "v"}}})
	}
	resp, err := kvv1.NewForwardServiceProtobufClient(peer, http.DefaultClient).WriteBatch(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.GetResults() {
		if r.GetCode() != kvv1.ResultCode_RESULT_CODE_OK {
			t.Fatalf("write %d: %v", i, r)
		}
	}
	// Go's HTTP client refuses control characters in a header; a long id
	// and one with a space still travel.
	for _, id := range []string{strings.Repeat("z", 4096), "two words"} {
		hctx, err := twirp.WithHTTPRequestHeaders(ctx, http.Header{RequestIDHeader: {id}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kvv1.NewKVServiceProtobufClient(peer, http.DefaultClient).Status(hctx, &kvv1.StatusRequest{}); err != nil {
			t.Fatal(err)
		}
		bad = append(bad, id)
	}
	l := logs[leader]
	deadline := time.Now().Add(10 * time.Second)
	for {
		writes, calls := 0, 0
		l.mu.Lock()
		for _, r := range l.records {
			switch {
			case r.listener != "peer":
			case r.msg == "forwarded write" && kvwire.ValidRequestID(r.id):
				writes++
			case r.msg == "request" && kvwire.ValidRequestID(r.id):
				calls++
			}
		}
		l.mu.Unlock()
		if writes >= 3 && calls >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leader logged %d forwarded writes and %d calls with a usable id within 10s, want 3 and 2:\n%s", writes, calls, l.text())
		}
		time.Sleep(10 * time.Millisecond)
	}
	text := l.text()
	for _, id := range bad {
		if strings.Contains(text, id) {
			t.Fatalf("the leader logged the bad id %q:\n%s", id, text)
		}
	}
	if strings.Contains(text, "\x1b") || strings.Contains(text, "fake line") {
		t.Fatalf("the leader's log holds a control character or the injected line:\n%s", text)
	}
}
