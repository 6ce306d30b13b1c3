package kvraft

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/ruaft/ruaft/kvraft/rsm"
	"github.com/ruaft/ruaft/raft"
)

// fakeRaft is a one-replica stand-in for raft.Node: Start appends to a log
// that a goroutine applies in order, unless the test holds commits.
type fakeRaft struct {
	app raft.Application

	mu        sync.Mutex // guards the fields below
	term      uint64
	leader    bool
	hold      bool // entries are not committed while set
	log       []raft.ApplyMsg
	committed int // entries of log handed to the apply goroutine
	applied   uint64
	wake      chan struct{}
	killed    bool
	subs      []chan raft.Event
	seq       uint64

	stop chan struct{}
	wg   sync.WaitGroup
}

var _ rsm.Raft = (*fakeRaft)(nil)

func newFakeRaft(app raft.Application) *fakeRaft {
	f := &fakeRaft{app: app, term: 1, leader: true, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.applyLoop()
	}()
	return f
}

func (f *fakeRaft) applyLoop() {
	for {
		select {
		case <-f.stop:
			return
		case <-f.wake:
		}
		for {
			f.mu.Lock()
			if f.hold || f.committed == len(f.log) {
				f.mu.Unlock()
				break
			}
			msg := f.log[f.committed]
			f.committed++
			f.mu.Unlock()
			f.app.Apply(msg)
			f.mu.Lock()
			f.applied = msg.Index
			f.mu.Unlock()
		}
	}
}

func (f *fakeRaft) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *fakeRaft) Start(cmd []byte) (uint64, uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.leader || f.killed {
		return 0, f.term, false
	}
	idx := uint64(len(f.log) + 1)
	f.log = append(f.log, raft.ApplyMsg{Index: idx, Term: f.term, Command: append([]byte(nil), cmd...)})
	f.signal()
	return idx, f.term, true
}

func (f *fakeRaft) State() (uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.term, f.leader
}

func (f *fakeRaft) Status() raft.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := raft.Status{Term: f.term, Leader: raft.NoLeader, Commit: uint64(f.committed), LastIndex: uint64(len(f.log))}
	if f.leader {
		st.Role, st.Leader = raft.Leader, 0
	}
	return st
}

func (f *fakeRaft) ReadIndex(ctx context.Context) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.leader {
		return 0, errors.New("fake: not leader")
	}
	return f.applied, nil
}

func (f *fakeRaft) SaveSnapshot(uint64, []byte) error { return nil }

// Subscribe follows raft.Node.Subscribe's contract: the current state at
// once, then the newest state after each change, closed by Kill.
func (f *fakeRaft) Subscribe() (<-chan raft.Event, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan raft.Event, 1)
	ch <- f.eventLocked()
	if f.killed {
		close(ch)
		return ch, func() {}
	}
	f.subs = append(f.subs, ch)
	return ch, func() {}
}

func (f *fakeRaft) eventLocked() raft.Event {
	ev := raft.Event{Seq: f.seq, Term: f.term, Role: raft.Follower, Leader: raft.NoLeader}
	if f.leader {
		ev.Role, ev.Leader = raft.Leader, 0
	}
	return ev
}

// publishLocked replaces any undelivered event with the current state.
func (f *fakeRaft) publishLocked() {
	f.seq++
	ev := f.eventLocked()
	for _, ch := range f.subs {
		select {
		case <-ch:
		default:
		}
		ch <- ev
	}
}

func (f *fakeRaft) Kill() error {
	f.mu.Lock()
	if !f.killed {
		for _, ch := range f.subs {
			close(ch)
		}
		f.subs = nil
	}
	f.killed = true
	f.mu.Unlock()
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	f.wg.Wait()
	return nil
}

// setHold stops or resumes commits.
func (f *fakeRaft) setHold(hold bool) {
	f.mu.Lock()
	f.hold = hold
	f.mu.Unlock()
	f.signal()
}

// loseLeadership moves to a new term as a follower and drops uncommitted
// entries, as if another leader had overwritten them.
func (f *fakeRaft) loseLeadership() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.term++
	f.leader = false
	f.log = f.log[:f.committed]
	f.publishLocked()
}

// entries returns the number of entries in the log.
func (f *fakeRaft) entries() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.log)
}

func newFakeServer() (*Server, *fakeRaft, error) {
	return newFakeServerConfig(DefaultConfig(0))
}

func newFakeServerConfig(cfg Config) (*Server, *fakeRaft, error) {
	var fr *fakeRaft
	s, err := NewServer(cfg, func(app raft.Application) (rsm.Raft, error) {
		fr = newFakeRaft(app)
		return fr, nil
	})
	return s, fr, err
}

// openSessionID opens session id through s's log, as OpenSession does with
// a random id, so tests can use fixed ids.
func openSessionID(t testing.TB, s *Server, id uint64) {
	t.Helper()
	res, err := s.submit(context.Background(), op{kind: opOpenSession, id: WriteID{ClientID: id}, limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if !res.(sessionResult).opened {
		t.Fatalf("session %d was already open", id)
	}
}
