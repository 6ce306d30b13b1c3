package durio_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ruaft/ruaft/durio/client"
	"github.com/ruaft/ruaft/kvraft/kvtest"
)

// TestE2ETxnBank runs bank transfers through the Go client against real
// processes while the leader is killed with SIGKILL (and restarted on its
// data directory) and then frozen with SIGSTOP: each client starts at its
// own replica, so most Txns are forwarded by a follower in batches. The
// accounts are kvtest's revision-model keys, so besides the bank's
// invariants (every listing, at one revision, sums to the total; at the
// end the balances and the revisions consumed match the transfers the
// clients saw succeed, give or take those whose outcome stayed unknown)
// porcupine checks the history of listings and Txns with kvtest.RevModel.
func TestE2ETxnBank(t *testing.T) {
	const (
		accounts = kvtest.RevKeys
		initial  = 100
		total    = accounts * initial
		clients  = 4
	)
	c := startCluster(t, 3, "file")
	log := kvtest.NewRevLog()
	cl, err := client.New(c.clients, client.Options{AttemptTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	open := kvtest.RevInput{Op: kvtest.RevTxn}
	var conds []client.Compare
	var writes []client.TxnWrite
	for i := range accounts {
		open.Conds = append(open.Conds, kvtest.RevCompare{Key: i, Cond: client.IfAbsent()})
		open.Writes = append(open.Writes, kvtest.RevWrite{Key: i, Value: strconv.Itoa(initial)})
		conds = append(conds, client.Compare{Key: kvtest.RevKey(i), Condition: client.IfAbsent()})
		writes = append(writes, client.TxnPut(kvtest.RevKey(i), strconv.Itoa(initial)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	call := log.Now()
	resp, err := cl.Txn(ctx, conds, writes...)
	cancel()
	if err != nil || !resp.Succeeded || resp.Header.Revision != accounts {
		t.Fatalf("opening the accounts on a new cluster: %+v, %v", resp, err)
	}
	log.Add(0, open, kvtest.RevOutput{Rev: resp.Header.Revision}, call, log.Now())
	rev0 := resp.Header.Revision

	var (
		wg                        sync.WaitGroup
		mu                        sync.Mutex // guards balance
		balance                   = make([]int, accounts)
		succeeded, failed, unsure atomic.Int64
		listings                  atomic.Int64
	)
	for i := range balance {
		balance[i] = initial
	}
	loadCtx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	for cli := 1; cli <= clients; cli++ {
		k := cli % len(c.clients)
		cl, err := client.New(append(slices.Clone(c.clients[k:]), c.clients[:k]...), client.Options{AttemptTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for loadCtx.Err() == nil {
				a, ok := bankListE2E(t, loadCtx, log, cli, cl, total)
				if !ok {
					continue
				}
				listings.Add(1)
				from, to := rand.IntN(accounts), rand.IntN(accounts-1)
				if to >= from {
					to++
				}
				if a.balance[from] == 0 {
					continue
				}
				amount := 1 + rand.IntN(min(a.balance[from], 20))
				in := kvtest.RevInput{Op: kvtest.RevTxn,
					Conds: []kvtest.RevCompare{{Key: from, Cond: client.IfModRevision(a.mod[from])}, {Key: to, Cond: client.IfModRevision(a.mod[to])}},
					Writes: []kvtest.RevWrite{{Key: from, Value: strconv.Itoa(a.balance[from] - amount)},
						{Key: to, Value: strconv.Itoa(a.balance[to] + amount)}}}
				var conds []client.Compare
				var writes []client.TxnWrite
				for j := range in.Conds {
					conds = append(conds, client.Compare{Key: kvtest.RevKey(in.Conds[j].Key), Condition: in.Conds[j].Cond})
					writes = append(writes, client.TxnPut(kvtest.RevKey(in.Writes[j].Key), in.Writes[j].Value))
				}
				// The Txn is not cut off by the end of the load: its
				// outcome should be known.
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				call := log.Now()
				resp, err := cl.Txn(ctx, conds, writes...)
				ret := log.Now()
				cancel()
				var out kvtest.RevOutput
				switch {
				case errors.Is(err, client.ErrUnavailable):
					continue // no replica took it: not applied
				case err != nil:
					unsure.Add(1)
					out.Unknown = true
				case resp.Succeeded:
					succeeded.Add(1)
					out.Rev = resp.Header.Revision
					mu.Lock()
					balance[from] -= amount
					balance[to] += amount
					mu.Unlock()
				default:
					failed.Add(1)
					out.Failed, out.Rev, out.FailedConds, out.CurrentKVs = true, resp.Header.Revision, resp.Failed, resp.Current
				}
				log.Add(cli, in, out, call, ret)
			}
		})
	}

	waitTransfers := func(n int64, what string) {
		t.Helper()
		want := succeeded.Load() + n
		deadline := time.Now().Add(20 * time.Second)
		for succeeded.Load() < want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: fewer than %d transfers within 20 s", what, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitTransfers(20, "before the faults")
	leader := c.waitLeader(10 * time.Second)
	c.kill(leader)
	t.Logf("killed leader %d", leader)
	waitTransfers(20, "after the kill")
	c.start(leader)
	leader = c.waitLeader(10 * time.Second)
	p := c.procs[leader].cmd.Process
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped leader %d", leader)
	waitTransfers(20, "while the old leader is stopped")
	if err := p.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitTransfers(20, "after the old leader resumed")
	stopLoad()
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// The final state through each replica, as one more listing each.
	var final bankE2EAccounts
	for i, url := range c.clients {
		rcl, err := client.New([]string{url}, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		a, ok := bankListE2E(t, ctx, log, 100+i, rcl, total)
		cancel()
		if !ok {
			t.Fatalf("final listing through replica %d failed", i)
		}
		final = a
	}
	n := succeeded.Load()
	t.Logf("%d transfers succeeded, %d failed their conditions, %d outcomes unknown; %d listings; revisions %d..%d",
		n, failed.Load(), unsure.Load(), listings.Load(), rev0, final.rev)
	used := final.rev - rev0
	if used < 2*uint64(n) || used > 2*uint64(n+unsure.Load()) {
		t.Errorf("the transfers consumed %d revisions: %d succeeded and %d may have, which take %d to %d",
			used, n, unsure.Load(), 2*n, 2*(n+unsure.Load()))
	}
	if unsure.Load() == 0 && !slices.Equal(final.balance, balance) {
		t.Errorf("the balances are %v; the transfers the clients saw succeed leave %v", final.balance, balance)
	}
	log.CheckLinearizable(t)
}

// bankE2EAccounts is a listing of the accounts at one revision.
type bankE2EAccounts struct {
	rev     uint64
	balance []int
	mod     []uint64
}

// bankListE2E lists the accounts (one page, one revision), records the
// listing in log, and checks that the balances sum to total; ok is false
// if the listing failed (it has no effect and is left out).
func bankListE2E(t *testing.T, ctx context.Context, log *kvtest.RevLog, cli int, cl *client.Client, total int) (bankE2EAccounts, bool) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	call := log.Now()
	resp, err := cl.List(ctx, client.ListRequest{Prefix: "rev/"})
	if err != nil {
		return bankE2EAccounts{}, false
	}
	log.Add(cli, kvtest.RevInput{Op: kvtest.RevList}, kvtest.RevOutput{Rev: resp.Revision, KVs: resp.KVs}, call, log.Now())
	a := bankE2EAccounts{rev: resp.Revision, balance: make([]int, kvtest.RevKeys), mod: make([]uint64, kvtest.RevKeys)}
	if resp.More || len(resp.KVs) != kvtest.RevKeys {
		t.Errorf("listing at revision %d: %+v (more %v)", resp.Revision, resp.KVs, resp.More)
		return a, false
	}
	sum := 0
	for i, kv := range resp.KVs {
		b, err := strconv.Atoi(kv.Value)
		if kv.Key != kvtest.RevKey(i) || err != nil || b < 0 {
			t.Errorf("listing at revision %d: %q = %q", resp.Revision, kv.Key, kv.Value)
			return a, false
		}
		a.balance[i], a.mod[i] = b, kv.ModRevision
		sum += b
	}
	if sum != total {
		t.Errorf("listing at revision %d: the balances %v sum to %d, want %d", resp.Revision, a.balance, sum, total)
		return a, false
	}
	return a, true
}
