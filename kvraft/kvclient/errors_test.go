package kvclient

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestMaybeApplied(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&WrongLeaderError{Leader: 1}, false},
		{&WrongLeaderError{Leader: NoLeader, Proposed: true}, true},
		{fmt.Errorf("wrapped: %w", &WrongLeaderError{Leader: 2, Proposed: true}), true},
		{ErrTimeout, true},
		{ErrKilled, true},
		{context.DeadlineExceeded, true},
		{errors.New("connection reset"), true},
		{ErrUnreachable, false},
		{ErrNoLeader, false},
		{ErrInvalid, false},
		{ErrStale, false},
		{ErrTooLarge, false},
		{ErrNoSession, false},
		{ErrTooManyPending, false},
		{ErrRejected, false},
	} {
		if got := MaybeApplied(c.err); got != c.want {
			t.Errorf("MaybeApplied(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
