package durio

import "testing"

// TestReview7CoLocatedSpellings: a host name is the same host whatever its
// case and with or without the trailing dot of a fully qualified name, and
// localhost is loopback however it is spelled.
func TestReview7CoLocatedSpellings(t *testing.T) {
	for _, c := range []struct {
		name  string
		peers []string
		want  int
	}{
		{"LOCALHOST", []string{"http://127.0.0.1:2380", "http://LOCALHOST:2381", "http://[::1]:2382"}, 3},
		{"localhost.", []string{"http://127.0.0.1:2380", "http://localhost.:2381", "http://[::1]:2382"}, 3},
		{"trailing dot", []string{"https://pi-1.example.:2380", "https://PI-1.example:2381", "https://pi-2.example:2380"}, 2},
		{"IPv4-mapped loopback", []string{"http://127.0.0.1:2380", "http://[::ffff:127.0.0.1]:2381", "http://10.0.0.1:2380"}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Peers, cfg.ID = c.peers, 0
			if got := coLocatedReplicas(cfg); got != c.want {
				t.Errorf("coLocatedReplicas(%q) = %d, want %d", c.peers, got, c.want)
			}
		})
	}
}
