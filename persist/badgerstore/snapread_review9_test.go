package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

// TestSnapshotReadsRaceGCAndClose: snapshot reads that run without the
// store's lock, over and over, while SaveSnapshots pass the value-log
// collection mark (closing and reopening badger unless a read holds it)
// and then while the store closes: every read returns one stored snapshot
// whole, or fails cleanly once the store is closed; none sees a closed
// database or a mix of two snapshots.
func TestSnapshotReadsRaceGCAndClose(t *testing.T) {
	ctx := context.Background()
	o := DefaultOptions()
	o.ValueLogFileBytes = 1 << 20
	st, b, err := open(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	const saves, size = 24, 1 << 20
	if err := st.Append(ctx, persist.HardState{Term: 1, VotedFor: 0}, batch(1, saves, 10)); err != nil {
		t.Fatal(err)
	}
	snapAt := func(i uint64) persist.Snapshot {
		return persist.Snapshot{Index: i, Term: 1, Data: bytes.Repeat([]byte{byte(i)}, size+int(i))}
	}
	if err := st.SaveSnapshot(ctx, snapAt(1)); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := st.LoadSnapshot(ctx)
				if errors.Is(err, persist.ErrClosed) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
				if w := snapAt(got.Index); !bytes.Equal(got.Data, w.Data) {
					errs <- fmt.Errorf("read snapshot %d: %d bytes, not the ones stored", got.Index, len(got.Data))
					return
				}
			}
		}()
	}
	for i := uint64(2); i <= saves; i++ {
		if err := st.SaveSnapshot(ctx, snapAt(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	t.Logf("%d reopens for value-log GC over %d snapshots of %d bytes", b.gcReopens, saves, size)
}
