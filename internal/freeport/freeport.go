// Package freeport picks loopback TCP ports for tests that must name a
// port before the process that binds it starts (a replica's peer URL is
// in every other replica's configuration).
//
// A port the kernel chose for a listener that is then closed is still in
// its ephemeral range, so the kernel may hand it to another listener or
// connection of a parallel test before the replica binds it. These ports
// are drawn at random from below Linux's default ephemeral range
// (32768-60999) instead, and each was bindable when chosen. Another test
// drawing the same port in the same moment is still possible, only
// unlikely; callers that can start again on new ports should.
package freeport

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// low and high bound the ports drawn: [low, high).
const low, high = 10000, 32000

// Ports returns n distinct loopback ports that were free when chosen.
func Ports(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries == 50*n {
			t.Fatalf("freeport: no %d free loopback ports in %d tries", n, tries)
		}
		// A port already held by lns fails to bind, so none repeats.
		ln, err := listen(low + rand.IntN(high-low))
		if err != nil {
			continue
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// Range returns a first port such that port..port+n-1 were all free on
// loopback when chosen (durio dev takes consecutive ports).
func Range(t testing.TB, n int) int {
	t.Helper()
	for range 50 {
		base := low + rand.IntN(high-low-n)
		var lns []net.Listener
		for i := range n {
			ln, err := listen(base + i)
			if err != nil {
				break
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			ln.Close()
		}
		if len(lns) == n {
			return base
		}
	}
	t.Fatalf("freeport: no %d consecutive free loopback ports", n)
	return 0
}

func listen(port int) (net.Listener, error) {
	return net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
}
