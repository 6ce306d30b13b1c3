package twirptransport

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/raft"
	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
)

// echoNode answers each RPC with values derived from the request, so a test
// can tell that both directions were converted.
type echoNode struct{ fail error }

func (e echoNode) HandleAppendEntries(_ context.Context, r *raft.AppendEntriesRequest) (*raft.AppendEntriesResponse, error) {
	if e.fail != nil {
		return nil, e.fail
	}
	return &raft.AppendEntriesResponse{Term: r.Term, Success: true, MatchIndex: r.PrevLogIndex + uint64(len(r.Entries))}, nil
}

func (e echoNode) HandleRequestVote(_ context.Context, r *raft.RequestVoteRequest) (*raft.RequestVoteResponse, error) {
	return &raft.RequestVoteResponse{Term: r.Term, VoteGranted: r.PreVote}, nil
}

func (e echoNode) HandleInstallSnapshot(_ context.Context, r *raft.InstallSnapshotRequest) (*raft.InstallSnapshotResponse, error) {
	return &raft.InstallSnapshotResponse{Term: r.Term, NextOffset: r.Offset + uint64(len(r.Data)), Installed: r.Done}, nil
}

func (e echoNode) HandleReadIndex(_ context.Context, r *raft.ReadIndexRequest) (*raft.ReadIndexResponse, error) {
	if e.fail != nil {
		return nil, e.fail
	}
	return &raft.ReadIndexResponse{Term: r.Term, OK: true, ReadIndex: uint64(r.FollowerID) + 100}, nil
}

func (e echoNode) HandleTimeoutNow(_ context.Context, r *raft.TimeoutNowRequest) (*raft.TimeoutNowResponse, error) {
	return &raft.TimeoutNowResponse{Term: r.Term, Accepted: true}, nil
}

func startPeer(t *testing.T, node Handlers) string {
	t.Helper()
	srv := httptest.NewServer(NewHandler(node))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestPeerTransportRoundTrip(t *testing.T) {
	url := startPeer(t, echoNode{})
	tr := New(0, []string{"http://127.0.0.1:1", url}, Options{})
	checkAll(t, tr) // every RPC, as over the stream
	ctx := context.Background()
	if _, err := tr.RequestVote(ctx, 0, &raft.RequestVoteRequest{}); err == nil {
		t.Fatal("RPC to self should fail")
	}
	if _, err := tr.RequestVote(ctx, 2, &raft.RequestVoteRequest{}); err == nil {
		t.Fatal("RPC to an unknown peer should fail")
	}
}

func TestPeerServerErrors(t *testing.T) {
	url := startPeer(t, echoNode{fail: errors.New("node killed")})
	client := raftv1.NewRaftServiceProtobufClient(url, NewHTTPClient(nil))
	ctx := context.Background()
	_, err := client.AppendEntries(ctx, &raftv1.AppendEntriesRequest{Term: 1})
	var terr twirp.Error
	if !errors.As(err, &terr) || terr.Code() != twirp.Unavailable {
		t.Fatalf("node error: got %v, want unavailable", err)
	}
	_, err = client.AppendEntries(ctx, &raftv1.AppendEntriesRequest{Term: 1, Entries: []*raftv1.Entry{{Index: 1}}})
	if !errors.As(err, &terr) || terr.Code() != twirp.InvalidArgument {
		t.Fatalf("invalid entry type: got %v, want invalid_argument", err)
	}
	_, err = client.ReadIndex(ctx, &raftv1.ReadIndexRequest{Term: 1, FollowerId: 1 << 31})
	if !errors.As(err, &terr) || terr.Code() != twirp.InvalidArgument {
		t.Fatalf("follower id out of range: got %v, want invalid_argument", err)
	}
	_, err = client.ReadIndex(ctx, &raftv1.ReadIndexRequest{Term: 1})
	if !errors.As(err, &terr) || terr.Code() != twirp.Unavailable {
		t.Fatalf("ReadIndex node error: got %v, want unavailable", err)
	}
}

func TestRequireToken(t *testing.T) {
	srv := httptest.NewServer(RequireToken("s3cret", NewHandler(echoNode{})))
	defer srv.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		token string
		ok    bool
	}{{"s3cret", true}, {"wrong", false}, {"", false}, {"s3cre", false}} {
		tr := New(0, []string{"", srv.URL}, Options{Token: tc.token})
		_, err := tr.RequestVote(ctx, 1, &raft.RequestVoteRequest{Term: 1})
		var terr twirp.Error
		switch {
		case tc.ok && err != nil:
			t.Errorf("token %q: %v", tc.token, err)
		case !tc.ok && (!errors.As(err, &terr) || terr.Code() != twirp.Unauthenticated):
			t.Errorf("token %q: got %v, want unauthenticated (401)", tc.token, err)
		}
	}
}

// A caller without the token gets its 401 and then loses the connection:
// it cannot hold keep-alive connections open on the peer listener.
func TestRequireTokenClosesConnection(t *testing.T) {
	srv := httptest.NewServer(RequireToken("s3cret", http.NotFoundHandler()))
	defer srv.Close()
	for _, tc := range []struct {
		auth   string
		closed bool
	}{{"Bearer wrong", true}, {"", true}, {"Bearer s3cret", false}} {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		req := "GET /x HTTP/1.1\r\nHost: x\r\n"
		if tc.auth != "" {
			req += "Authorization: " + tc.auth + "\r\n"
		}
		if _, err := io.WriteString(c, req+"\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.auth, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if want := map[bool]int{true: 401, false: 404}[tc.closed]; resp.StatusCode != want {
			t.Errorf("%q: status %d, want %d", tc.auth, resp.StatusCode, want)
		}
		// A closed connection reads EOF at once; an open one times out.
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err = br.ReadByte()
		var ne net.Error
		if open := errors.As(err, &ne) && ne.Timeout(); open == tc.closed {
			t.Errorf("%q: read after the response: %v; want the connection closed=%v", tc.auth, err, tc.closed)
		}
		c.Close()
	}
}

func TestLimitBody(t *testing.T) {
	var got int
	srv := httptest.NewServer(LimitBody(1000, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(r.Body)
		got = len(data)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})))
	defer srv.Close()
	for _, tc := range []struct {
		name    string
		size    int
		chunked bool
		status  int
		read    int // most bytes the handler may see
	}{
		{"small", 1000, false, 200, 1000},
		{"declared too large", 1001, false, 413, 0},
		{"chunked small", 1000, true, 200, 1000},
		{"chunked too large", 5000, true, 400, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got = 0
			req, _ := http.NewRequest("POST", srv.URL, io.MultiReader(strings.NewReader(strings.Repeat("x", tc.size))))
			if !tc.chunked {
				req.ContentLength = int64(tc.size)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status || got > tc.read {
				t.Fatalf("status %d, handler read %d bytes; want %d, at most %d", resp.StatusCode, got, tc.status, tc.read)
			}
		})
	}
}

func TestAddressBookChangesAtRuntime(t *testing.T) {
	a := startPeer(t, echoNode{})
	b := startPeer(t, echoNode{})
	tr := NewWithPeers(7, map[int]string{7: "http://127.0.0.1:1", 3: a}, Options{})
	ctx := context.Background()
	req := &raft.RequestVoteRequest{Term: 4, PreVote: true}
	if _, err := tr.RequestVote(ctx, 3, req); err != nil {
		t.Fatalf("peer 3: %v", err)
	}
	// Self is never in the book, and unknown ids fail at once with the sentinel.
	for _, id := range []int{7, 9, -1} {
		if _, err := tr.RequestVote(ctx, id, req); !errors.Is(err, ErrUnknownPeer) {
			t.Fatalf("peer %d: got %v, want ErrUnknownPeer", id, err)
		}
	}
	// A new replica joins at b; peer 3 moves to a dead address.
	tr.SetPeer(12, b)
	tr.SetPeer(3, "http://127.0.0.1:1")
	if _, err := tr.RequestVote(ctx, 12, req); err != nil {
		t.Fatalf("peer 12 after SetPeer: %v", err)
	}
	if _, err := tr.RequestVote(ctx, 3, req); err == nil || errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("peer 3 moved to a dead address: got %v, want a connection error", err)
	}
	tr.RemovePeer(12)
	if _, err := tr.RequestVote(ctx, 12, req); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("removed peer 12: got %v, want ErrUnknownPeer", err)
	}
	if got := tr.Peers(); len(got) != 1 || got[3] != "http://127.0.0.1:1" {
		t.Fatalf("Peers() = %v", got)
	}
	// SetPeers replaces the whole book; the self entry is dropped.
	tr.SetPeers(map[int]string{7: a, 1: a, 2: b})
	if got := tr.Peers(); len(got) != 2 || got[1] != a || got[2] != b {
		t.Fatalf("Peers() after SetPeers = %v", got)
	}
	if _, err := tr.RequestVote(ctx, 3, req); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("peer 3 after SetPeers: got %v, want ErrUnknownPeer", err)
	}
}

func TestAddressBookConcurrentUse(t *testing.T) {
	a := startPeer(t, echoNode{})
	tr := NewWithPeers(0, map[int]string{1: a}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for n := 0; n < 200 && ctx.Err() == nil; n++ {
				if w%2 == 0 {
					tr.SetPeer(2+n%3, a)
					tr.RemovePeer(2 + (n+1)%3)
					_ = tr.Peers()
					continue
				}
				// Peer 1 is never touched: every call to it must succeed.
				// (A call cut short by the test's own deadline is not a failure.)
				if _, err := tr.RequestVote(ctx, 1, &raft.RequestVoteRequest{Term: 1}); err != nil && ctx.Err() == nil {
					t.Errorf("peer 1: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := tr.Peers(); got[1] != a {
		t.Fatalf("peer 1 lost: %v", got)
	}
}

// TestHTTPClientBoundsConnectionsPerPeer: however many calls to one peer
// are in flight at once, NewHTTPClient opens at most MaxConnsPerPeer
// connections to it (the others wait for one), so a replica cannot fill a
// peer's listener with connections it would keep idle afterwards.
func TestHTTPClientBoundsConnectionsPerPeer(t *testing.T) {
	var (
		mu         sync.Mutex
		open, most int
	)
	release := make(chan struct{})
	inHandler := make(chan struct{}, 4*MaxConnsPerPeer)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inHandler <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch st {
		case http.StateNew:
			open++
			most = max(most, open)
		case http.StateClosed, http.StateHijacked:
			open--
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before srv.Close, which waits for the handlers

	client := NewHTTPClient(nil)
	t.Cleanup(client.CloseIdleConnections)
	const calls = 3 * MaxConnsPerPeer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make(chan error, calls)
	for range calls {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
			resp, err := client.Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	// MaxConnsPerPeer calls reach the handler; the rest wait for a
	// connection.
	for k := range MaxConnsPerPeer {
		select {
		case <-inHandler:
		case <-ctx.Done():
			t.Fatalf("only %d calls reached the server", k)
		}
	}
	// Give the waiting calls time to dial, which they would without the
	// bound, before the first ones finish.
	select {
	case <-inHandler:
		t.Fatalf("more than %d calls in flight at once", MaxConnsPerPeer)
	case <-time.After(100 * time.Millisecond):
	}
	unblock()
	for range calls {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if most > MaxConnsPerPeer {
		t.Fatalf("%d connections open at once, want at most %d", most, MaxConnsPerPeer)
	}
}
