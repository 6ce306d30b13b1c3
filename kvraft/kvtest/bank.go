package kvtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ruaft/ruaft/kvraft"
)

// BankParams are the faults and size of a BankTest.
type BankParams struct {
	Servers, Accounts, Clients int
	// Unreliable makes the network unreliable from the start (Flaky then
	// turns it off and on).
	Unreliable bool
	// Partitions, Crashes and Flaky choose what the fault loop does every
	// few hundred milliseconds: cut the leader off in a minority or split
	// the servers at random; crash a server (the leader half the time) and
	// restart it from its store at the next step; turn the unreliable
	// network on or off. Otherwise it heals the network.
	Partitions, Crashes, Flaky bool
	MaxRaftState               int64
	// Forward makes the clerks send their writes through Forwarders (see
	// Cluster.MakeForwardingClerk).
	Forward bool
	// RunFor is how long the clients transfer under faults.
	RunFor time.Duration
}

// BankInitial is each account's balance when a BankTest begins.
const BankInitial = 100

// BankAccount names account i of a BankTest.
func BankAccount(i int) string { return "acct/" + strconv.Itoa(i) }

// transfer is one transfer a client saw succeed.
type transfer struct {
	from, to, amount int
	rev              uint64 // the Txn's header revision: its second write's
}

// BankTest runs the bank: Accounts accounts of BankInitial each, and
// clients that move random amounts between random pairs with a
// read-then-Txn (the Txn conditioned on both accounts' mod revisions,
// retried from a fresh read when they failed), under the chosen faults.
// It checks that
//   - every listing of the accounts (one revision) sums to the total, and
//     no balance is negative;
//   - a failed Txn names a condition that indeed no longer held;
//   - at the end, the balances are exactly the initial ones plus the
//     transfers the clients saw succeed, and those transfers consumed
//     exactly two revisions each and nothing else did (so no Txn was
//     applied twice, half, or without its client hearing of it);
//   - every successful Txn's revision is distinct and the writes of each
//     occupy its revision and the one before it (checked by listing at
//     each such revision still in the history: the sum holds at rev and
//     rev-2, and exactly the two accounts changed between them).
//
// A Txn's outcome must be known: its clerk retries until it is answered
// (within OpTimeout), so every transfer is counted.
func BankTest(t *testing.T, p BankParams) {
	c := NewCluster(t, Options{Servers: p.Servers, Unreliable: p.Unreliable, MaxRaftState: p.MaxRaftState}, StartKVServer)
	total := p.Accounts * BankInitial
	init := c.makeClerk(c.All(), p.Forward)
	req := kvraft.TxnRequest{}
	for i := range p.Accounts {
		req.Conditions = append(req.Conditions, kvraft.Compare{Key: BankAccount(i), Condition: kvraft.IfAbsent()})
		req.Writes = append(req.Writes, kvraft.TxnPut(BankAccount(i), strconv.Itoa(BankInitial)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), OpTimeout)
	resp, err := init.Txn(ctx, req)
	cancel()
	if err != nil || !resp.Succeeded {
		t.Fatalf("opening the accounts: %+v, %v", resp, err)
	}
	rev0 := resp.Header.Revision

	var (
		stop             atomic.Bool
		mu               sync.Mutex // guards done
		done             []transfer
		failed, listings atomic.Int64
		maxListRev       atomic.Uint64
		clientsDone      = make(chan struct{})
	)
	go func() {
		defer close(clientsDone)
		c.spawnClients(p.Clients, p.Forward, func(cli int, ck *kvraft.Clerk) {
			for !stop.Load() {
				accts := bankList(t, ck, p.Accounts, total)
				listings.Add(1)
				for old := maxListRev.Load(); accts.rev > old && !maxListRev.CompareAndSwap(old, accts.rev); old = maxListRev.Load() {
				}
				from, to := rand.IntN(p.Accounts), rand.IntN(p.Accounts-1)
				if to >= from {
					to++
				}
				if accts.balance[from] == 0 {
					continue
				}
				amount := 1 + rand.IntN(min(accts.balance[from], 20))
				tr, ok := bankTransfer(t, ck, cli, accts, from, to, amount)
				if !ok {
					failed.Add(1)
					continue
				}
				mu.Lock()
				done = append(done, tr)
				mu.Unlock()
			}
		})
	}()

	faults := c.bankFaults(t, p, &stop)
	<-clientsDone
	if t.Failed() {
		t.FailNow()
	}

	ck := c.MakeClerk(c.All())
	final := bankList(t, ck, p.Accounts, total)
	want := make([]int, p.Accounts)
	for i := range want {
		want[i] = BankInitial
	}
	revs := make(map[uint64]transfer, len(done))
	for _, tr := range done {
		want[tr.from] -= tr.amount
		want[tr.to] += tr.amount
		if other, dup := revs[tr.rev]; dup {
			t.Fatalf("transfers %+v and %+v both answered revision %d", other, tr, tr.rev)
		}
		if tr.rev <= rev0 || (tr.rev-rev0)%2 != 0 {
			t.Fatalf("transfer %+v answered revision %d: not an even number of revisions after the opening (%d)", tr, tr.rev, rev0)
		}
		revs[tr.rev] = tr
	}
	t.Logf("%d faults; %d transfers succeeded, %d conditions failed (retried), %d listings; revisions %d..%d",
		faults, len(done), failed.Load(), listings.Load(), rev0, final.rev)
	for i := range want {
		if final.balance[i] != want[i] {
			t.Errorf("account %d holds %d; the transfers its clients saw succeed leave %d", i, final.balance[i], want[i])
		}
	}
	if used := final.rev - rev0; used != 2*uint64(len(done)) {
		t.Errorf("the transfers consumed %d revisions; %d transfers succeeded, which take %d", used, len(done), 2*len(done))
	}
	if len(done) < p.Clients || final.rev < maxListRev.Load() {
		t.Errorf("too little happened (%d transfers) or a listing saw revision %d beyond the last %d", len(done), maxListRev.Load(), final.rev)
	}
	if t.Failed() {
		t.FailNow()
	}
	bankAudit(t, ck, p.Accounts, total, rev0, final.rev, revs)
}

// accounts is a listing of the bank at one revision.
type accounts struct {
	rev     uint64
	balance []int
	mod     []uint64
}

// bankList lists every account (one page: one revision) and checks that
// the balances sum to total.
func bankList(t testing.TB, ck *kvraft.Clerk, n, total int) accounts {
	a, err := bankListAt(ck, n, total, 0)
	if err != nil {
		fail(t, "%v", err)
	}
	return a
}

// bankListAt is bankList at revision at (0: the current one), returning
// what it finds wrong.
func bankListAt(ck *kvraft.Clerk, n, total int, at uint64) (accounts, error) {
	ctx, cancel := context.WithTimeout(context.Background(), OpTimeout)
	defer cancel()
	resp, err := ck.List(ctx, kvraft.ListRequest{Prefix: "acct/", Revision: at})
	if err != nil {
		return accounts{}, fmt.Errorf("List of the accounts at %d: %w", at, err)
	}
	a := accounts{rev: resp.Revision, balance: make([]int, n), mod: make([]uint64, n)}
	if at != 0 && resp.Revision != at {
		return a, fmt.Errorf("List at revision %d answered at %d", at, resp.Revision)
	}
	if resp.More || len(resp.KVs) != n {
		return a, fmt.Errorf("List at revision %d: %d accounts (more %v), want %d: %+v", resp.Revision, len(resp.KVs), resp.More, n, resp.KVs)
	}
	sum := 0
	for _, kv := range resp.KVs {
		i, err := strconv.Atoi(kv.Key[len("acct/"):])
		if err != nil || i < 0 || i >= n || a.mod[i] != 0 {
			return a, fmt.Errorf("List at revision %d: unexpected key %q", resp.Revision, kv.Key)
		}
		b, err := strconv.Atoi(kv.Value)
		if err != nil || b < 0 {
			return a, fmt.Errorf("List at revision %d: account %q holds %q", resp.Revision, kv.Key, kv.Value)
		}
		a.balance[i], a.mod[i] = b, kv.ModRevision
		sum += b
	}
	if sum != total {
		return a, fmt.Errorf("List at revision %d: the balances %v sum to %d, want %d", resp.Revision, a.balance, sum, total)
	}
	return a, nil
}

// bankTransfer moves amount from account from to account to with a Txn
// conditioned on the mod revisions in a, and reports whether it applied.
func bankTransfer(t testing.TB, ck *kvraft.Clerk, cli int, a accounts, from, to, amount int) (transfer, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), OpTimeout)
	defer cancel()
	req := kvraft.TxnRequest{
		Conditions: []kvraft.Compare{
			{Key: BankAccount(from), Condition: kvraft.IfModRevision(a.mod[from])},
			{Key: BankAccount(to), Condition: kvraft.IfModRevision(a.mod[to])},
		},
		Writes: []kvraft.TxnWrite{
			kvraft.TxnPut(BankAccount(from), strconv.Itoa(a.balance[from]-amount)),
			kvraft.TxnPut(BankAccount(to), strconv.Itoa(a.balance[to]+amount)),
		},
	}
	resp, err := ck.Txn(ctx, req)
	if err != nil {
		// Retried until answered: an error here leaves the outcome
		// unknown, which the final count cannot allow.
		fail(t, "client %d: Txn %+v: %v (maybe applied: %v)", cli, req, err, kvraft.MaybeApplied(err))
	}
	if resp.Succeeded {
		return transfer{from: from, to: to, amount: amount, rev: resp.Header.Revision}, true
	}
	// The answer must name a condition that no longer holds, with the
	// account as it is now.
	if len(resp.Failed) == 0 || resp.Header.Revision < a.rev {
		fail(t, "client %d: Txn failed without a failed condition or below the read revision %d: %+v", cli, a.rev, resp)
	}
	for _, i := range resp.Failed {
		key, mod := req.Conditions[i].Key, req.Conditions[i].Condition.ModRevision
		for _, kv := range resp.Current {
			if kv.Key == key && (kv.ModRevision == mod || kv.ModRevision > resp.Header.Revision) {
				fail(t, "client %d: condition %d (%s at mod revision %d) reported failed, but the key is %+v at revision %d",
					cli, i, key, mod, kv, resp.Header.Revision)
			}
		}
	}
	return transfer{}, false
}

// bankAudit lists the accounts at each successful transfer's revision
// still in the history, and at the revision before its two writes: both
// sum to total (bankListAt), and between them exactly the transfer's two
// accounts changed, by its amount. So each Txn's writes are the two
// revisions it answered, applied together.
func bankAudit(t testing.TB, ck *kvraft.Clerk, n, total int, rev0, last uint64, revs map[uint64]transfer) {
	audited := 0
	after, err := bankListAt(ck, n, total, last)
	if err != nil {
		t.Fatal(err)
	}
	for rev := last; rev > rev0; rev -= 2 {
		tr, ok := revs[rev]
		if !ok {
			t.Fatalf("revision %d: no transfer answered it, yet the transfers consumed every revision", rev)
		}
		before, err := bankListAt(ck, n, total, rev-2)
		if errors.Is(err, kvraft.ErrCompacted) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			d := after.balance[i] - before.balance[i]
			switch {
			case i == tr.from && d == -tr.amount, i == tr.to && d == tr.amount:
				if after.mod[i] != rev-1 && after.mod[i] != rev {
					t.Fatalf("revision %d: account %d written at %d, not by transfer %+v", rev, i, after.mod[i], tr)
				}
			case i != tr.from && i != tr.to && d == 0 && after.mod[i] == before.mod[i]:
			default:
				t.Fatalf("between revisions %d and %d account %d went %d -> %d (mod %d -> %d); the transfer there was %+v",
					rev-2, rev, i, before.balance[i], after.balance[i], before.mod[i], after.mod[i], tr)
			}
		}
		audited++
		after = before
	}
	t.Logf("audited %d transfers in the retained history", audited)
}

// bankFaults injects p's faults until RunFor has passed, then heals the
// network, restarts every crashed server, sets stop, and returns how many
// faults it injected.
func (c *Cluster) bankFaults(t *testing.T, p BankParams, stop *atomic.Bool) int {
	defer stop.Store(true)
	down := -1
	faults := 0
	deadline := time.Now().Add(p.RunFor)
	for time.Now().Before(deadline) {
		time.Sleep(200*time.Millisecond + rand.N(400*time.Millisecond))
		faults++
		switch r := rand.IntN(6); {
		case down >= 0:
			c.Restart(down)
			c.Connect(down)
			down = -1
		case p.Crashes && r == 0:
			down = rand.IntN(p.Servers)
			if l, ok := c.Leader(); ok && rand.IntN(2) == 0 {
				down = l
			}
			c.Crash(down)
		case p.Partitions && r == 1:
			c.Partition(c.RandomSplit())
		case p.Partitions && r == 2:
			c.Partition(c.MakePartition())
		case p.Flaky && r == 3:
			c.SetUnreliable(rand.IntN(2) == 0)
		default:
			c.Heal()
		}
	}
	if down >= 0 {
		c.Restart(down)
	}
	c.SetUnreliable(p.Unreliable)
	c.Heal()
	return faults
}
