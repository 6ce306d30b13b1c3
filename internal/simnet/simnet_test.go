package simnet

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func echo(_ context.Context, method string, req []byte) ([]byte, error) {
	return append([]byte(method+":"), req...), nil
}

func newNet(t *testing.T) *Network {
	t.Helper()
	n := New(uint64(time.Now().UnixNano()))
	t.Cleanup(n.Cleanup)
	return n
}

func connected(n *Network, end, srv string) *End {
	e := n.MakeEnd(end)
	n.Connect(end, srv)
	n.Enable(end, true)
	return e
}

func TestCallAndCounters(t *testing.T) {
	n := newNet(t)
	n.AddServer("s", echo)
	e := connected(n, "e", "s")
	req := []byte("hello")
	reply, err := e.Call(context.Background(), "M", req)
	if err != nil || string(reply) != "M:hello" {
		t.Fatalf("got %q, %v", reply, err)
	}
	if got := n.Total(); got.Calls != 1 || got.Bytes != int64(len("hello")+len("M:hello")) {
		t.Fatalf("total %+v", got)
	}
	if got := n.ServerStats("s"); got.Calls != 1 || got.Bytes != 12 {
		t.Fatalf("server stats %+v", got)
	}
	// The request was copied: changing the caller's buffer after the call
	// changes nothing, and the handler got its own copy.
	var seen []byte
	n.AddServer("s", func(_ context.Context, _ string, req []byte) ([]byte, error) { seen = req; return nil, nil })
	if _, err := e.Call(context.Background(), "M", req); err != nil {
		t.Fatal(err)
	}
	req[0] = 'X'
	if string(seen) != "hello" {
		t.Fatalf("handler saw the caller's buffer: %q", seen)
	}
}

func TestHandlerError(t *testing.T) {
	n := newNet(t)
	boom := errors.New("boom")
	n.AddServer("s", func(context.Context, string, []byte) ([]byte, error) { return nil, boom })
	e := connected(n, "e", "s")
	if _, err := e.Call(context.Background(), "M", nil); !errors.Is(err, ErrHandler) || !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
}

func TestUnreachable(t *testing.T) {
	n := newNet(t)
	n.AddServer("s", echo)
	e := connected(n, "e", "s")
	n.Enable("e", false)
	start := time.Now()
	if _, err := e.Call(context.Background(), "M", nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("disabled: got %v", err)
	}
	n.Enable("e", true)
	n.DeleteServer("s")
	if _, err := e.Call(context.Background(), "M", nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("no server: got %v", err)
	}
	lone := n.MakeEnd("lone")
	if _, err := lone.Call(context.Background(), "M", nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("unconnected: got %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("short delays took %v for 3 calls", d)
	}
	if got := n.ServerStats("s").Calls; got != 0 {
		t.Fatalf("server executed %d calls", got)
	}
}

func TestLongDelaysHonourDeadline(t *testing.T) {
	n := newNet(t)
	n.SetLongDelays(true)
	e := n.MakeEnd("e")
	var long atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := e.Call(ctx, "M", nil)
			if d := time.Since(start); d > time.Second {
				t.Errorf("call took %v past a 150ms deadline", d)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				long.Add(1)
			} else if !errors.Is(err, ErrUnreachable) {
				t.Errorf("got %v", err)
			}
		}()
	}
	wg.Wait()
	// P(delay < 150ms) = 150/7000 per call: nearly all must time out.
	if long.Load() < 15 {
		t.Fatalf("only %d of 20 calls were delayed past 150ms with long delays", long.Load())
	}
}

// runConcurrently makes calls calls on e from 50 goroutines and counts the
// successes and the errors matching each of errs.
func runConcurrently(t *testing.T, e *End, calls int, f func(reply []byte, err error, d time.Duration)) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	for range calls {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			start := time.Now()
			reply, err := e.Call(context.Background(), "M", []byte("x"))
			f(reply, err, time.Since(start))
		}()
	}
	wg.Wait()
}

func TestUnreliable(t *testing.T) {
	n := newNet(t)
	n.SetReliable(false)
	var executed atomic.Int64
	n.AddServer("s", func(ctx context.Context, m string, req []byte) ([]byte, error) {
		executed.Add(1)
		return echo(ctx, m, req)
	})
	e := connected(n, "e", "s")
	const calls = 2000
	var ok, dropped atomic.Int64
	var maxDelay atomic.Int64
	runConcurrently(t, e, calls, func(reply []byte, err error, d time.Duration) {
		switch {
		case err == nil:
			ok.Add(1)
			if int64(d) > maxDelay.Load() {
				maxDelay.Store(int64(d))
			}
		case errors.Is(err, ErrDropped):
			dropped.Add(1)
		default:
			t.Errorf("unexpected error %v", err)
		}
	})
	// Expect 90% executed and 81% answered; allow several standard
	// deviations (sd of 2000 draws at 10% is 13).
	if ex := executed.Load(); ex < 1700 || ex > 1900 {
		t.Errorf("%d of %d requests reached the server, want ~1800", ex, calls)
	}
	if got := ok.Load(); got < 1520 || got > 1720 {
		t.Errorf("%d of %d calls succeeded, want ~1620", got, calls)
	}
	if ok.Load()+dropped.Load() != calls {
		t.Errorf("ok %d + dropped %d != %d", ok.Load(), dropped.Load(), calls)
	}
	if executed.Load() == ok.Load() {
		t.Errorf("no reply was dropped after execution")
	}
	if d := time.Duration(maxDelay.Load()); d < 10*time.Millisecond || d > time.Second {
		t.Errorf("max delay %v, want up to ~27ms", d)
	}
}

func TestLongReordering(t *testing.T) {
	n := newNet(t)
	n.SetLongReordering(true)
	n.AddServer("s", echo)
	e := connected(n, "e", "s")
	const calls = 150
	var held atomic.Int64
	runConcurrently(t, e, calls, func(reply []byte, err error, d time.Duration) {
		if err != nil {
			t.Errorf("call failed: %v", err)
			return
		}
		if d >= 200*time.Millisecond {
			held.Add(1)
		}
		if d > 2500*time.Millisecond {
			t.Errorf("reply held %v, want at most 2200ms", d)
		}
	})
	// 2/3 of 150 = 100, sd ~6.
	if h := held.Load(); h < 75 || h > 125 {
		t.Errorf("%d of %d replies held, want ~100", h, calls)
	}
}

// blocking returns a handler that blocks until its context ends or release
// is closed, and a channel that receives once per call started.
func blocking(release chan struct{}) (Handler, chan struct{}, *atomic.Int32) {
	started := make(chan struct{}, 100)
	var cancelled atomic.Int32
	return func(ctx context.Context, _ string, _ []byte) ([]byte, error) {
		started <- struct{}{}
		select {
		case <-ctx.Done():
			cancelled.Add(1)
			return nil, ctx.Err()
		case <-release:
			return []byte("late"), nil
		}
	}, started, &cancelled
}

func TestCrashFailsInFlightCalls(t *testing.T) {
	n := newNet(t)
	h, started, cancelled := blocking(make(chan struct{}))
	n.AddServer("s", h)
	e := connected(n, "e", "s")
	errc := make(chan error, 1)
	go func() { _, err := e.Call(context.Background(), "M", nil); errc <- err }()
	<-started
	n.DeleteServer("s")
	select {
	case err := <-errc:
		if !errors.Is(err, ErrCut) {
			t.Fatalf("got %v, want ErrCut", err)
		}
	case <-time.After(time.Second):
		t.Fatal("in-flight call did not fail after the crash")
	}
	n.Cleanup()
	if cancelled.Load() != 1 {
		t.Fatalf("crashed handler's context not cancelled")
	}
}

func TestDisableCutsInFlightAndDiscardsReply(t *testing.T) {
	n := newNet(t)
	release := make(chan struct{})
	h, started, _ := blocking(release)
	n.AddServer("s", h)
	e := connected(n, "e", "s")
	errc := make(chan error, 1)
	go func() { _, err := e.Call(context.Background(), "M", nil); errc <- err }()
	<-started
	n.Enable("e", false)
	n.Enable("e", true) // reconnecting does not revive the old call
	close(release)
	if err := <-errc; !errors.Is(err, ErrCut) {
		t.Fatalf("got %v, want ErrCut", err)
	}
	// A later call goes through.
	if r, err := e.Call(context.Background(), "M", nil); err != nil || string(r) != "late" {
		t.Fatalf("got %q, %v", r, err)
	}
}

func TestCallerDeadlineWhileExecuting(t *testing.T) {
	n := newNet(t)
	h, _, _ := blocking(make(chan struct{}))
	n.AddServer("s", h)
	e := connected(n, "e", "s")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := e.Call(ctx, "M", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
}

func TestCleanupStopsEverything(t *testing.T) {
	n := New(1)
	h, started, cancelled := blocking(make(chan struct{}))
	n.AddServer("s", h)
	e := connected(n, "e", "s")
	n.SetLongDelays(true)
	n.MakeEnd("dead")
	dead := &End{net: n, name: "dead"}
	errs := make(chan error, 2)
	go func() { _, err := e.Call(context.Background(), "M", nil); errs <- err }()
	go func() { _, err := dead.Call(context.Background(), "M", nil); errs <- err }()
	<-started
	done := make(chan struct{})
	go func() { n.Cleanup(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Cleanup did not return")
	}
	for range 2 {
		if err := <-errs; !errors.Is(err, ErrClosed) {
			t.Errorf("got %v, want ErrClosed", err)
		}
	}
	if cancelled.Load() != 1 {
		t.Errorf("handler not cancelled")
	}
	if _, err := e.Call(context.Background(), "M", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("call after Cleanup: %v", err)
	}
	n.Cleanup() // idempotent
}

func TestInterceptor(t *testing.T) {
	n := newNet(t)
	var executed atomic.Int32
	n.AddServer("s", func(ctx context.Context, m string, req []byte) ([]byte, error) {
		executed.Add(1)
		return echo(ctx, m, req)
	})
	e := connected(n, "e", "s")
	other := connected(n, "other", "s")
	n.Intercept(func(c CallInfo) bool { return c.End == "e" && c.Method == "Held" })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	type res struct {
		reply []byte
		err   error
	}
	call := func(e *End, method string, req string) chan res {
		ch := make(chan res, 1)
		go func() { r, err := e.Call(ctx, method, []byte(req)); ch <- res{r, err} }()
		return ch
	}

	// Calls the filter does not match pass.
	if r := <-call(other, "Held", "a"); r.err != nil {
		t.Fatal(r.err)
	}
	if r := <-call(e, "Free", "a"); r.err != nil {
		t.Fatal(r.err)
	}

	// Fail: the server never sees it.
	c1 := call(e, "Held", "1")
	h, err := n.NextHeld(ctx)
	if err != nil || string(h.Request) != "1" || h.Server != "s" || h.End != "e" {
		t.Fatalf("held %+v, %v", h, err)
	}
	before := executed.Load()
	h.Fail()
	if r := <-c1; !errors.Is(r.err, ErrFailed) {
		t.Fatalf("failed call got %v", r.err)
	}
	if executed.Load() != before {
		t.Fatal("server executed a failed call")
	}

	// Hold two, release them in reverse order.
	c2 := call(e, "Held", "2")
	h2, _ := n.NextHeld(ctx)
	c3 := call(e, "Held", "3")
	h3, _ := n.NextHeld(ctx)
	h3.Release()
	if r := <-c3; r.err != nil || string(r.reply) != "Held:3" {
		t.Fatalf("c3: %q %v", r.reply, r.err)
	}
	select {
	case r := <-c2:
		t.Fatalf("c2 returned while held: %+v", r)
	default:
	}
	h2.Release()
	if r := <-c2; r.err != nil || string(r.reply) != "Held:2" {
		t.Fatalf("c2: %q %v", r.reply, r.err)
	}

	// Execute, then fail the reply: the server executed it, the caller
	// gets an error.
	c4 := call(e, "Held", "4")
	h4, _ := n.NextHeld(ctx)
	before = executed.Load()
	reply, err := h4.Execute(ctx)
	if err != nil || string(reply) != "Held:4" || executed.Load() != before+1 {
		t.Fatalf("execute: %q %v", reply, err)
	}
	h4.Fail()
	if r := <-c4; !errors.Is(r.err, ErrFailed) {
		t.Fatalf("c4 got %v", r.err)
	}

	// Execute, cut the link, release: the late reply is discarded.
	c5 := call(e, "Held", "5")
	h5, _ := n.NextHeld(ctx)
	if _, err := h5.Execute(ctx); err != nil {
		t.Fatal(err)
	}
	n.Enable("e", false)
	n.Enable("e", true)
	h5.Release()
	if r := <-c5; !errors.Is(r.err, ErrCut) {
		t.Fatalf("c5 got %v, want ErrCut", r.err)
	}

	// Execute, release: the caller gets the reply.
	c6 := call(e, "Held", "6")
	h6, _ := n.NextHeld(ctx)
	if _, err := h6.Execute(ctx); err != nil {
		t.Fatal(err)
	}
	h6.Release()
	if r := <-c6; r.err != nil || !bytes.Equal(r.reply, []byte("Held:6")) {
		t.Fatalf("c6: %q %v", r.reply, r.err)
	}

	// Turning interception off lets new calls through.
	n.Intercept(nil)
	if r := <-call(e, "Held", "7"); r.err != nil {
		t.Fatal(r.err)
	}
	// NextHeld honours its context.
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancelShort()
	if _, err := n.NextHeld(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("NextHeld: %v", err)
	}
}
