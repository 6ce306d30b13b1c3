package kvclient

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeReplica answers writes with err, or hangs until its context ends.
type fakeReplica struct {
	// Service (nil) stands in for the methods this fake does not serve.
	Service
	err  error
	hang bool
	mu   sync.Mutex // guards ids, causes
	ids  []WriteID
	// causes records why each hung attempt ended.
	causes []error
}

func (f *fakeReplica) OpenSession(context.Context, *OpenSessionRequest) (*OpenSessionResponse, error) {
	return &OpenSessionResponse{ClientID: 77}, nil
}

func (f *fakeReplica) Get(context.Context, *GetRequest) (*GetResponse, error) {
	return &GetResponse{Found: true, Value: "v"}, f.err
}

func (f *fakeReplica) Put(ctx context.Context, req *PutRequest) (*PutResponse, error) {
	f.mu.Lock()
	f.ids = append(f.ids, req.Write)
	f.mu.Unlock()
	if f.hang {
		<-ctx.Done()
		f.mu.Lock()
		f.causes = append(f.causes, context.Cause(ctx))
		f.mu.Unlock()
		return nil, ctx.Err()
	}
	if f.err != nil {
		return nil, f.err
	}
	return &PutResponse{}, nil
}

func (f *fakeReplica) Append(ctx context.Context, req *AppendRequest) (*AppendResponse, error) {
	_, err := f.Put(ctx, &PutRequest{Key: req.Key, Value: req.Value, Write: req.Write})
	return &AppendResponse{}, err
}

func (f *fakeReplica) Delete(ctx context.Context, req *DeleteRequest) (*DeleteResponse, error) {
	_, err := f.Put(ctx, &PutRequest{Key: req.Key, Write: req.Write})
	return &DeleteResponse{}, err
}

func (f *fakeReplica) seen() []WriteID {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]WriteID(nil), f.ids...)
}

// watch is a LeaderWatch the test moves by hand.
type watch struct {
	mu      sync.Mutex // guards leader, changed
	leader  int
	changed chan struct{}
}

func newWatch(leader int) *watch { return &watch{leader: leader, changed: make(chan struct{})} }

func (w *watch) Leader() (int, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.leader, w.changed
}

func (w *watch) set(l int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.leader = l
	close(w.changed)
	w.changed = make(chan struct{})
}

// subWatch is a watch that also calls back (a LeaderSubscriber, as
// durio's is): the clerk watches its attempts without a goroutine.
type subWatch struct {
	*watch
	attempts Attempts
}

func (w *subWatch) AbandonOnMove(target int, abandon func()) func() {
	return w.attempts.Add(target, abandon)
}

func (w *subWatch) set(l int) {
	w.watch.set(l)
	w.attempts.Moved(l)
}

// movableWatch is a LeaderWatch a test moves with set.
type movableWatch interface {
	LeaderWatch
	set(l int)
}

// bothWatches runs a test with a plain LeaderWatch and with a
// LeaderSubscriber.
func bothWatches(t *testing.T, test func(t *testing.T, newWatch func(leader int) movableWatch)) {
	t.Run("watch=channel", func(t *testing.T) {
		test(t, func(l int) movableWatch { return newWatch(l) })
	})
	t.Run("watch=subscriber", func(t *testing.T) {
		test(t, func(l int) movableWatch { return &subWatch{watch: newWatch(l)} })
	})
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// With a LeaderWatch, the clerk goes straight to the known leader, and
// abandons an attempt there when the leader changes (not after the attempt
// timeout, an hour here), retrying the same write id at the new leader.
func TestClerkAbandonsAttemptWhenLeaderChanges(t *testing.T) {
	bothWatches(t, func(t *testing.T, newWatch func(int) movableWatch) {
		w := newWatch(1)
		first := &fakeReplica{err: errors.New("must not be tried: the watch names replica 1")}
		stuck := &fakeReplica{hang: true}
		next := &fakeReplica{}
		cfg := DefaultClerkConfig()
		cfg.AttemptTimeout, cfg.Leader = time.Hour, w
		ck, err := NewClerk([]Service{first, stuck, next}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- ck.Put(context.Background(), "k", "v") }()
		waitUntil(t, "the write reaches replica 1", func() bool { return len(stuck.seen()) == 1 })
		w.set(2)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if a, b := stuck.seen(), next.seen(); len(b) != 1 || a[0].Seq != b[0].Seq || a[0].ClientID != b[0].ClientID {
			t.Fatalf("retry changed the write id: %v then %v", a, b)
		}
		if len(first.seen()) != 0 {
			t.Fatalf("replica 0 was tried although the watch named 1")
		}
		stuck.mu.Lock()
		defer stuck.mu.Unlock()
		if len(stuck.causes) != 1 || !errors.Is(stuck.causes[0], context.Canceled) {
			t.Fatalf("the stuck attempt ended with %v, want cancelled (abandoned)", stuck.causes)
		}
	})
}

// A change that keeps the same leader (a new term it won again) does not
// abandon the attempt.
func TestClerkKeepsAttemptWhenLeaderStays(t *testing.T) {
	bothWatches(t, func(t *testing.T, newWatch func(int) movableWatch) {
		w := newWatch(0)
		stuck := &fakeReplica{hang: true}
		cfg := DefaultClerkConfig()
		cfg.AttemptTimeout, cfg.Leader = 300*time.Millisecond, w
		ck, err := NewClerk([]Service{stuck}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- ck.Put(ctx, "k", "v") }()
		waitUntil(t, "the write is tried", func() bool { return len(stuck.seen()) == 1 })
		w.set(0)
		err = <-done
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("Put = %v, want ErrTimeout (outcome unknown)", err)
		}
		if n := len(stuck.seen()); n != 1 {
			t.Fatalf("the attempt was restarted %d times by a change to the same leader", n-1)
		}
	})
}

// An attempt at the caller's own replica (Self) is not abandoned when the
// leader moves: that replica's node fails it itself. It ends with its own
// result (here the attempt timeout), not errLeaderChanged.
func TestClerkDoesNotWatchSelf(t *testing.T) {
	bothWatches(t, func(t *testing.T, newWatch func(int) movableWatch) {
		w := newWatch(0)
		self := &fakeReplica{hang: true}
		cfg := DefaultClerkConfig()
		cfg.AttemptTimeout, cfg.Leader, cfg.Self = 200*time.Millisecond, w, 0
		ck, err := NewClerk([]Service{self, &fakeReplica{}}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- ck.Put(context.Background(), "k", "v") }()
		waitUntil(t, "the write reaches replica 0", func() bool { return len(self.seen()) == 1 })
		w.set(1)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		self.mu.Lock()
		defer self.mu.Unlock()
		if len(self.causes) != 1 || errors.Is(self.causes[0], errLeaderChanged) || !errors.Is(self.causes[0], context.DeadlineExceeded) {
			t.Fatalf("the attempt at Self ended with %v, want its own deadline", self.causes)
		}
	})
}

// A LeaderSubscriber's registrations end with their attempts: finished
// attempts leave nothing behind to abandon, and a move abandons only the
// attempts at other replicas.
func TestAttemptsForgetFinishedAttempts(t *testing.T) {
	w := &subWatch{watch: newWatch(0)}
	cfg := DefaultClerkConfig()
	cfg.Leader = w
	ck, err := NewClerk([]Service{&fakeReplica{}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if err := ck.Put(context.Background(), "k", "v"); err != nil {
			t.Fatal(err)
		}
	}
	w.attempts.mu.Lock()
	left := len(w.attempts.m)
	w.attempts.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d registrations left after every attempt finished", left)
	}
	var a Attempts
	var at0, at1 int
	stop0 := a.Add(0, func() { at0++ })
	a.Add(1, func() { at1++ })
	a.Moved(0) // abandons the attempt at 1 only
	a.Moved(0) // nothing left at 1
	stop0()
	a.Moved(3) // the attempt at 0 ended before
	if at0 != 0 || at1 != 1 {
		t.Fatalf("abandoned the attempt at 0 %d times (want 0), at 1 %d times (want 1)", at0, at1)
	}
}

// Self must name a server or be -1.
func TestClerkConfigSelf(t *testing.T) {
	for _, self := range []int{-2, 2} {
		cfg := DefaultClerkConfig()
		cfg.Self = self
		if _, err := NewClerk([]Service{&fakeReplica{}, &fakeReplica{}}, cfg); err == nil {
			t.Fatalf("Self %d accepted with 2 servers", self)
		}
	}
}

// A replica that times out becomes the second choice for the next
// request: a stalled endpoint costs one attempt, not one per request.
func TestClerkMovesOnFromStalledReplica(t *testing.T) {
	stuck := &fakeReplica{hang: true}
	ok := &fakeReplica{}
	cfg := DefaultClerkConfig()
	cfg.AttemptTimeout = time.Hour
	ck, err := NewClerk([]Service{stuck, ok}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ck.leader.Store(0)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ck.Put(ctx, "k", "v"); !errors.Is(err, ErrTimeout) {
		t.Fatalf("first Put = %v, want ErrTimeout", err)
	}
	if err := ck.Put(context.Background(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	if n := len(stuck.seen()); n != 1 {
		t.Fatalf("the stalled replica was tried %d times", n)
	}
}

// Definitive refusals come back at once, with nothing retried.
func TestClerkReturnsDefinitiveErrors(t *testing.T) {
	for _, e := range []error{ErrInvalid, ErrTooLarge, ErrNoSession, ErrStale, ErrTooManyPending, ErrRejected} {
		r := &fakeReplica{err: e}
		ck, err := NewClerk([]Service{r}, DefaultClerkConfig())
		if err != nil {
			t.Fatal(err)
		}
		if err := ck.Put(context.Background(), "k", "v"); !errors.Is(err, e) {
			t.Fatalf("Put = %v, want %v", err, e)
		}
		want := 1
		if e == ErrNoSession {
			want = 3 // in a new session each time, then it gives up
		}
		if n := len(r.seen()); n != want {
			t.Fatalf("%v: tried %d times, want %d", e, n, want)
		}
	}
}

// One write stuck in flight holds the session's ack back; the clerk opens
// a new session before the window of results replicas keep is full.
func TestClerkOpensSessionWhenWindowFull(t *testing.T) {
	opened := 0
	r := &sessionCounter{fakeReplica: &fakeReplica{}, opened: &opened}
	cfg := DefaultClerkConfig()
	cfg.MaxPending = 4
	ck, err := NewClerk([]Service{r}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	first, seq, err := ck.begin(context.Background(), time.Time{}) // stays in flight
	if err != nil {
		t.Fatal(err)
	}
	defer first.finish(seq)
	for range 3 {
		if err := ck.Put(context.Background(), "k", "v"); err != nil {
			t.Fatal(err)
		}
	}
	if opened != 1 {
		t.Fatalf("%d sessions opened for a window of 4", opened)
	}
	if err := ck.Put(context.Background(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	if opened != 2 {
		t.Fatalf("%d sessions opened after the window filled, want 2", opened)
	}
}

type sessionCounter struct {
	*fakeReplica
	opened *int // only touched by the test goroutine's calls
}

func (s *sessionCounter) OpenSession(context.Context, *OpenSessionRequest) (*OpenSessionResponse, error) {
	*s.opened++
	return &OpenSessionResponse{ClientID: uint64(*s.opened)}, nil
}

// serverMap is a Servers whose members a test changes while the clerk runs.
type serverMap struct {
	mu sync.Mutex // guards m
	m  map[int]Service
}

func (s *serverMap) Server(id int) Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[id]
}

func (s *serverMap) IDs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []int
	for id := range s.m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (s *serverMap) set(id int, svc Service) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if svc == nil {
		delete(s.m, id)
		return
	}
	s.m[id] = svc
}

// A clerk over a changing set of replicas with sparse ids follows leader
// hints to ids that joined after it started, and stops trying replicas that
// left.
func TestClerkFollowsChangingServers(t *testing.T) {
	down := &fakeReplica{err: ErrUnreachable}
	old := &fakeReplica{err: &WrongLeaderError{Leader: 12}}
	set := &serverMap{m: map[int]Service{3: old, 7: down}}
	cfg := DefaultClerkConfig()
	cfg.ClientID = 5
	ck, err := NewClerkOf(set, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Replica 12 joins and leads; 3 points at it.
	joined := &fakeReplica{}
	set.set(12, joined)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ck.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if len(joined.seen()) != 1 {
		t.Fatalf("the new leader saw %d writes, want 1", len(joined.seen()))
	}
	// The leader leaves; the next write finds the only replica left that
	// answers, which now leads, without trying the departed id.
	set.set(12, nil)
	set.set(7, nil)
	newLeader := &fakeReplica{}
	set.set(3, newLeader)
	if err := ck.Put(ctx, "k", "w"); err != nil {
		t.Fatalf("Put after the leader left: %v", err)
	}
	if len(joined.seen()) != 1 || len(newLeader.seen()) != 1 {
		t.Fatalf("departed leader saw %d writes (want 1), replica 3 saw %d (want 1)", len(joined.seen()), len(newLeader.seen()))
	}
	// An empty set: the clerk backs off until the caller's deadline and
	// reports that no replica took the write.
	set.set(3, nil)
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	if err := ck.Put(short, "k", "x"); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("Put with no replicas: %v, want ErrNoLeader", err)
	}
}

// DoFromBy bounds its first attempt by the earlier of the request's
// deadline and AttemptTimeout, later attempts by the request's deadline as
// well, and gives up at that deadline.
func TestClerkDoFromByDeadlines(t *testing.T) {
	cfg := DefaultClerkConfig()
	cfg.AttemptTimeout = 150 * time.Millisecond
	ck, err := NewClerk([]Service{&fakeReplica{}, &fakeReplica{}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	by := start.Add(time.Hour)
	var deadlines []time.Time
	var targets []Service
	err = ck.DoFromBy(context.Background(), by, 1, false, func(ctx context.Context, s Service) error {
		d, ok := ctx.Deadline()
		if !ok {
			t.Error("an attempt without a deadline")
		}
		deadlines, targets = append(deadlines, d), append(targets, s)
		if len(deadlines) < 3 {
			return ErrNoLeader
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(deadlines) != 3 || targets[0] != ck.servers.Server(1) || targets[1] != ck.servers.Server(0) {
		t.Fatalf("%d attempts, the first two at %v, want 3 starting at replica 1, then 0", len(deadlines), targets[:min(2, len(targets))])
	}
	for i, d := range deadlines {
		if d.After(time.Now().Add(cfg.AttemptTimeout)) || d.Before(start) {
			t.Errorf("attempt %d: deadline %v after start, want within AttemptTimeout", i, d.Sub(start))
		}
	}

	// A request deadline before AttemptTimeout bounds every attempt, and
	// ends the request.
	start = time.Now()
	by = start.Add(50 * time.Millisecond)
	err = ck.DoFromBy(context.Background(), by, 0, false, func(ctx context.Context, s Service) error {
		if d, ok := ctx.Deadline(); !ok || d.After(by) {
			t.Errorf("attempt deadline %v (%v), want at most the request's", d, ok)
		}
		return ErrNoLeader
	})
	if !errors.Is(err, ErrNoLeader) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("DoFromBy = %v, want ErrNoLeader at the request's deadline", err)
	}
	if took := time.Since(start); took < 50*time.Millisecond || took > 5*time.Second {
		t.Fatalf("gave up after %v, want at the request's deadline (50ms)", took)
	}

	// Definitive errors end the request at once.
	err = ck.DoFromBy(context.Background(), time.Now().Add(time.Hour), 0, false, func(context.Context, Service) error { return ErrInvalid })
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("DoFromBy = %v, want ErrInvalid", err)
	}
}

// byReplica serves WriteBy's tests: OpenSession hangs until its context
// ends while hangOpen is set, and Put answers with the errors in puts, one
// per attempt, then nil.
type byReplica struct {
	Service
	hangOpen bool
	mu       sync.Mutex // guards opens, puts, deadlines, ids
	opens    int
	puts     []error
	// deadlines and ids are those of each Put attempt.
	deadlines []time.Time
	ids       []WriteID
}

func (r *byReplica) OpenSession(ctx context.Context, _ *OpenSessionRequest) (*OpenSessionResponse, error) {
	r.mu.Lock()
	r.opens++
	id := uint64(100 + r.opens)
	r.mu.Unlock()
	if r.hangOpen {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &OpenSessionResponse{ClientID: id}, nil
}

func (r *byReplica) Put(ctx context.Context, req *PutRequest) (*PutResponse, error) {
	d, _ := ctx.Deadline() // zero if none: the tests check it
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deadlines, r.ids = append(r.deadlines, d), append(r.ids, req.Write)
	if len(r.puts) == 0 {
		return &PutResponse{}, nil
	}
	err := r.puts[0]
	r.puts = r.puts[1:]
	return nil, err
}

func writeBy(ck *Clerk, by time.Time) error {
	return ck.WriteBy(context.Background(), by, func(ctx context.Context, s Service, id WriteID) error {
		_, err := s.Put(ctx, &PutRequest{Key: "k", Value: "v", Write: id})
		return err
	})
}

// WriteBy bounds every attempt by the earlier of the request's deadline and
// AttemptTimeout, keeps the write's id across attempts, gives up at the
// request's deadline, and bounds the opening of a session and the retry
// in a new one (after ErrNoSession) by that deadline too.
func TestClerkWriteByDeadlines(t *testing.T) {
	cfg := DefaultClerkConfig()
	cfg.AttemptTimeout = 150 * time.Millisecond
	r := &byReplica{puts: []error{ErrNoLeader, ErrNoLeader}}
	ck, err := NewClerk([]Service{r}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := writeBy(ck, start.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if len(r.ids) != 3 || r.ids[0].Seq != r.ids[2].Seq || r.ids[0].ClientID != r.ids[2].ClientID {
		t.Fatalf("attempts with ids %v, want 3 with the same one", r.ids)
	}
	for i, d := range r.deadlines {
		if d.IsZero() || d.After(time.Now().Add(cfg.AttemptTimeout)) || d.Before(start) {
			t.Errorf("attempt %d: deadline %v after start, want within AttemptTimeout", i, d.Sub(start))
		}
	}

	// A request deadline before AttemptTimeout bounds every attempt and
	// ends the request; no attempt was accepted, so nothing was applied.
	r.puts = []error{ErrNoLeader, ErrNoLeader, ErrNoLeader, ErrNoLeader, ErrNoLeader, ErrNoLeader, ErrNoLeader, ErrNoLeader}
	r.deadlines = nil
	start = time.Now()
	by := start.Add(50 * time.Millisecond)
	err = writeBy(ck, by)
	if !errors.Is(err, ErrNoLeader) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WriteBy = %v, want ErrNoLeader at the request's deadline", err)
	}
	if took := time.Since(start); took < 50*time.Millisecond || took > 5*time.Second {
		t.Fatalf("gave up after %v, want at the request's deadline (50ms)", took)
	}
	for i, d := range r.deadlines {
		if d.IsZero() || d.After(by) {
			t.Errorf("attempt %d: deadline %v, want at most the request's", i, d.Sub(start))
		}
	}

	// A lost session is replaced and the write retried in the new one,
	// still under the request's deadline.
	r.puts, r.deadlines, r.ids = []error{ErrNoSession}, nil, nil
	by = time.Now().Add(time.Hour)
	if err := writeBy(ck, by); err != nil {
		t.Fatal(err)
	}
	if len(r.ids) != 2 || r.ids[0].ClientID == r.ids[1].ClientID || r.deadlines[1].After(by) {
		t.Fatalf("attempts with ids %v, want 2 in different sessions", r.ids)
	}

	// A session that cannot be opened fails the write at its deadline.
	hung := &byReplica{hangOpen: true}
	ck, err = NewClerk([]Service{hung}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	err = writeBy(ck, start.Add(50*time.Millisecond))
	if !errors.Is(err, ErrNoLeader) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WriteBy = %v, want ErrNoLeader at the request's deadline", err)
	}
	if took := time.Since(start); took < 50*time.Millisecond || took > 5*time.Second {
		t.Fatalf("gave up after %v, want at the request's deadline (50ms)", took)
	}
	if len(hung.ids) != 0 {
		t.Fatalf("%d writes sent without a session", len(hung.ids))
	}
}

// An attempt's error names a leader change only when the change abandoned
// it: not when the attempt's deadline or the caller's context ended it.
func TestClerkTryNamesLeaderChange(t *testing.T) {
	bothWatches(t, func(t *testing.T, newWatch func(int) movableWatch) {
		w := newWatch(1)
		cfg := DefaultClerkConfig()
		cfg.Leader = w
		ck, err := NewClerk([]Service{&fakeReplica{}, &fakeReplica{}, &fakeReplica{}}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		started := make(chan struct{}, 1)
		hang := func(ctx context.Context, _ Service) error {
			started <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}
		done := make(chan error, 1)
		go func() { done <- ck.try(context.Background(), 1, time.Now().Add(time.Hour), hang) }()
		<-started
		w.set(2)
		if err := <-done; !errors.Is(err, errLeaderChanged) || !errors.Is(err, context.Canceled) {
			t.Fatalf("abandoned attempt: %v, want errLeaderChanged wrapping context.Canceled", err)
		}

		err = ck.try(context.Background(), 2, time.Now().Add(20*time.Millisecond), hang)
		<-started
		if errors.Is(err, errLeaderChanged) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("attempt past its deadline: %v, want context.DeadlineExceeded alone", err)
		}

		ctx, cancel := context.WithCancel(context.Background())
		go func() { done <- ck.try(ctx, 2, time.Now().Add(time.Hour), hang) }()
		<-started
		cancel()
		if err := <-done; errors.Is(err, errLeaderChanged) || !errors.Is(err, context.Canceled) {
			t.Fatalf("attempt cancelled by its caller: %v, want context.Canceled alone", err)
		}
	})
}

// hintReplica refuses every request with a fixed leader hint (NoLeader for
// none), or as unreachable.
type hintReplica struct {
	Service
	hint        int
	unreachable bool
}

func (h *hintReplica) Get(context.Context, *GetRequest) (*GetResponse, error) {
	if h.unreachable {
		return nil, ErrUnreachable
	}
	return nil, &WrongLeaderError{Leader: h.hint}
}

// Stale leader hints (replicas removed from the cluster, or cut off, that
// still name an old leader) must not trap the clerk among a few replicas:
// every replica gets tried, so the one that leads is found.
func TestClerkStaleHintsDoNotTrapIt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		replica func() []Service
	}{
		// 0 knows no leader, 1 is down, 2 names 0: following hints and
		// going on in turn from the hint's target kept it among 0, 1, 2.
		{name: "hint back to an earlier replica", replica: func() []Service {
			return []Service{&hintReplica{hint: NoLeader}, &hintReplica{unreachable: true}, &hintReplica{hint: 0}, okReplica{}}
		}},
		// 0 and 1 name each other.
		{name: "two replicas name each other", replica: func() []Service {
			return []Service{&hintReplica{hint: 1}, &hintReplica{hint: 0}, okReplica{}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ck, err := NewClerk(tc.replica(), DefaultClerkConfig())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := ck.DoFrom(ctx, 0, false, review6Get); err != nil {
				t.Fatalf("the clerk never reached the leader: %v", err)
			}
		})
	}
}

// A request that fails everywhere ends with the answer of the replica that
// answered (its 503: no leader), not with the refused connection of a
// replica that is down and happened to be tried last.
func TestClerkKeepsAnAnswerOverAnUnsentRequest(t *testing.T) {
	noLeader := &fakeReplica{err: &WrongLeaderError{Leader: NoLeader}}
	down := &fakeReplica{err: ErrUnreachable}
	cfg := DefaultClerkConfig()
	cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 2*time.Millisecond
	for _, servers := range [][]Service{{noLeader, down}, {down, noLeader}} {
		ck, err := NewClerk(servers, cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, err = ck.Get(ctx, "k")
		cancel()
		var wl *WrongLeaderError
		if !errors.Is(err, ErrNoLeader) || !errors.As(err, &wl) || errors.Is(err, ErrUnreachable) {
			t.Fatalf("Get = %v, want ErrNoLeader with the replica's answer, not the unsent request", err)
		}
	}
}
