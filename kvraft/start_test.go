package kvraft

import (
	"context"
	"errors"
	"testing"
)

// StartPut, StartAppend and StartDelete propose before they return and
// answer as Put, Append and Delete do when waited for: several writes
// started together all apply, retries are answered from the table, and a
// write refused before it is proposed is refused when waited for.
func TestServerStartWrites(t *testing.T) {
	cfg := DefaultConfig(0)
	cfg.MaxValueBytes = 1 << 10
	s, fr, err := newFakeServerConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Kill()
	ctx := context.Background()
	openSessionID(t, s, 1)
	id := func(seq uint64) WriteID { return WriteID{ClientID: 1, Seq: seq} }

	before := fr.entries()
	put := s.StartPut(ctx, &PutRequest{Key: "a", Value: "1", Write: id(1)})
	app := s.StartAppend(ctx, &AppendRequest{Key: "a", Value: "2", Write: id(2)})
	del := s.StartDelete(ctx, &DeleteRequest{Key: "b", Write: id(3)})
	if got := fr.entries() - before; got != 3 {
		t.Fatalf("%d entries proposed before any write was waited for, want 3", got)
	}
	if _, err := put(); err != nil {
		t.Fatalf("put: %v", err)
	}
	if _, err := app(); err != nil {
		t.Fatalf("append: %v", err)
	}
	if d, err := del(); err != nil || d.Existed {
		t.Fatalf("delete of a missing key = %+v, %v; want Existed false", d, err)
	}
	if r, err := s.Get(ctx, &GetRequest{Key: "a"}); err != nil || r.Value != "12" {
		t.Fatalf("Get = %+v, %v; want 12", r, err)
	}

	// A retry of an applied write is answered from the table, unproposed.
	before = fr.entries()
	retry := s.StartDelete(ctx, &DeleteRequest{Key: "b", Write: id(3)})
	if fr.entries() != before {
		t.Fatal("a retry of an applied write was proposed again")
	}
	if d, err := retry(); err != nil || d.Existed {
		t.Fatalf("retry = %+v, %v; want the first answer", d, err)
	}

	// Refused before proposing: nothing enters the log.
	before = fr.entries()
	big := make([]byte, s.cfg.MaxValueBytes+1)
	for _, c := range []struct {
		name string
		wait func() error
		want error
	}{
		{"too large", func() error {
			_, err := s.StartPut(ctx, &PutRequest{Key: "k", Value: string(big), Write: id(4)})()
			return err
		}, ErrTooLarge},
		{"empty key", func() error { _, err := s.StartDelete(ctx, &DeleteRequest{Write: id(4)})(); return err }, ErrInvalid},
		{"seq without client", func() error {
			_, err := s.StartAppend(ctx, &AppendRequest{Key: "k", Write: WriteID{Seq: 1}})()
			return err
		}, ErrInvalid},
		{"bad condition", func() error {
			_, err := s.StartPut(ctx, &PutRequest{Key: "k", Write: id(4), Condition: Condition{Kind: -1}})()
			return err
		}, ErrInvalid},
	} {
		if err := c.wait(); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if fr.entries() != before {
		t.Fatalf("refused writes proposed %d entries", fr.entries()-before)
	}
}
