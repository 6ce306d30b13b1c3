package plugin

import (
	"os"
	"testing"
	"time"
)

// watchParent reports a parent that is no longer this process's parent
// within an interval or so, and never while it still is.
func TestWatchParent(t *testing.T) {
	gone := make(chan struct{})
	go watchParent(os.Getppid()+1, 10*time.Millisecond, nil, func() { close(gone) })
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("a parent that is gone was not reported")
	}
	still, stop := make(chan struct{}), make(chan struct{})
	defer close(stop)
	go watchParent(os.Getppid(), 10*time.Millisecond, stop, func() { close(still) })
	select {
	case <-still:
		t.Fatal("the live parent was reported gone")
	case <-time.After(200 * time.Millisecond):
	}
}
