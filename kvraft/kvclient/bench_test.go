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

// BenchmarkClerkRequestAtSelf measures a request that the caller's own
// replica answers at the first attempt, as durio's frontend serves a
// linearizable get: with the request's deadline set up front (a
// context.WithTimeout, then DoFrom) and with DoFromBy. Each request's parent
// is a cancelable context, as a server's request context is, and the attempt
// looks at its Done channel, as a read waiting for its index does.
func BenchmarkClerkRequestAtSelf(b *testing.B) {
	for _, by := range []bool{false, true} {
		b.Run(map[bool]string{false: "deadline=upfront", true: "deadline=by"}[by], func(b *testing.B) {
			cfg := DefaultClerkConfig()
			cfg.Leader, cfg.Self = newWatch(0), 1
			ck, err := NewClerk([]Service{&fakeReplica{}, &fakeReplica{}}, cfg)
			if err != nil {
				b.Fatal(err)
			}
			req := &GetRequest{Key: "k"}
			attempt := func(ctx context.Context, s Service) error {
				select {
				case <-ctx.Done():
					return ctx.Err()
				default:
				}
				_, err := s.Get(ctx, req)
				return err
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					parent, cancelParent := context.WithCancel(context.Background())
					if by {
						err = ck.DoFromBy(parent, time.Now().Add(5*time.Second), 1, false, attempt)
					} else {
						ctx, cancel := context.WithTimeout(parent, 5*time.Second)
						err = ck.DoFrom(ctx, 1, false, attempt)
						cancel()
					}
					cancelParent()
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
