package durio_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ruaft/ruaft/durio"
	"github.com/ruaft/ruaft/durio/client"
	"github.com/ruaft/ruaft/kvraft/kvtest"
)

// TestE2ELinearizableForwardedWrites checks with porcupine that what clients
// see is linearizable while most writes are forwarded by followers in
// batches and the leader is killed, restarted, frozen and thawed: real
// processes, several clients each starting at its own replica.
func TestE2ELinearizableForwardedWrites(t *testing.T) {
	c := startCluster(t, 3, "file")
	log := kvtest.NewOpLog()
	keys := []string{"a", "b", "c"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	const clients = 5
	for cli := range clients {
		eps := append(slices.Clone(c.clients[cli%3:]), c.clients[:cli%3]...)
		cl, err := durio.NewClient(eps, durio.ClientOptions{AttemptTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				key := keys[rand.IntN(len(keys))]
				opCtx, opCancel := context.WithTimeout(ctx, 3*time.Second)
				call := log.Now()
				switch r := rand.IntN(10); {
				case r < 4:
					v, err := cl.Get(opCtx, key)
					if errors.Is(err, client.ErrNotFound) {
						v, err = "", nil
					}
					if err == nil {
						log.Add(cli, kvtest.KVInput{Op: kvtest.OpGet, Key: key}, kvtest.KVOutput{Value: kvtest.DigestOf(v)}, call, log.Now())
					}
				default:
					kind, value := kvtest.OpAppend, fmt.Sprintf("x %d %d y", cli, n)
					var err error
					if r < 6 {
						kind = kvtest.OpPut
						err = cl.Put(opCtx, key, value)
					} else {
						err = cl.Append(opCtx, key, value)
					}
					ret := log.Now()
					switch {
					case err == nil:
					case errors.Is(err, client.ErrUnavailable):
						opCancel()
						continue // no replica took it: not applied
					default:
						// Unknown outcome (or cut off by the end of the
						// load): it may take effect at any time after
						// the call.
						ret = math.MaxInt64
					}
					log.Add(cli, kvtest.KVInput{Op: kind, Key: key, Value: value}, kvtest.KVOutput{}, call, ret)
				}
				opCancel()
			}
		})
	}
	stopLoad := func() { cancel(); wg.Wait() }
	defer stopLoad()
	pause := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	pause(time.Second)
	leader := c.waitLeader(10 * time.Second)
	c.kill(leader)
	t.Logf("killed leader %d", leader)
	pause(1500 * time.Millisecond)
	c.start(leader)
	pause(1500 * time.Millisecond)
	leader = c.waitLeader(10 * time.Second)
	p := c.procs[leader].cmd.Process
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped leader %d", leader)
	pause(1500 * time.Millisecond)
	if err := p.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	pause(1500 * time.Millisecond)
	stopLoad()
	if log.Len() < 100 {
		t.Fatalf("only %d operations completed", log.Len())
	}
	log.CheckLinearizable(t)
}
