package kvraft

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
)

// Snapshot versions (the first byte). Version 1 had no session clock or
// use order; version 2 had no revisions, leases or history; version 3 has
// no apply level or remembered refusals. Restore reads them all. A state
// at apply level 0 is written as version 3, which replicas from before
// levels read; from level 1, as version 4.
const (
	snapshotVersion1 = 1
	snapshotVersion2 = 2
	snapshotVersion3 = 3
	snapshotVersion  = 4
)

// Snapshot implements rsm.StateMachine. Layout (version 3): version byte;
// varint log clock; uvarint store revision and compact revision; uvarint
// count of keys, then per key in increasing order its string, value
// string and uvarint create, mod, version and lease; uvarint count of
// clients, then per client, least recently used first, uvarint id, floor,
// varint lastUsed, count of results, and per result (in increasing order)
// uvarint seq, one byte existed, uvarint rev and lease; uvarint count of
// leases, then per lease in increasing id order uvarint id and TTL; uvarint
// count of history events (revisions compact+1, compact+2, ...), then per
// event its key string, a byte (1: delete), for a put the record after
// (value string, uvarint create, version, lease; mod is the event's
// revision), and a byte (1: the key existed before) followed by the
// previous record (value string, uvarint create, mod, version, lease).
// Version 4 adds to each result its remembered refusal (appendRefusal)
// and ends with the uvarint apply level. Equal states encode to equal
// bytes on every replica.
func (s *state) Snapshot() []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	size := 1 + 40 + s.bytes
	for k, r := range s.data {
		size += len(k) + len(r.value) + 12
	}
	b := make([]byte, 0, size+len(s.clients)*32+len(s.leases)*12)
	v4 := s.level.Load() > 0
	if v4 {
		b = append(b, snapshotVersion)
	} else {
		b = append(b, snapshotVersion3)
	}
	b = binary.AppendVarint(b, s.clock)
	b = binary.AppendUvarint(b, s.rev)
	b = binary.AppendUvarint(b, s.compactRev)
	b = binary.AppendUvarint(b, uint64(len(s.data)))
	s.index.Ascend(func(k string) bool {
		r := s.data[k]
		b = appendString(b, k)
		b = appendRecord(b, r, true)
		return true
	})
	b = binary.AppendUvarint(b, uint64(len(s.clients)))
	for rec := s.oldest; rec != nil; rec = rec.newer {
		b = binary.AppendUvarint(b, rec.id)
		b = binary.AppendUvarint(b, rec.floor)
		b = binary.AppendVarint(b, rec.lastUsed)
		b = binary.AppendUvarint(b, uint64(len(rec.done)))
		for _, seq := range slices.Sorted(maps.Keys(rec.done)) {
			d := rec.done[seq]
			b = binary.AppendUvarint(b, seq)
			b = append(b, boolByte(d.existed))
			b = binary.AppendUvarint(b, d.rev)
			b = binary.AppendUvarint(b, d.lease)
			if v4 {
				b = appendRefusal(b, rec.refused[seq])
			}
		}
	}
	b = binary.AppendUvarint(b, uint64(len(s.leases)))
	for _, id := range slices.Sorted(maps.Keys(s.leases)) {
		b = binary.AppendUvarint(b, id)
		b = binary.AppendUvarint(b, s.leases[id].ttlMs)
	}
	b = binary.AppendUvarint(b, uint64(len(s.events)))
	for _, e := range s.events {
		b = appendString(b, e.key)
		b = append(b, boolByte(e.deleted))
		if !e.deleted {
			b = appendString(b, e.kv.valueString())
			b = binary.AppendUvarint(b, e.kv.create)
			b = binary.AppendUvarint(b, e.kv.version)
			b = binary.AppendUvarint(b, e.kv.lease)
		}
		b = append(b, boolByte(e.prev != nil))
		if e.prev != nil {
			b = appendRecord(b, e.prev, true)
		}
	}
	if v4 {
		b = binary.AppendUvarint(b, uint64(s.level.Load()))
	}
	return b
}

// appendRecord appends a record's value string and uvarint create, mod (if
// withMod), version and lease.
func appendRecord(b []byte, r *record, withMod bool) []byte {
	b = binary.AppendUvarint(b, uint64(len(r.value)))
	b = append(b, r.value...)
	b = binary.AppendUvarint(b, r.create)
	if withMod {
		b = binary.AppendUvarint(b, r.mod)
	}
	b = binary.AppendUvarint(b, r.version)
	return binary.AppendUvarint(b, r.lease)
}

func (d *decoder) record() *record {
	return &record{value: []byte(d.string()), create: d.uvarint(), mod: d.uvarint(), version: d.uvarint(), lease: d.uvarint()}
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// Restore implements rsm.StateMachine. It keeps the state's limits (and
// trims a larger restored history to them; the byte bound spares the
// newest event, as it spares a write's events in Apply) and wakes every
// watcher, which looks again at the restored history.
func (s *state) Restore(b []byte) error {
	restored, err := decodeSnapshot(b, s.limits)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data, s.index, s.clients, s.oldest, s.newest, s.clock = restored.data, restored.index, restored.clients, restored.oldest, restored.newest, restored.clock
	s.rev, s.history, s.leases, s.size = restored.rev, restored.history, restored.leases, restored.size
	s.level.Store(restored.level.Load())
	s.leaseGen++
	s.keep = s.rev - min(s.rev, 1)
	s.trimLocked()
	s.hub.notifyAll()
	return nil
}

// ValidateSnapshot implements rsm.SnapshotValidator: it decodes b as
// Restore would, and keeps nothing.
func (s *state) ValidateSnapshot(b []byte) error {
	_, err := decodeSnapshot(b, s.limits)
	return err
}

// decodeSnapshot decodes what Snapshot encodes (any version) into a new
// state; an empty snapshot is the initial state. The keys of a version 1
// or 2 snapshot get create and mod revision 0 and version 1, as the legacy
// writes of an old log do.
func decodeSnapshot(b []byte, limits stateLimits) (*state, error) {
	st := newState(limits)
	if len(b) == 0 {
		return st, nil
	}
	d := decoder{b: b}
	version := d.byte()
	if d.err == nil && (version < snapshotVersion1 || version > snapshotVersion) {
		return nil, fmt.Errorf("%w: snapshot version %d", errCorrupt, version)
	}
	if version >= snapshotVersion2 {
		st.clock = d.varint()
	}
	if version >= snapshotVersion3 {
		st.rev = d.uvarint()
		st.compactRev = d.uvarint()
	}
	prev := ""
	for n := d.uvarint(); n > 0 && d.err == nil; n-- {
		k := d.string()
		r := &record{version: 1}
		if version >= snapshotVersion3 {
			r = d.record()
		} else {
			r.value = []byte(d.string())
		}
		if d.err == nil && st.index.Len() > 0 && k <= prev {
			d.err = fmt.Errorf("%w: snapshot keys out of order at %q", errCorrupt, k)
		}
		prev = k
		st.storeLocked(k, r)
	}
	var v1 []*clientRecord
	for n := d.uvarint(); n > 0 && d.err == nil; n-- {
		rec := &clientRecord{id: d.uvarint(), floor: d.uvarint(), done: make(map[uint64]doneResult)}
		if version >= snapshotVersion2 {
			rec.lastUsed = d.varint()
		}
		for m := d.uvarint(); m > 0 && d.err == nil; m-- {
			seq := d.uvarint()
			res := doneResult{existed: d.byte() != 0}
			if version >= snapshotVersion3 {
				res.rev, res.lease = d.uvarint(), d.uvarint()
			}
			if version >= snapshotVersion {
				if err := d.refusal(); err != nil {
					st.rememberLocked(rec, seq, err)
				}
			}
			rec.done[seq] = res
		}
		if _, dup := st.clients[rec.id]; dup && d.err == nil {
			d.err = fmt.Errorf("%w: client %d twice in the snapshot", errCorrupt, rec.id)
		}
		st.clients[rec.id] = rec
		if version >= snapshotVersion2 {
			st.linkNewestLocked(rec)
		} else {
			v1 = append(v1, rec)
		}
	}
	// Version 1 had no use order: take the ids', the same on every replica.
	slices.SortFunc(v1, func(a, b *clientRecord) int { return cmp.Compare(a.id, b.id) })
	for _, rec := range v1 {
		st.linkNewestLocked(rec)
	}
	if version >= snapshotVersion3 {
		decodeLeasesAndHistory(&d, st)
	}
	if version >= snapshotVersion {
		level := d.uvarint()
		switch {
		case d.err != nil:
		case level == 0:
			d.err = fmt.Errorf("%w: a version %d snapshot at apply level 0", errCorrupt, version)
		case level > uint64(ApplyLevel):
			d.err = fmt.Errorf("kvraft: the snapshot is at apply level %d; this version supports up to %d: upgrade this replica",
				level, ApplyLevel)
		}
		st.level.Store(uint32(level))
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing snapshot bytes", errCorrupt, len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	st.ownRefusalValues()
	return st, nil
}

// decodeLeasesAndHistory decodes the leases and history of a version 3 or 4
// snapshot into st, whose keys are decoded already.
func decodeLeasesAndHistory(d *decoder, st *state) {
	for n := d.uvarint(); n > 0 && d.err == nil; n-- {
		l := &lease{id: d.uvarint(), ttlMs: d.uvarint(), keys: make(map[string]struct{})}
		st.leases[l.id] = l
	}
	for k, r := range st.data {
		if r.lease == 0 {
			continue
		}
		l := st.leases[r.lease]
		if l == nil {
			if d.err == nil {
				d.err = fmt.Errorf("%w: key %q has lease %d, which the snapshot lacks", errCorrupt, k, r.lease)
			}
			return
		}
		l.keys[k] = struct{}{}
	}
	n := d.uvarint()
	if d.err == nil && (n > st.rev || st.rev-n != st.compactRev) {
		d.err = fmt.Errorf("%w: %d history events for revisions (%d, %d]", errCorrupt, n, st.compactRev, st.rev)
		return
	}
	rev := st.compactRev
	for ; n > 0 && d.err == nil; n-- {
		rev++
		e := event{key: d.string(), deleted: d.byte() != 0}
		if e.deleted {
			e.kv = &record{mod: rev}
		} else {
			e.kv = &record{value: []byte(d.string()), create: d.uvarint(), mod: rev, version: d.uvarint(), lease: d.uvarint()}
		}
		if d.byte() != 0 {
			e.prev = d.record()
		}
		st.push(e)
		st.bytes += e.size()
	}
}
