package kvtest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/ruaft/ruaft/kvraft"
	"github.com/ruaft/ruaft/raft"
)

// RevKeys is the number of keys the revision model covers: few enough that
// porcupine can check a history of whole listings, which span every key.
const RevKeys = 3

// Operations of the revision model.
const (
	RevGet uint8 = iota
	RevPut
	RevDelete
	RevList
	RevTxn
)

// RevInput is one operation of a history checked with RevModel: a Get, a
// conditional Put or Delete of key RevKey(Key), a List of every key
// (possibly over several pages at one revision), or a Txn of Writes under
// Conds.
type RevInput struct {
	Op    uint8
	Key   int
	Value string
	Cond  kvraft.Condition
	// Conds and Writes are a Txn's (Key, Value and Cond unused).
	Conds  []RevCompare
	Writes []RevWrite
}

// RevCompare is one condition of a Txn: Cond on key RevKey(Key).
type RevCompare struct {
	Key  int
	Cond kvraft.Condition
}

// RevWrite is one write of a Txn: a Put of Value to key RevKey(Key), or a
// Delete if Delete is set.
type RevWrite struct {
	Key    int
	Value  string
	Delete bool
}

// RevOutput is what the operation returned. Unknown marks a write whose
// outcome is unknown (it may or may not have been applied).
type RevOutput struct {
	Unknown bool
	// NoSpace: the write was refused for the cluster's quota
	// (ErrNoSpace), and not applied.
	NoSpace bool
	// Failed: the condition did not hold; Current is the key the error
	// described (nil: absent) at revision Rev.
	Failed  bool
	Current *kvraft.KeyValue
	// FailedConds and CurrentKVs describe a Txn that failed (its
	// TxnResponse's Failed and Current).
	FailedConds []int
	CurrentKVs  []kvraft.KeyValue
	// Rev is the header revision of a write or Get, or the revision of a
	// listing.
	Rev uint64
	// Get is a Get's key (nil: absent); KVs a listing's keys.
	Get *kvraft.KeyValue
	KVs []kvraft.KeyValue
}

// RevKey names key i of the revision model.
func RevKey(i int) string { return fmt.Sprintf("rev/%d", i) }

// revState is the model's state: the store revision and each key.
type revState struct {
	rev  uint64
	keys [RevKeys]kvraft.KeyValue // Version 0: absent
}

func (s revState) holds(k int, c kvraft.Condition) bool {
	cur := s.keys[k]
	present := cur.Version > 0
	switch c.Kind {
	case kvraft.CondAbsent:
		return !present
	case kvraft.CondModRevision:
		return present && cur.ModRevision == c.ModRevision
	case kvraft.CondVersion:
		return cur.Version == c.Version
	case kvraft.CondValue:
		return present && cur.Value == c.Value
	}
	return true
}

// apply applies a write whose condition holds.
func (s revState) apply(in RevInput) revState {
	cur := s.keys[in.Key]
	switch {
	case in.Op == RevPut:
		s.rev++
		next := kvraft.KeyValue{Key: RevKey(in.Key), Value: in.Value, CreateRevision: cur.CreateRevision,
			ModRevision: s.rev, Version: cur.Version + 1}
		if cur.Version == 0 {
			next.CreateRevision = s.rev
		}
		s.keys[in.Key] = next
	case cur.Version > 0: // a Delete of a present key
		s.rev++
		s.keys[in.Key] = kvraft.KeyValue{}
	}
	return s
}

// dataSize is the keys' and values' size as the cluster's quota counts
// them (kvraft.Config.MaxStateBytes; without the remembered answers,
// which the model does not know).
func (s revState) dataSize() uint64 {
	var n uint64
	for k := range RevKeys {
		if s.keys[k].Version > 0 {
			n += uint64(len(RevKey(k))+len(s.keys[k].Value)) + 64
		}
	}
	return n
}

// fits reports whether going from s to next keeps within quota (0: none):
// a write that grows the data must leave it at most quota, for the
// cluster counts the data and more.
func (s revState) fits(next revState, quota uint64) bool {
	return quota == 0 || next.dataSize() <= s.dataSize() || next.dataSize() <= quota
}

// applyTxn applies a Txn's writes, in order, each at its own revision.
func (s revState) applyTxn(in RevInput) revState {
	for _, w := range in.Writes {
		op := RevPut
		if w.Delete {
			op = RevDelete
		}
		s = s.apply(RevInput{Op: op, Key: w.Key, Value: w.Value})
	}
	return s
}

// stepTxn is RevModel's step for a Txn: every write at its own revision
// if every condition holds, none otherwise; a failure names exactly the
// conditions that did not hold and every compared key that exists, once,
// in the order of the conditions.
func (s revState) stepTxn(in RevInput, out RevOutput, quota uint64) (bool, revState) {
	var failed []int
	var current []kvraft.KeyValue
	var seen [RevKeys]bool
	for i, c := range in.Conds {
		if !s.holds(c.Key, c.Cond) {
			failed = append(failed, i)
		}
		if p := s.present(c.Key); p != nil && !seen[c.Key] {
			seen[c.Key] = true
			current = append(current, *p)
		}
	}
	next := s.applyTxn(in)
	switch {
	case out.NoSpace:
		// Refused for the quota: a txn that would grow the data, or one
		// whose failed conditions' answer would not fit.
		return quota > 0 && (failed != nil || next.dataSize() > s.dataSize()), s
	case out.Unknown:
		if failed == nil && s.fits(next, quota) {
			return true, next
		}
		return true, s
	case out.Failed:
		return failed != nil && out.Rev == s.rev && slices.Equal(out.FailedConds, failed) && slices.Equal(out.CurrentKVs, current), s
	case failed != nil:
		return false, s
	}
	return out.Rev == next.rev && s.fits(next, quota), next
}

func (s revState) present(k int) *kvraft.KeyValue {
	if s.keys[k].Version == 0 {
		return nil
	}
	kv := s.keys[k]
	return &kv
}

func sameKV(a, b *kvraft.KeyValue) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

// RevModel is the porcupine model of revisions, conditional writes and
// listings over RevKeys keys: every answer must carry the revisions a
// single copy of the store would have given, a condition must fail exactly
// when it does not hold (with the key's state in the error), and a listing
// must be the whole store at its revision.
var RevModel = RevModelQuota(0)

// RevModelQuota is RevModel for a cluster with a quota of quota bytes
// (kvraft.Config.MaxStateBytes; 0: none): besides RevModel's rules, a write
// refused for the quota changed nothing and either grew the data or had a
// failed condition (whose answer did not fit), and a write that applied
// and grew the data left it within the quota. (The model cannot tell
// exactly which writes the quota refuses: the cluster also counts the
// sessions' remembered answers.)
func RevModelQuota(quota uint64) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return revState{} },
		Step: func(state, input, output any) (bool, any) {
			st, in, out := state.(revState), input.(RevInput), output.(RevOutput)
			switch in.Op {
			case RevGet:
				return out.Rev == st.rev && sameKV(out.Get, st.present(in.Key)), st
			case RevList:
				if out.Rev != st.rev {
					return false, st
				}
				var want []kvraft.KeyValue
				for k := range RevKeys {
					if p := st.present(k); p != nil {
						want = append(want, *p)
					}
				}
				if len(want) != len(out.KVs) {
					return false, st
				}
				for i := range want {
					if want[i] != out.KVs[i] {
						return false, st
					}
				}
				return true, st
			case RevTxn:
				return st.stepTxn(in, out, quota)
			}
			holds := st.holds(in.Key, in.Cond)
			next := st.apply(in)
			switch {
			case out.NoSpace:
				return quota > 0 && (!holds || next.dataSize() > st.dataSize()), st
			case out.Unknown:
				if holds && st.fits(next, quota) {
					return true, next
				}
				return true, st
			case out.Failed:
				return !holds && out.Rev == st.rev && sameKV(out.Current, st.present(in.Key)), st
			case !holds:
				return false, st
			}
			return out.Rev == next.rev && st.fits(next, quota), next
		},
		Equal: func(a, b any) bool { return a.(revState) == b.(revState) },
		DescribeOperation: func(input, output any) string {
			in, out := input.(RevInput), output.(RevOutput)
			res := fmt.Sprintf("rev %d", out.Rev)
			switch {
			case out.Unknown:
				res = "unknown"
			case out.NoSpace:
				res = "no space"
			case out.Failed:
				res = fmt.Sprintf("condition failed at rev %d (current %v)", out.Rev, out.Current)
			}
			switch in.Op {
			case RevGet:
				return fmt.Sprintf("get(%d) -> %v at rev %d", in.Key, out.Get, out.Rev)
			case RevList:
				return fmt.Sprintf("list -> %v at rev %d", out.KVs, out.Rev)
			case RevPut:
				return fmt.Sprintf("put(%d, %q, %+v) -> %s", in.Key, in.Value, in.Cond, res)
			case RevTxn:
				if out.Failed {
					res = fmt.Sprintf("conditions %v failed at rev %d (current %v)", out.FailedConds, out.Rev, out.CurrentKVs)
				}
				return fmt.Sprintf("txn(if %+v then %+v) -> %s", in.Conds, in.Writes, res)
			default:
				return fmt.Sprintf("delete(%d, %+v) -> %s", in.Key, in.Cond, res)
			}
		},
		DescribeState: func(state any) string {
			st := state.(revState)
			var b strings.Builder
			fmt.Fprintf(&b, "rev %d:", st.rev)
			for k := range RevKeys {
				if p := st.present(k); p != nil {
					fmt.Fprintf(&b, " %d=%q(c%d m%d v%d)", k, p.Value, p.CreateRevision, p.ModRevision, p.Version)
				}
			}
			return b.String()
		},
	}
}

// RevLog records a history for RevModel.
type RevLog struct {
	// Quota is the cluster's quota (RevModelQuota); 0: none.
	Quota uint64
	start time.Time
	mu    sync.Mutex // guards ops
	ops   []porcupine.Operation
}

// NewRevLog returns an empty history whose clock starts now.
func NewRevLog() *RevLog { return &RevLog{start: time.Now()} }

// Now is the history's clock.
func (l *RevLog) Now() int64 { return int64(time.Since(l.start)) }

// Add records an operation; an unknown outcome may take effect any time
// after its call.
func (l *RevLog) Add(cli int, in RevInput, out RevOutput, call, ret int64) {
	if out.Unknown {
		ret = math.MaxInt64
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, porcupine.Operation{ClientId: cli, Input: in, Output: out, Call: call, Return: ret})
}

// CheckLinearizable fails t unless porcupine accepts the history.
func (l *RevLog) CheckLinearizable(t testing.TB) {
	t.Helper()
	l.mu.Lock()
	ops := append([]porcupine.Operation(nil), l.ops...)
	l.mu.Unlock()
	begin := time.Now()
	model := RevModelQuota(l.Quota)
	res, info := porcupine.CheckOperationsVerbose(model, ops, linearizabilityTimeout)
	t.Logf("porcupine (revisions): %d operations, %v, checked in %v", len(ops), res, time.Since(begin).Round(time.Millisecond))
	switch res {
	case porcupine.Illegal:
		path := visualise(t.Name(), model, info)
		t.Fatalf("%v; visualisation: %s", errNotLinearizable, path)
	case porcupine.Unknown:
		t.Logf("porcupine timed out after %v; history not proven linearizable", linearizabilityTimeout)
	}
}

// RevParams are the faults and size of a RevTest.
type RevParams struct {
	Servers, Clients              int
	Unreliable, Crash, Partitions bool
	// ShortDelays: see Options.ShortDelays.
	ShortDelays  bool
	MaxRaftState int64
	Rounds       int
	RoundTime    time.Duration
	// ListPage is the page size of listings (below RevKeys, so listings
	// take several pages at one revision).
	ListPage int
	// Txns mixes in Txns over several keys, conditioned on what the
	// client read of them.
	Txns bool
	// Forward makes the clerks send their writes through Forwarders, as
	// durio's frontend does (see Cluster.MakeForwardingClerk).
	Forward bool
	// Replay turns on the replay fault (Options.Replay): delayed copies of
	// the clients' writes reach random servers after their answers.
	Replay bool
	// FewValues draws every written value from a few, so that a key often
	// gets a value back that it had before, and a failed IfValue
	// condition can come true again (as IfAbsent and IfVersion can, after
	// a Delete).
	FewValues bool
	// Raft, if not nil, adjusts each replica's raft configuration
	// (Options.Raft).
	Raft func(*raft.Config)
	// Level, if above 0, is the apply level the cluster must reach before
	// the clients start.
	Level uint32
	// Quota, if above 0, is every server's quota on the state's size
	// (kvraft.Config.MaxStateBytes; enforced from apply level 2: set
	// Level too).
	Quota int64
}

// revFewValues are the values written with RevParams.FewValues.
var revFewValues = [...]string{"a", "b", "c"}

// revValue is the value client cli writes in its operation n (to key k
// in a Txn, -1 otherwise).
func revValue(p RevParams, cli, n, k int) string {
	switch {
	case p.FewValues:
		return revFewValues[rand.IntN(len(revFewValues))]
	case k >= 0:
		return fmt.Sprintf("%d.%d.%d", cli, n, k)
	}
	return fmt.Sprintf("%d.%d", cli, n)
}

// RevTest runs clients doing Gets, compare-and-swap Puts and Deletes (read
// the key, then write on its mod revision, version, value or absence) and
// paged Lists over RevKeys keys under the chosen faults, and checks the
// history with RevModel.
func RevTest(t *testing.T, p RevParams) {
	c := NewCluster(t, Options{Servers: p.Servers, Unreliable: p.Unreliable, ShortDelays: p.ShortDelays, MaxRaftState: p.MaxRaftState,
		Replay: p.Replay, Raft: p.Raft}, StartKVServerWith(func(cfg *kvraft.Config) { cfg.MaxStateBytes = p.Quota }))
	if p.Level > 0 {
		c.WaitApplyLevel(p.Level)
	}
	log := NewRevLog()
	log.Quota = uint64(p.Quota)
	var ok, failed, noSpace atomic.Int64
	for range p.Rounds {
		var stop atomic.Bool
		clientsDone := make(chan struct{})
		go func() {
			defer close(clientsDone)
			c.spawnClients(p.Clients, p.Forward, func(cli int, ck *kvraft.Clerk) {
				for n := 0; !stop.Load(); n++ {
					switch revOp(t, log, ck, cli, n, p) {
					case errCondition:
						failed.Add(1)
					case errNoSpace:
						noSpace.Add(1)
					case nil:
						ok.Add(1)
					}
				}
			})
		}()
		partitioned := make(chan struct{})
		go func() {
			defer close(partitioned)
			for p.Partitions && !stop.Load() {
				c.Partition(c.RandomSplit())
				time.Sleep(time.Second + rand.N(200*time.Millisecond))
			}
		}()
		time.Sleep(p.RoundTime)
		stop.Store(true)
		<-partitioned
		c.Heal()
		if p.Crash {
			c.CrashAll()
			time.Sleep(ElectionWait)
			c.RestartAll()
			c.Heal()
		}
		<-clientsDone
		if t.Failed() {
			t.FailNow()
		}
	}
	t.Logf("%d operations done, %d conditions failed, %d writes refused for the quota", ok.Load(), failed.Load(), noSpace.Load())
	if p.Quota > 0 && (noSpace.Load() == 0 || ok.Load() < 100) {
		t.Fatalf("the quota was not exercised: %d refused, %d operations done", noSpace.Load(), ok.Load())
	}
	// Clients racing on RevKeys keys make conditions fail often; a long
	// run without one would mean the failing path went untested.
	if ok.Load() < int64(p.Clients) || ok.Load() > 500 && failed.Load() == 0 {
		t.Fatalf("too little happened: %d operations done, %d conditions failed", ok.Load(), failed.Load())
	}
	if p.Replay || p.Level > 0 {
		levels := make([]uint32, c.N())
		for i := range levels {
			if srv, ok := c.Replica(i).(*kvraft.Server); ok {
				levels[i] = srv.ApplyLevel()
			}
		}
		t.Logf("apply levels at the end: %v", levels)
	}
	// Porcupine judges first; the replay fault's own check (a copy of a
	// refused write that succeeded) after, so that each is seen alone.
	contradictions, first := c.ReplayContradictions()
	if contradictions > 0 {
		t.Logf("replay: %d copies succeeded where the original was refused; the first: %s", contradictions, first)
	}
	log.CheckLinearizable(t)
	if contradictions > 0 {
		t.Fatalf("replay: %d copies of writes refused for a failed condition succeeded later", contradictions)
	}
}

// errCondition marks an operation whose condition failed, errNoSpace a
// write refused for the quota.
var (
	errCondition = errors.New("condition failed")
	errNoSpace   = errors.New("no space")
)

// revOp runs one random operation of client cli and records it.
func revOp(t *testing.T, log *RevLog, ck *kvraft.Clerk, cli, n int, p RevParams) error {
	ctx, cancel := context.WithTimeout(context.Background(), OpTimeout)
	defer cancel()
	k := rand.IntN(RevKeys)
	key := RevKey(k)
	call := log.Now()
	switch r := rand.IntN(10); {
	case p.Txns && r >= 4 && r < 7:
		return revTxn(t, log, ck, cli, n, p)
	case r < 2:
		resp, err := ck.GetKV(ctx, key, kvraft.Linearizable)
		if err != nil {
			fail(t, "client %d: Get(%q): %v", cli, key, err)
		}
		out := RevOutput{Rev: resp.Header.Revision}
		if resp.Found {
			out.Get = &kvraft.KeyValue{Key: key, Value: resp.Value, CreateRevision: resp.CreateRevision,
				ModRevision: resp.ModRevision, Version: resp.Version}
		}
		log.Add(cli, RevInput{Op: RevGet, Key: k}, out, call, log.Now())
		return nil
	case r < 4:
		return revList(t, log, ck, cli, p.ListPage)
	}
	// A compare-and-swap: read, then write conditionally on what was read.
	resp, err := ck.GetKV(ctx, key, kvraft.Linearizable)
	if err != nil {
		fail(t, "client %d: Get(%q): %v", cli, key, err)
	}
	cond := randomCondition(resp)
	in := RevInput{Op: RevPut, Key: k, Value: revValue(p, cli, n, -1), Cond: cond}
	call = log.Now()
	var out RevOutput
	if rand.IntN(5) == 0 {
		in.Op, in.Value = RevDelete, ""
		var dr *kvraft.DeleteResponse
		if dr, err = ck.DeleteWith(ctx, kvraft.DeleteRequest{Key: key, Condition: cond}); err == nil {
			out.Rev = dr.Header.Revision
		}
	} else {
		var pr *kvraft.PutResponse
		if pr, err = ck.PutWith(ctx, kvraft.PutRequest{Key: key, Value: in.Value, Condition: cond}); err == nil {
			out.Rev = pr.Header.Revision
		}
	}
	var cf *kvraft.ConditionFailedError
	switch {
	case errors.As(err, &cf):
		out.Failed, out.Rev, out.Current = true, cf.Revision, cf.Current
		err = errCondition
	case errors.Is(err, kvraft.ErrNoSpace):
		out.NoSpace = true
		err = errNoSpace
	case err != nil && kvraft.MaybeApplied(err):
		out.Unknown = true
	case err != nil:
		fail(t, "client %d: write %q: %v", cli, key, err)
	}
	log.Add(cli, in, out, call, log.Now())
	return err
}

// revList lists every key in pages of page keys at one revision and
// records it as one operation.
func revList(t *testing.T, log *RevLog, ck *kvraft.Clerk, cli, page int) error {
	ctx, cancel := context.WithTimeout(context.Background(), OpTimeout)
	defer cancel()
	call := log.Now()
	req := kvraft.ListRequest{Prefix: "rev/", Limit: page}
	var out RevOutput
	for {
		resp, err := ck.List(ctx, req)
		if req.Revision != 0 && errors.Is(err, kvraft.ErrCompacted) {
			// The history moved past the listing's revision between two
			// pages (the servers keep 200 events): list again from the
			// start, as a client is told to. The operation then reads the
			// revision of its last pass, still within its interval. A
			// listing that never gets through in time is left out of the
			// history (a read that did not happen).
			if ctx.Err() != nil {
				return nil
			}
			req.After, req.Revision, out.KVs = "", 0, nil
			continue
		}
		if err != nil {
			fail(t, "client %d: List(%+v): %v", cli, req, err)
		}
		if req.Revision != 0 && resp.Revision != req.Revision {
			fail(t, "client %d: a page at revision %d answered %d", cli, req.Revision, resp.Revision)
		}
		out.KVs = append(out.KVs, resp.KVs...)
		if !resp.More {
			out.Rev = resp.Revision
			break
		}
		if len(resp.KVs) == 0 {
			fail(t, "client %d: an empty page with more set", cli)
		}
		req.After, req.Revision = resp.KVs[len(resp.KVs)-1].Key, resp.Revision
	}
	log.Add(cli, RevInput{Op: RevList}, out, call, log.Now())
	return nil
}

// randomCondition returns a condition that held when resp was read: on
// the key's mod revision, version, value or absence, or none.
func randomCondition(resp *kvraft.GetResponse) kvraft.Condition {
	switch c := rand.IntN(4); {
	case !resp.Found && c < 2:
		return kvraft.IfAbsent()
	case c == 0:
		return kvraft.IfModRevision(resp.ModRevision)
	case c == 1:
		return kvraft.IfVersion(resp.Version)
	case c == 2:
		return kvraft.IfValue(resp.Value)
	}
	return kvraft.Condition{}
}

// revTxn reads one to RevKeys keys, then writes one to RevKeys keys (not
// necessarily the same) in a Txn conditioned on what it read, and records
// the Txn.
func revTxn(t *testing.T, log *RevLog, ck *kvraft.Clerk, cli, n int, p RevParams) error {
	ctx, cancel := context.WithTimeout(context.Background(), OpTimeout)
	defer cancel()
	in := RevInput{Op: RevTxn}
	req := kvraft.TxnRequest{}
	for _, k := range rand.Perm(RevKeys)[:1+rand.IntN(RevKeys)] {
		resp, err := ck.GetKV(ctx, RevKey(k), kvraft.Linearizable)
		if err != nil {
			fail(t, "client %d: Get(%q): %v", cli, RevKey(k), err)
		}
		cond := randomCondition(resp)
		if cond.Kind == kvraft.CondNone {
			continue // a Txn's conditions must have a kind
		}
		in.Conds = append(in.Conds, RevCompare{Key: k, Cond: cond})
		req.Conditions = append(req.Conditions, kvraft.Compare{Key: RevKey(k), Condition: cond})
	}
	for _, k := range rand.Perm(RevKeys)[:1+rand.IntN(RevKeys)] {
		w := RevWrite{Key: k, Value: revValue(p, cli, n, k), Delete: rand.IntN(5) == 0}
		in.Writes = append(in.Writes, w)
		if w.Delete {
			req.Writes = append(req.Writes, kvraft.TxnDelete(RevKey(k)))
		} else {
			req.Writes = append(req.Writes, kvraft.TxnPut(RevKey(k), w.Value))
		}
	}
	call := log.Now()
	resp, err := ck.Txn(ctx, req)
	var out RevOutput
	switch {
	case errors.Is(err, kvraft.ErrNoSpace):
		out.NoSpace = true
		err = errNoSpace
	case err != nil && kvraft.MaybeApplied(err):
		out.Unknown = true
	case err != nil:
		fail(t, "client %d: Txn %+v: %v", cli, req, err)
	case resp.Succeeded:
		out.Rev = resp.Header.Revision
	default:
		out.Failed, out.Rev, out.FailedConds, out.CurrentKVs = true, resp.Header.Revision, resp.Failed, resp.Current
		err = errCondition
	}
	log.Add(cli, in, out, call, log.Now())
	return err
}
