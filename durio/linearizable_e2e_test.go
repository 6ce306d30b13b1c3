package durio_test

import (
	"syscall"
	"testing"
	"time"
)

// TestE2ELinearizableForwardedWrites checks with porcupine that what clients
// see is linearizable while most writes are forwarded by followers in
// batches and the leader is killed, restarted, frozen and thawed: real
// processes, several clients each starting at its own replica.
func TestE2ELinearizableForwardedWrites(t *testing.T) {
	c := startCluster(t, 3, "file")
	load := startLinLoad(t, c.clients, 5)
	defer load.cancel()
	pause := time.Sleep // the load runs meanwhile
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
	if n := load.done.Load(); n < 100 {
		t.Fatalf("only %d operations completed", n)
	}
	load.stop(c, []int{0, 1, 2})
}
