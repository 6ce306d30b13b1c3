package persist_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/ruaft/ruaft/persist"
)

func TestRegistryBuiltinsInPersist(t *testing.T) {
	// This test binary imports persist only: its two stores are there, the
	// durable ones are not (they register from their own packages).
	if got := persist.Drivers(); !slices.Equal(got, []string{"memory", "noop"}) {
		t.Fatalf("Drivers() = %v, want [memory noop]", got)
	}
	for _, name := range []string{"noop", "memory"} {
		d, ok := persist.LookupDriver(name)
		if !ok || d.NeedsDataDir {
			t.Fatalf("LookupDriver(%q) = %+v, %v", name, d, ok)
		}
		p := persist.OpenParams{Options: map[string]string{"segment_bytes": "1"}}
		if err := d.Check(p); !errors.Is(err, persist.ErrInvalidParams) || !strings.Contains(err.Error(), "segment_bytes") {
			t.Errorf("%s: Check with an option = %v, want ErrInvalidParams naming it", name, err)
		}
		if st, err := d.Open(p); st != nil || !errors.Is(err, persist.ErrInvalidParams) {
			t.Errorf("%s: Open with an option = %v, %v, want nil, ErrInvalidParams", name, st, err)
		}
		st, err := d.Open(persist.OpenParams{})
		if err != nil || st == nil {
			t.Fatalf("%s: Open = %v, %v", name, st, err)
		}
		_ = st.Close()
	}
	if _, ok := persist.LookupDriver("file"); ok {
		t.Fatal(`"file" is registered without importing persist/filestore`)
	}
}

func TestRegisterRefusesDuplicatesAndHoles(t *testing.T) {
	for name, d := range map[string]persist.Driver{
		"duplicate": {Name: "noop", Check: func(persist.OpenParams) error { return nil },
			Open: func(persist.OpenParams) (persist.Store, error) { return persist.NewNoop(), nil }},
		"no Open": {Name: "x-no-open", Check: func(persist.OpenParams) error { return nil }},
		"no name": {},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%s) did not panic", name)
				}
			}()
			persist.Register(d)
		}()
	}
}

// opts is a store's Options for TestDriverFor.
type opts struct {
	Size int
	Sync bool
}

func (o *opts) SetParams(p persist.OpenParams) { o.Sync = p.Sync }

func (o *opts) Set(name, value string) error {
	if name != "size" {
		return errors.New("unknown option")
	}
	o.Size = len(value)
	return nil
}

func (o opts) Validate() error {
	if o.Size > 3 {
		return errors.New("size above 3")
	}
	return nil
}

func TestDriverFor(t *testing.T) {
	failOpen := errors.New("cannot open")
	var opened opts
	d := persist.DriverFor("t", func() opts { return opts{} },
		func(dir string, o opts) (*persist.Memory, error) {
			opened = o
			if dir == "bad" {
				return nil, failOpen
			}
			return persist.NewMemory(), nil
		})
	if !d.NeedsDataDir {
		t.Error("a DriverFor store does not need a folder")
	}
	for _, c := range []struct {
		options map[string]string
		field   string
	}{{map[string]string{"colour": "red"}, "Options[colour]"}, {map[string]string{"size": "four"}, "Options:"}} {
		err := d.Check(persist.OpenParams{Options: c.options})
		if !errors.Is(err, persist.ErrInvalidParams) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("Check(%v) = %v, want ErrInvalidParams naming %s", c.options, err, c.field)
		}
	}
	st, err := d.Open(persist.OpenParams{DataDir: "bad", Sync: true, Options: map[string]string{"size": "ab"}})
	if st != nil || !errors.Is(err, failOpen) {
		t.Fatalf("Open of a failing store = %#v, %v; want a nil Store (not a nil *Memory in it) and its error", st, err)
	}
	if opened != (opts{Size: 2, Sync: true}) {
		t.Fatalf("the store was opened with %+v, want the defaults, Sync and the option applied", opened)
	}
}
