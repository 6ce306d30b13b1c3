package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPortsAreDistinctBindableAndBelowTheEphemeralRange(t *testing.T) {
	ports := Ports(t, 20)
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d twice in %v", p, ports)
		}
		seen[p] = true
		if p < low || p >= high {
			t.Fatalf("port %d outside [%d, %d)", p, low, high)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d not bindable after Ports returned: %v", p, err)
		}
		ln.Close()
	}
}

func TestRangeIsConsecutiveAndBindable(t *testing.T) {
	base := Range(t, 6)
	if base < low || base+6 > high {
		t.Fatalf("range %d-%d outside [%d, %d)", base, base+5, low, high)
	}
	for p := base; p < base+6; p++ {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d of the range not bindable: %v", p, err)
		}
		ln.Close()
	}
}
