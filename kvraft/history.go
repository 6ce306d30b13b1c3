package kvraft

import (
	"slices"
	"strings"
	"sync"
)

// event is one change of one key at one revision.
type event struct {
	key     string
	deleted bool
	// kv is the key's record after the change (for a delete, only mod: the
	// deletion's revision); prev the record before it, nil if absent.
	kv, prev *record
}

// size is what the event counts against the history's byte bound.
func (e event) size() int {
	n := len(e.key) + 64
	if e.kv != nil {
		n += len(e.kv.value)
	}
	if e.prev != nil {
		n += len(e.prev.value)
	}
	return n
}

// history is the retained tail of the event log: events[i] is the event of
// revision compactRev+1+i, and the last one is the store revision's.
type history struct {
	// events is buf[start:]: the events before start were dropped and their
	// slots are free. A full history drops one event per write; had events
	// been resliced past the dropped ones, their slots would be lost to
	// appends and the array reallocated and copied every few hundred writes
	// (BenchmarkStateApply: 250 bytes allocated per write). Instead push
	// moves the events back to the front of buf once at least half of it is
	// free, which costs no allocation and copies one event per write on
	// average.
	events []event
	buf    []event
	start  int
	// bytes is the sum of the events' sizes.
	bytes int
	// compactRev is the newest revision no longer retained.
	compactRev uint64
	// keep is the store revision before the write being applied: the
	// byte bound never drops the events above it (see trimLocked).
	keep uint64
}

// push appends e to the history (no limits checked).
func (h *history) push(e event) {
	if len(h.buf) == cap(h.buf) && h.start > 0 && 2*h.start >= len(h.buf) {
		n := copy(h.buf, h.buf[h.start:])
		clear(h.buf[n:])
		h.buf, h.start = h.buf[:n], 0
	}
	h.buf = append(h.buf, e)
	h.events = h.buf[h.start:]
}

// dropOldest drops the n oldest events.
func (h *history) dropOldest(n int) {
	clear(h.buf[h.start : h.start+n]) // let their values go
	h.start += n
	h.events = h.buf[h.start:]
	h.compactRev += uint64(n)
}

// recordLocked appends the event of revision s.rev, drops the oldest
// events past the limits, and wakes the watchers of its key.
func (s *state) recordLocked(e event) {
	s.push(e)
	s.bytes += e.size()
	s.trimLocked()
	s.hub.notify(e.key, s.rev)
}

// trimLocked drops the oldest events until the history is within its
// limits. The byte bound spares the events of the write being applied
// (revisions above keep), so the history may pass it by one write's events
// until the next write: a watcher that has seen every change before a
// write then sees that write's changes, however large their values, where
// it would otherwise be told its history was compacted (each event counts
// its previous value too, so one overwrite of a value of half the bound
// would drop itself and end every watch that was up to date).
func (s *state) trimLocked() {
	drop := 0
	for len(s.events)-drop > 0 && (len(s.events)-drop > s.limits.historyEvents ||
		s.bytes > s.limits.historyBytes && s.compactRev+uint64(drop) < s.keep) {
		s.bytes -= s.events[drop].size()
		drop++
	}
	if drop > 0 {
		s.dropOldest(drop)
	}
}

// eventsAfter returns the retained events with a revision above rev
// (which must be at least compactRev).
func (s *state) eventsAfter(rev uint64) []event {
	if rev >= s.rev {
		return nil
	}
	return s.events[rev-s.compactRev:]
}

// matches reports whether key is watched by (watchKey, prefix).
func matches(key, watchKey string, prefix bool) bool {
	if prefix {
		return strings.HasPrefix(key, watchKey)
	}
	return key == watchKey
}

// listQuery is a List as the state serves it.
type listQuery struct {
	prefix, after string
	limit         int
	maxBytes      int
	keysOnly      bool
	rev           uint64 // 0: current
}

// list answers q from the local state: the page, whether more keys
// follow, the revision it reflects, and the store revision.
func (s *state) list(q listQuery) (kvs []KeyValue, more bool, atRev, storeRev uint64, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	atRev = q.rev
	if atRev == 0 {
		atRev = s.rev
	}
	switch {
	case atRev > s.rev:
		return nil, false, 0, s.rev, ErrFutureRevision
	case atRev < s.compactRev:
		return nil, false, 0, s.rev, &CompactedError{CompactRevision: s.compactRev}
	}
	start := q.prefix
	if q.after >= start {
		start = q.after + "\x00"
	}
	inRange := func(k string) bool { return k >= start && strings.HasPrefix(k, q.prefix) }
	// At an older revision: the keys changed since, as they were then
	// (nil: absent then), from the first event of each after atRev.
	var then map[string]*record
	var thenKeys []string
	if atRev < s.rev {
		then = make(map[string]*record)
		for _, e := range s.eventsAfter(atRev) {
			if _, seen := then[e.key]; !seen && inRange(e.key) {
				then[e.key] = e.prev
				if e.prev != nil {
					thenKeys = append(thenKeys, e.key)
				}
			}
		}
		slices.Sort(thenKeys)
	}
	bytes := 0
	// emit adds one key; false once the page is full (more is then set,
	// since emit was called with one more key).
	emit := func(k string, r *record) bool {
		if len(kvs) >= q.limit || (len(kvs) > 0 && bytes >= q.maxBytes) {
			more = true
			return false
		}
		kv := KeyValue{Key: k, CreateRevision: r.create, ModRevision: r.mod, Version: r.version, Lease: r.lease}
		bytes += len(k)
		if !q.keysOnly {
			kv.Value = r.valueString()
			bytes += len(r.value)
		}
		kvs = append(kvs, kv)
		return true
	}
	full := false
	s.index.AscendGreaterOrEqual(start, func(k string) bool {
		if !strings.HasPrefix(k, q.prefix) {
			return false
		}
		for len(thenKeys) > 0 && thenKeys[0] < k {
			if !emit(thenKeys[0], then[thenKeys[0]]) {
				full = true
				return false
			}
			thenKeys = thenKeys[1:]
		}
		if _, changed := then[k]; changed {
			return true // listed from thenKeys, or absent then
		}
		if !emit(k, s.data[k]) {
			full = true
			return false
		}
		return true
	})
	for !full && len(thenKeys) > 0 {
		if !emit(thenKeys[0], then[thenKeys[0]]) {
			break
		}
		thenKeys = thenKeys[1:]
	}
	return kvs, more, atRev, s.rev, nil
}

// watchQuery is a Watch as the state serves it.
type watchQuery struct {
	key    string
	prefix bool
	after  uint64
	limit  int
	prevKV bool
}

// watchResult is the state's answer to a watchQuery.
type watchResult struct {
	events     []Event
	next       uint64
	compacted  bool
	compactRev uint64
	rev        uint64
}

// watch scans the history for q. If it finds nothing and w is not nil, it
// registers w with the hub before the state can change, so w is woken by
// the next matching event.
func (s *state) watch(q watchQuery, w *waiter) (watchResult, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	res := watchResult{compactRev: s.compactRev, rev: s.rev, next: max(q.after, s.rev)}
	if q.after < s.compactRev {
		res.compacted, res.next = true, q.after
		return res, false
	}
	for _, e := range s.eventsAfter(q.after) {
		if !matches(e.key, q.key, q.prefix) {
			continue
		}
		if len(res.events) == q.limit {
			// Cut: the next call starts right after the last event here.
			res.next = res.events[len(res.events)-1].KV.ModRevision
			break
		}
		ev := Event{Type: EventPut, KV: *e.kv.keyValue(e.key)}
		if e.deleted {
			ev.Type, ev.KV = EventDelete, KeyValue{Key: e.key, ModRevision: e.kv.mod}
		}
		if q.prevKV {
			ev.PrevKV = e.prev.keyValue(e.key)
		}
		res.events = append(res.events, ev)
	}
	if len(res.events) == 0 && w != nil {
		s.hub.add(w)
		return res, true
	}
	return res, false
}

// unwait forgets w, whose wait ended. If no event woke it, none matched
// from the look that registered it up to the store revision now, so it
// answers as that look would now, without events (and never "compacted",
// whatever the history dropped meanwhile); ok is false if an event woke it.
func (s *state) unwait(w *waiter, q watchQuery) (res watchResult, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.hub.remove(w) {
		return res, false
	}
	return watchResult{compactRev: s.compactRev, rev: s.rev, next: max(q.after, s.rev)}, true
}

// watchHub holds the watchers waiting for an event: Apply wakes those whose
// key or prefix an event matches, Restore wakes all. Watchers are found by
// what they watch, so an event costs one map lookup for its key plus one
// per distinct length of the prefixes watched (the key cut to that length),
// however many watchers wait: never a check of every watcher.
type watchHub struct {
	mu sync.Mutex // guards the maps; taken inside state.mu
	// keys holds the watchers of single keys, by key.
	keys map[string]map[*waiter]struct{}
	// prefixes holds the watchers of prefixes, by prefix.
	prefixes map[string]map[*waiter]struct{}
	// prefixLens counts the prefixes in prefixes by length in bytes.
	prefixLens map[int]int
}

// waiter is one waiting Watch: ch is closed when it should look again.
type waiter struct {
	key    string
	prefix bool
	ch     chan struct{}
	// rev is the revision of the event that woke it, set before ch is
	// closed; 0 if a Restore woke it (the state changed without events).
	rev uint64
}

func newWatchHub() watchHub {
	return watchHub{keys: make(map[string]map[*waiter]struct{}), prefixes: make(map[string]map[*waiter]struct{}),
		prefixLens: make(map[int]int)}
}

func newWaiter(key string, prefix bool) *waiter {
	return &waiter{key: key, prefix: prefix, ch: make(chan struct{})}
}

// lookAfter is the revision after which a watch that looked up to after
// and registered w looks again once w was woken: just before the event
// that woke it (the events in between did not match), or after itself if a
// Restore woke it.
func (w *waiter) lookAfter(after uint64) uint64 {
	if w.rev == 0 {
		return after
	}
	return max(after, w.rev-1)
}

func (h *watchHub) add(w *waiter) {
	h.mu.Lock()
	defer h.mu.Unlock()
	index := h.keys
	if w.prefix {
		index = h.prefixes
	}
	set := index[w.key]
	if set == nil {
		set = make(map[*waiter]struct{})
		index[w.key] = set
		if w.prefix {
			h.prefixLens[len(w.key)]++
		}
	}
	set[w] = struct{}{}
}

// remove forgets w, reporting whether it was still waiting (no event woke
// it: woken waiters leave the hub).
func (h *watchHub) remove(w *waiter) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	index := h.keys
	if w.prefix {
		index = h.prefixes
	}
	set := index[w.key]
	if _, ok := set[w]; !ok {
		return false
	}
	delete(set, w)
	if len(set) == 0 {
		if w.prefix {
			h.dropPrefixLocked(w.key)
		} else {
			delete(h.keys, w.key)
		}
	}
	return true
}

// dropPrefixLocked forgets the watchers of prefix.
func (h *watchHub) dropPrefixLocked(prefix string) {
	delete(h.prefixes, prefix)
	if h.prefixLens[len(prefix)]--; h.prefixLens[len(prefix)] == 0 {
		delete(h.prefixLens, len(prefix))
	}
}

// notify wakes the waiters of key and of every watched prefix of it with
// the event of revision rev.
func (h *watchHub) notify(key string, rev uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.keys[key] {
		w.rev = rev
		close(w.ch)
	}
	delete(h.keys, key)
	if len(h.prefixLens) == 0 {
		return
	}
	var woken []string // prefixLens must not change while it is ranged over
	for n := range h.prefixLens {
		if n > len(key) {
			continue
		}
		if set, ok := h.prefixes[key[:n]]; ok {
			for w := range set {
				w.rev = rev
				close(w.ch)
			}
			woken = append(woken, key[:n])
		}
	}
	for _, p := range woken {
		h.dropPrefixLocked(p)
	}
}

// notifyAll wakes every waiter.
func (h *watchHub) notifyAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.keys {
		for w := range set {
			close(w.ch)
		}
	}
	for _, set := range h.prefixes {
		for w := range set {
			close(w.ch)
		}
	}
	fresh := newWatchHub()
	h.keys, h.prefixes, h.prefixLens = fresh.keys, fresh.prefixes, fresh.prefixLens
}
