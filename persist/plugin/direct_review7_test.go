//go:build unix

package plugin

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
)

// hostile gives the host's end of a direct channel whose other end the
// test plays, as a plugin that misbehaves would.
func hostile(t *testing.T) (*directClient, *os.File) {
	t.Helper()
	host, child, err := directPair()
	if err != nil {
		t.Fatal(err)
	}
	c := newDirectClient(host, true)
	t.Cleanup(func() { _ = c.close(); _ = child.Close() })
	return c, child
}

// appendAsync runs one append in a goroutine and returns its result.
func appendAsync(ctx context.Context, c *directClient, entries []persist.Entry) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, _, err := c.append(ctx, persist.HardState{Term: 1}, entries)
		done <- err
	}()
	return done
}

func wait(t *testing.T, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the append still waits 10 s later", what)
		return nil
	}
}

// TestReview7CancelWhileTheHostWrites cancels an append whose frame is
// larger than the socket buffers while the plugin reads nothing: the host
// waits for room in the netpoller, and the cancellation must end that wait.
func TestReview7CancelWhileTheHostWrites(t *testing.T) {
	c, _ := hostile(t)
	ctx, cancel := context.WithCancel(ctx0)
	big := []persist.Entry{{Index: 1, Term: 1, Data: make([]byte, 16<<20)}}
	done := appendAsync(ctx, c, big)
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := wait(t, done, "cancelled mid-write"); !errors.Is(err, persist.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("append cancelled mid-write: %v; want ErrUnavailable and context.Canceled", err)
	}
}

// TestReview7PluginMisbehaves plays plugins that read the request and then
// die, answer garbage, or answer half a frame and stall: the host's append
// ends with ErrUnavailable (the stall once its context is cancelled), and
// the channel is not used again.
func TestReview7PluginMisbehaves(t *testing.T) {
	for _, c := range []struct {
		name   string
		answer func(child *os.File)
		cancel bool
	}{
		{"dies", func(child *os.File) { _ = child.Close() }, false},
		{"garbage", func(child *os.File) { _, _ = child.Write([]byte{9, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0}) }, false},
		{"oversized frame", func(child *os.File) { _, _ = child.Write([]byte{0xff, 0xff, 0xff, 0xff}) }, false},
		// 1 MiB is below the request limit but far above any answer.
		{"answer above the response limit", func(child *os.File) { _, _ = child.Write([]byte{0, 0, 0x10, 0}) }, false},
		{"half a frame, then stalls", func(child *os.File) { _, _ = child.Write([]byte{9, 0, 0, 0, 0}) }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dc, child := hostile(t)
			ctx, cancel := context.WithCancel(ctx0)
			defer cancel()
			done := appendAsync(ctx, dc, testEntries(1, 3))
			if _, err := readFrame(child, nil); err != nil {
				t.Fatal(err)
			}
			c.answer(child)
			if c.cancel {
				time.Sleep(20 * time.Millisecond)
				cancel()
			}
			if err := wait(t, done, c.name); !errors.Is(err, persist.ErrUnavailable) {
				t.Fatalf("append: %v; want ErrUnavailable", err)
			}
			if _, _, err := dc.append(ctx0, persist.HardState{Term: 1}, nil); !errors.Is(err, persist.ErrUnavailable) {
				t.Fatalf("append on the broken channel: %v; want ErrUnavailable", err)
			}
		})
	}
}

// TestReview7CloseAfterCancelledAppend: close, called while an append
// waits for a stalled plugin, returns once that append's context is
// cancelled, and the plugin's end then sees EOF.
func TestReview7CloseAfterCancelledAppend(t *testing.T) {
	dc, child := hostile(t)
	ctx, cancel := context.WithCancel(ctx0)
	done := appendAsync(ctx, dc, testEntries(1, 1))
	if _, err := readFrame(child, nil); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- dc.close() }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	wait(t, done, "cancelled")
	if err := wait(t, closed, "close"); err != nil {
		t.Fatalf("close: %v", err)
	}
	if n, err := child.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("plugin's end after close: %d, %v; want EOF", n, err)
	}
}

// TestReview7NoDescriptorLeaks opens and closes channels, some broken by a
// cancelled append, and counts the process's open descriptors.
func TestReview7NoDescriptorLeaks(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts /proc/self/fd")
	}
	count := func() int {
		es, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	before := count()
	for i := range 50 {
		host, child, err := directPair()
		if err != nil {
			t.Fatal(err)
		}
		dc := newDirectClient(host, true)
		if i%2 == 0 {
			ctx, cancel := context.WithCancel(ctx0)
			done := appendAsync(ctx, dc, testEntries(1, 1))
			cancel()
			wait(t, done, "cancelled")
		}
		_ = dc.close()
		_ = child.Close()
	}
	// What is not a Unix socket is refused, and closed like the rest.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := ln.(*net.TCPListener).File()
	_ = ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*os.File{r, tcp} {
		if _, err := newPollEnd(f); err == nil {
			t.Fatalf("newPollEnd(%s) succeeded", f.Name())
		}
	}
	if after := count(); after > before {
		t.Fatalf("%d descriptors open before, %d after 50 channels", before, after)
	}
}
