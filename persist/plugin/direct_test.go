//go:build unix

package plugin

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ruaft/ruaft/persist"
)

func testEntries(first, n uint64) []persist.Entry {
	es := make([]persist.Entry, n)
	for i := range es {
		es[i] = persist.Entry{Index: first + uint64(i), Term: 7, Type: persist.EntryCommand, Data: []byte{byte(i), 2, 3}}
	}
	return es
}

func TestAppendFrameRoundTrip(t *testing.T) {
	for _, c := range []struct {
		hs persist.HardState
		es []persist.Entry
	}{
		{persist.HardState{Term: 1, VotedFor: persist.NoVote}, nil},
		{persist.HardState{Term: 9, VotedFor: 2, Commit: 4}, testEntries(5, 3)},
		{persist.HardState{Term: 1 << 62, VotedFor: 1<<31 - 1, Commit: 1 << 63}, []persist.Entry{{Index: 1, Term: 1, Type: persist.EntryNoop}}},
	} {
		frame := appendFrame(nil, c.hs, c.es)
		if len(frame) != appendFrameSize(c.es) {
			t.Fatalf("frame of %d bytes, appendFrameSize says %d", len(frame), appendFrameSize(c.es))
		}
		body, err := readFrame(bytes.NewReader(frame), nil)
		if err != nil || body[0] != opAppend {
			t.Fatalf("readFrame: %v, op %d", err, body[0])
		}
		hs, es, err := parseAppend(body[1:], nil)
		if err != nil {
			t.Fatal(err)
		}
		if hs != c.hs || len(es) != len(c.es) {
			t.Fatalf("got %+v and %d entries, want %+v and %d", hs, len(es), c.hs, len(c.es))
		}
		for i := range es {
			if es[i].Index != c.es[i].Index || es[i].Term != c.es[i].Term || es[i].Type != c.es[i].Type || !bytes.Equal(es[i].Data, c.es[i].Data) {
				t.Fatalf("entry %d: got %+v, want %+v", i, es[i], c.es[i])
			}
		}
	}
}

// TestParseAppendHostile feeds malformed Append bodies: each must be
// refused with errFrame, without panicking or allocating for a count the
// body cannot hold.
func TestParseAppendHostile(t *testing.T) {
	good := appendFrame(nil, persist.HardState{Term: 3, VotedFor: 1}, testEntries(1, 2))[5:]
	withCount := func(n uint32) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint32(b[24:], n)
		return b
	}
	withVote := func(v int64) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint64(b[8:], uint64(v))
		return b
	}
	withType := func(typ byte) []byte {
		b := bytes.Clone(good)
		b[28+16] = typ
		return b
	}
	withLen := func(n uint32) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint32(b[28+17:], n)
		return b
	}
	for name, body := range map[string][]byte{
		"empty":             nil,
		"short hard state":  good[:20],
		"no entries":        good[:28],
		"count too large":   withCount(1 << 31),
		"count one more":    withCount(3),
		"count one less":    withCount(1),
		"cut in a header":   good[:28+10],
		"cut in data":       good[:len(good)-1],
		"trailing byte":     append(bytes.Clone(good), 0),
		"vote below NoVote": withVote(-2),
		"vote above int32":  withVote(1 << 40),
		"entry length huge": withLen(1<<32 - 1),
		"entry type 0":      withType(0),
		"entry type 200":    withType(200),
	} {
		if _, _, err := parseAppend(body, nil); !errors.Is(err, errFrame) {
			t.Errorf("%s: %v, want errFrame", name, err)
		}
	}
}

func TestReadFrameLimits(t *testing.T) {
	for name, in := range map[string][]byte{
		"zero length": {0, 0, 0, 0},
		"too large":   binary.LittleEndian.AppendUint32(nil, maxMessageBytes+1),
	} {
		if _, err := readFrame(bytes.NewReader(in), nil); !errors.Is(err, errFrame) {
			t.Errorf("%s: %v, want errFrame", name, err)
		}
	}
	if _, err := readFrame(bytes.NewReader([]byte{5, 0, 0, 0, 1, 2}), nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut frame: %v, want ErrUnexpectedEOF", err)
	}
}

func TestResponseFrame(t *testing.T) {
	for _, sequenced := range []bool{false, true} {
		for _, c := range []struct {
			err  error
			want error
		}{
			{nil, nil},
			{persist.ErrNonContiguous, persist.ErrNonContiguous},
			{persist.ErrFailed, persist.ErrFailed},
			{errors.New("disk on fire"), nil},
		} {
			sent := figure{size: 42, seq: 7}
			b, err := readFrame(bytes.NewReader(responseFrame(nil, sent, sequenced, c.err)), nil)
			if err != nil {
				t.Fatal(err)
			}
			want := sent
			if !sequenced {
				want.seq = 0 // not on the wire
			}
			fig, storeErr, bad := parseResponse(b, sequenced)
			if bad != nil || fig != want {
				t.Fatalf("sequenced %v, %v: figure %+v, bad %v; want %+v", sequenced, c.err, fig, bad, want)
			}
			switch {
			case c.err == nil && storeErr != nil:
				t.Errorf("ok response gave %v", storeErr)
			case c.err != nil && (storeErr == nil || !strings.Contains(storeErr.Error(), c.err.Error())):
				t.Errorf("%v came back as %v", c.err, storeErr)
			case c.want != nil && !errors.Is(storeErr, c.want):
				t.Errorf("%v came back as %v, not matching the sentinel", c.err, storeErr)
			case c.want == nil && errors.Is(storeErr, persist.ErrUnavailable):
				t.Errorf("a store error came back as %v", storeErr)
			}
		}
	}
	for name, c := range map[string]struct {
		b         []byte
		sequenced bool
	}{
		"short":                    {[]byte{0, 1}, false},
		"bad status":               {append([]byte{7}, make([]byte, 8)...), false},
		"ok with a tail":           {append([]byte{statusOK}, make([]byte, 9)...), false},
		"reason too big":           {append(append([]byte{statusError}, make([]byte, 8)...), 200, 'x'), false},
		"no reason byte":           {append([]byte{statusError}, make([]byte, 8)...), false},
		"ok without its sequence":  {append([]byte{statusOK}, make([]byte, 8)...), true},
		"ok with a tail, numbered": {append([]byte{statusOK}, make([]byte, 17)...), true},
		"error cut in the number":  {append([]byte{statusError}, make([]byte, 12)...), true},
	} {
		if _, _, bad := parseResponse(c.b, c.sequenced); !errors.Is(bad, errFrame) {
			t.Errorf("%s: %v, want errFrame", name, bad)
		}
	}
}

// blockingStore is a Memory store whose Append waits for release.
type blockingStore struct {
	persist.Store
	entered chan struct{}
	release chan struct{}
}

func (b *blockingStore) Append(ctx context.Context, hs persist.HardState, es []persist.Entry) error {
	b.entered <- struct{}{}
	<-b.release
	return b.Store.Append(ctx, hs, es)
}

// directOver serves st on an in-process socket pair and returns the host's
// end; the channel is stopped at cleanup.
func directOver(t *testing.T, st persist.Store) *directClient {
	t.Helper()
	host, child, err := directPair()
	if err != nil {
		t.Fatal(err)
	}
	srv := &server{st: st}
	d := serveDirect(pluginEnd(t, child), srv, true)
	c := newDirectClient(host, true)
	t.Cleanup(func() {
		_ = c.close()
		d.stop()
	})
	return c
}

// pluginEnd makes child, the plugin's end of a directPair, an endpoint as
// the plugin does with the descriptor it inherits; child is closed.
func pluginEnd(t *testing.T, child *os.File) endpoint {
	t.Helper()
	e, err := newPollEnd(child)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestDirectAppendErrors(t *testing.T) {
	c := directOver(t, persist.NewMemory())
	if _, _, err := c.append(ctx0, persist.HardState{Term: 1}, testEntries(1, 3)); err != nil {
		t.Fatal(err)
	}
	// A store error comes back matching its sentinel, and the channel
	// stays usable.
	first, answered, err := c.append(ctx0, persist.HardState{Term: 1}, testEntries(9, 1))
	if !errors.Is(err, persist.ErrNonContiguous) || errors.Is(err, persist.ErrUnavailable) || !answered {
		t.Fatalf("gap: %v (answered %v), want ErrNonContiguous", err, answered)
	}
	fig, _, err := c.append(ctx0, persist.HardState{Term: 1}, testEntries(4, 1))
	if err != nil || fig.size != persist.LogSize(testEntries(1, 4)) {
		t.Fatalf("append after a refused one: size %d, %v", fig.size, err)
	}
	if fig.seq <= first.seq {
		t.Fatalf("figures numbered %d then %d: not increasing", first.seq, fig.seq)
	}
	// A batch above the frame limit is refused before it is sent: no
	// answer, so no figure to take. (Its entries share one buffer.)
	shared := make([]byte, 64<<20)
	var big []persist.Entry
	for i := range uint64(maxMessageBytes/len(shared) + 1) {
		big = append(big, persist.Entry{Index: 5 + i, Term: 1, Type: persist.EntryCommand, Data: shared})
	}
	if _, answered, err := c.append(ctx0, persist.HardState{Term: 1}, big); err == nil || answered {
		t.Fatalf("batch above the limit: %v, answered %v", err, answered)
	}
}

var ctx0 = context.Background()

// TestDirectAppendCancel cancels a call the plugin is blocked in: it returns
// at once with ErrUnavailable and the context's error, and the channel is
// not used again.
func TestDirectAppendCancel(t *testing.T) {
	st := &blockingStore{Store: persist.NewMemory(), entered: make(chan struct{}, 1), release: make(chan struct{})}
	c := directOver(t, st)
	ctx, cancel := context.WithCancel(ctx0)
	done := make(chan error, 1)
	go func() {
		_, _, err := c.append(ctx, persist.HardState{Term: 1}, testEntries(1, 1))
		done <- err
	}()
	<-st.entered
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, persist.ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled append: %v, want ErrUnavailable and context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled append did not return")
	}
	close(st.release)
	if _, _, err := c.append(ctx0, persist.HardState{Term: 1}, nil); !errors.Is(err, persist.ErrUnavailable) {
		t.Fatalf("append after a cancelled one: %v, want ErrUnavailable", err)
	}
}

// TestDirectServerRefusesGarbage sends malformed frames to the plugin's end:
// it drops the channel (EOF to the host) rather than guessing.
func TestDirectServerRefusesGarbage(t *testing.T) {
	for name, frame := range map[string][]byte{
		"unknown op":        {1, 0, 0, 0, 99},
		"zero length":       {0, 0, 0, 0},
		"oversized length":  binary.LittleEndian.AppendUint32(nil, maxMessageBytes+1),
		"bad append body":   {3, 0, 0, 0, opAppend, 1, 2},
		"count beyond body": append([]byte{32, 0, 0, 0, opAppend}, append(make([]byte, 24), 0xff, 0xff, 0xff, 0xff, 0, 0, 0)...),
	} {
		t.Run(name, func(t *testing.T) {
			host, child, err := directPair()
			if err != nil {
				t.Fatal(err)
			}
			d := serveDirect(pluginEnd(t, child), &server{st: persist.NewMemory()}, true)
			defer d.stop()
			defer host.Close()
			if _, err := host.Write(frame); err != nil {
				t.Fatal(err)
			}
			var b [1]byte
			if n, err := host.Read(b[:]); n != 0 || !errors.Is(err, io.EOF) {
				t.Fatalf("after a malformed frame: read %d bytes, %v; want EOF", n, err)
			}
		})
	}
}

// TestDirectConcurrentCallers checks that concurrent calls (which the Store
// contract does not make, but a buggy caller might) never interleave frames.
func TestDirectConcurrentCallers(t *testing.T) {
	c := directOver(t, acceptAll{persist.NewNoop()})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				es := testEntries(uint64(g*1000+i+1), uint64(i%7))
				if _, _, err := c.append(ctx0, persist.HardState{Term: 1}, es); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// acceptAll takes any batch and checks only that it arrived whole.
type acceptAll struct{ persist.Store }

func (acceptAll) Append(_ context.Context, _ persist.HardState, es []persist.Entry) error {
	for i, e := range es {
		if e.Index != es[0].Index+uint64(i) || len(e.Data) != 3 || e.Data[0] != byte(i) {
			return errors.New("batch garbled")
		}
	}
	return nil
}

// FuzzParseAppend checks that no body panics the parser and that whatever
// it accepts encodes back to the same bytes.
func FuzzParseAppend(f *testing.F) {
	f.Add(appendFrame(nil, persist.HardState{Term: 3, VotedFor: 1}, testEntries(1, 2))[5:])
	f.Add(appendFrame(nil, persist.EmptyHardState, nil)[5:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		hs, es, err := parseAppend(body, nil)
		if err != nil {
			return
		}
		if again := appendFrame(nil, hs, es)[5:]; !bytes.Equal(again, body) {
			t.Fatalf("accepted %x, which encodes back as %x", body, again)
		}
	})
}

// TestPollEnd checks the plugin's end of the channel (raw reads and writes
// of a non-blocking socket, waiting in the netpoller) against a blocking
// one: a megabyte each way (more than the socket buffers, so both wait for
// the other side), EOF when the other side closes, and interrupt ending a
// read that is waiting.
func TestPollEnd(t *testing.T) {
	pair := func() (endpoint, *os.File) {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		syscall.CloseOnExec(fds[0]) // SOCK_CLOEXEC is Linux's; the test runs on every unix
		syscall.CloseOnExec(fds[1])
		p, err := newPollEnd(os.NewFile(uintptr(fds[0]), "poll"))
		if err != nil {
			t.Fatal(err)
		}
		return p, os.NewFile(uintptr(fds[1]), "other")
	}
	p, other := pair()
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for _, dir := range []struct {
		name string
		w    io.Writer
		r    io.Reader
	}{{"poll to blocking", p, other}, {"blocking to poll", other, p}} {
		errc := make(chan error, 1)
		go func() {
			_, err := dir.w.Write(data)
			errc <- err
		}()
		got := make([]byte, len(data))
		if _, err := io.ReadFull(dir.r, got); err != nil {
			t.Fatalf("%s: read: %v", dir.name, err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("%s: write: %v", dir.name, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("%s: data differs", dir.name)
		}
	}
	_ = other.Close()
	if n, err := p.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("read after the other side closed: %d, %v; want EOF", n, err)
	}
	_ = p.Close()

	p, other = pair()
	defer other.Close()
	done := make(chan error, 1)
	go func() {
		_, err := p.Read(make([]byte, 8))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	p.interrupt()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a read interrupted returned no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("interrupt did not end a waiting read")
	}
	_ = p.Close()
}
