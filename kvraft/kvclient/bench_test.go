package kvclient

import (
	"context"
	"testing"
	"time"
)

// BenchmarkClerkDo measures what the leader-following loop adds to one
// request that succeeds at the first replica, as durio's frontend runs every
// client request: without a LeaderWatch, with one (each attempt watched for
// a leader change by a goroutine), with a LeaderSubscriber (watched by a
// registration, as durio's frontend does), and with one at the caller's own replica (Self, not
// watched). Run in parallel, as requests arrive.
func BenchmarkClerkDo(b *testing.B) {
	for _, watch := range []string{"off", "on", "subscriber", "self"} {
		b.Run("watch="+watch, func(b *testing.B) {
			cfg := DefaultClerkConfig()
			cfg.AttemptTimeout = time.Second
			switch watch {
			case "on", "self":
				cfg.Leader = newWatch(0)
			case "subscriber":
				cfg.Leader = &subWatch{watch: newWatch(0)}
			}
			if watch == "self" {
				cfg.Self = 0 // the replica of the caller's own node
			}
			ck, err := NewClerk([]Service{&fakeReplica{}}, cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			req := &GetRequest{Key: "k"}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					err := ck.Do(ctx, false, func(ctx context.Context, s Service) error {
						_, err := s.Get(ctx, req)
						return err
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
