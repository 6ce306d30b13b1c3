package backup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/durio/backup"
	"github.com/ruaft/ruaft/durio/client"
	"github.com/ruaft/ruaft/durio/duriotest"
	"github.com/ruaft/ruaft/persist"
)

// startReplica starts a one-member replica in process with n keys written,
// and returns its client URL.
func startReplica(t *testing.T, n int) string {
	t.Helper()
	base := duriotest.StartOne(t)
	c, err := client.New([]string{base}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range n {
		if err := c.Put(ctx, "k"+strconv.Itoa(i), "v"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	return base
}

// deadURL is a loopback URL nothing listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	return "http://" + ln.Addr().String()
}

// Save fetches a snapshot past a dead endpoint, ReadFile verifies it, and
// Restore seeds an empty store with it once (never a store that holds raft
// state).
func TestSaveReadRestore(t *testing.T) {
	base := startReplica(t, 20)
	path := filepath.Join(t.TempDir(), "snap.durio")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hdr, err := backup.Save(ctx, http.DefaultClient, []string{deadURL(t), base}, path)
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Index == 0 || hdr.Term == 0 || hdr.Bytes <= 0 || hdr.Replica != 0 {
		t.Fatalf("implausible header %+v", hdr)
	}
	got, data, keys, err := backup.ReadFile(path, 1<<20)
	if err != nil || got != hdr || keys != 20 || int64(len(data)) != hdr.Bytes {
		t.Fatalf("read back: %+v, %d bytes, %d keys, %v; saved %+v", got, len(data), keys, err, hdr)
	}
	if _, _, _, err := backup.ReadFile(path, hdr.Bytes-1); !errors.Is(err, backup.ErrBadSnapshot) {
		t.Fatalf("a state above maxBytes: %v, want ErrBadSnapshot", err)
	}

	store := persist.NewMemory()
	if err := backup.Restore(ctx, store, hdr, data); err != nil {
		t.Fatal(err)
	}
	st, err := store.Load(ctx)
	if err != nil || st.Snapshot.Index != hdr.Index || st.HardState.Term != hdr.Term || st.HardState.Commit != hdr.Index ||
		!bytes.Equal(st.Snapshot.Data, data) {
		t.Fatalf("restored store: %+v %v", st.HardState, err)
	}
	if err := backup.Restore(ctx, store, hdr, data); err == nil {
		t.Fatal("a second restore into a store with raft state was accepted")
	}
}

// Every kind of damage to a snapshot file is refused with ErrBadSnapshot.
func TestReadFileRefusesDamage(t *testing.T) {
	base := startReplica(t, 3)
	dir := t.TempDir()
	path := filepath.Join(dir, "snap.durio")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hdr, err := backup.Save(ctx, http.DefaultClient, []string{base}, path)
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	prefix := backup.Prefix(hdr)
	if !bytes.HasPrefix(good, prefix) {
		t.Fatalf("the file does not start with Prefix(its header)")
	}
	state := good[len(prefix):]
	flipped := bytes.Clone(good)
	flipped[len(flipped)-1] ^= 0xff
	wrongLen := hdr
	wrongLen.Bytes++
	undecodable := []byte("not a kvraft state")
	lying := backup.NewHeader(hdr.Index, hdr.Term, 0, undecodable)
	// A damaged header: the digits of the term and of the index changed,
	// the header checksum kept (the state's checksum covers neither).
	headerLine := good[len("durio-snapshot 1\n") : len(prefix)-1]
	var fields map[string]any
	if err := json.Unmarshal(headerLine, &fields); err != nil || fields["header_sha256"] == nil {
		t.Fatalf("the header %s has no header_sha256 (%v)", headerLine, err)
	}
	damaged := func(field string, v uint64) []byte {
		f := maps.Clone(fields)
		f[field] = v
		line, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		return append(append(append([]byte("durio-snapshot 1\n"), line...), '\n'), state...)
	}
	badSum := maps.Clone(fields)
	badSum["header_sha256"] = strings.Repeat("0", 64)
	badSumLine, _ := json.Marshal(badSum)
	for name, b := range map[string][]byte{
		"empty":                   nil,
		"no magic":                append([]byte("durio-snapshot 2\n"), good[len("durio-snapshot 1\n"):]...),
		"no header line":          []byte("durio-snapshot 1\n"),
		"long header":             append([]byte("durio-snapshot 1\n"), bytes.Repeat([]byte(" "), 5<<10)...),
		"unknown field":           append([]byte("durio-snapshot 1\n{\"index\":1,\"extra\":1}\n"), state...),
		"no index":                append([]byte("durio-snapshot 1\n{\"bytes\":0,\"sha256\":\"\"}\n"), state...),
		"truncated":               good[:len(good)-1],
		"extra bytes":             append(bytes.Clone(good), 0),
		"flipped byte":            flipped,
		"wrong length":            append(backup.Prefix(wrongLen), append(bytes.Clone(state), 0)...),
		"undecodable":             append(backup.Prefix(lying), undecodable...),
		"damaged term":            damaged("term", hdr.Term^1),
		"damaged index":           damaged("index", hdr.Index+8),
		"damaged header checksum": append(append(append([]byte("durio-snapshot 1\n"), badSumLine...), '\n'), state...),
	} {
		p := filepath.Join(dir, "bad")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := backup.ReadFile(p, 1<<20); !errors.Is(err, backup.ErrBadSnapshot) {
			t.Errorf("%s: %v, want ErrBadSnapshot", name, err)
		}
	}

	// A file written before header checksums (no header_sha256) is read
	// as it was, with the state's checksum only.
	old := maps.Clone(fields)
	delete(old, "header_sha256")
	oldLine, _ := json.Marshal(old)
	p := filepath.Join(dir, "old")
	if err := os.WriteFile(p, append(append(append([]byte("durio-snapshot 1\n"), oldLine...), '\n'), state...), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _, _, err := backup.ReadFile(p, 1<<20); err != nil || got.Index != hdr.Index || got.Term != hdr.Term {
		t.Fatalf("a file without a header checksum: %+v, %v; want index %d term %d", got, err, hdr.Index, hdr.Term)
	}
}

// Save gives up on a cluster that serves no snapshot (every endpoint dead)
// when ctx ends, leaving no file, and says why.
func TestSaveNoEndpointAnswers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snap.durio")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := backup.Save(ctx, http.DefaultClient, []string{deadURL(t), deadURL(t)}, path)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("saved from dead endpoints: %v, want the deadline and the last refused connection", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a failed save left %s: %v", path, err)
	}
}

// A save during an election: every replica answers "not the leader" with
// no leader to name for a while. Save keeps asking, with backoff, and gets
// the snapshot once a leader serves it.
func TestSaveWaitsOutAnElection(t *testing.T) {
	base := startReplica(t, 5)
	target, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var refusals atomic.Int32
	const electionAnswers = 8 // more than one round over both endpoints
	noLeaderYet := func(w http.ResponseWriter, r *http.Request) {
		if refusals.Add(1) <= electionAnswers {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"code":"unavailable","msg":"not the leader: snapshots are taken on the leader"}`))
			return
		}
		proxy.ServeHTTP(w, r)
	}
	a, b := httptest.NewServer(http.HandlerFunc(noLeaderYet)), httptest.NewServer(http.HandlerFunc(noLeaderYet))
	defer a.Close()
	defer b.Close()

	path := filepath.Join(t.TempDir(), "snap.durio")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hdr, err := backup.Save(ctx, http.DefaultClient, []string{a.URL, b.URL}, path)
	if err != nil {
		t.Fatalf("save across an election: %v (%d answers)", err, refusals.Load())
	}
	if n := refusals.Load(); n != electionAnswers+1 {
		t.Fatalf("%d requests, want %d refused and then one served", n, electionAnswers)
	}
	if got, _, keys, err := backup.ReadFile(path, 1<<20); err != nil || got != hdr || keys != 5 {
		t.Fatalf("read back: %+v, %d keys, %v; saved %+v", got, keys, err, hdr)
	}
}

// Answers that asking again cannot change (here: permission denied) from
// every replica end the save after one round, well before ctx does.
func TestSaveStopsAtAFinalAnswer(t *testing.T) {
	var requests atomic.Int32
	denied := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"code":"permission_denied","msg":"no"}`))
	}))
	defer denied.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := backup.Save(ctx, http.DefaultClient, []string{denied.URL, denied.URL}, filepath.Join(t.TempDir(), "snap.durio"))
	var terr twirp.Error
	if !errors.As(err, &terr) || terr.Code() != twirp.PermissionDenied || requests.Load() != 2 || ctx.Err() != nil {
		t.Fatalf("save from replicas that refuse: %v after %d requests, want permission_denied after 2", err, requests.Load())
	}
}
