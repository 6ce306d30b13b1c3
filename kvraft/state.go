package kvraft

import (
	"container/heap"
	"errors"
	"fmt"
	"time"

	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/google/btree"

	"github.com/ruaft/ruaft/kvraft/rsm"
)

// state is the replicated key-value state machine: the data with its
// revisions, the retained event history, the leases, and the per-client
// table that makes writes exactly-once.
//
// Duplicate detection with several writes in flight per client: for each
// client the table keeps a floor (every sequence number below it is
// finished, from the client's WriteID.Ack) and the results of the writes at
// or above the floor that have been applied. A write is applied only if its
// sequence number is at or above the floor and not in the table; a retry of
// an applied write gets the remembered result. When a write raises the
// floor, the results below it are dropped. So a client with at most W writes
// in flight costs at most about W remembered results (one for a sequential
// client), the table's size does not depend on how long the client has
// lived, and the whole table travels in snapshots.
type state struct {
	mu sync.RWMutex // guards every field but hub: Apply writes, reads from handler goroutines
	// limits bound the history and the leases; set once by newState.
	limits stateLimits
	// data holds each key's current record. Records are never modified
	// once stored: a change stores a new one, so the history can share
	// them. An Append's value shares the previous record's array (it only
	// writes past the previous value's length), so Append stays amortised
	// O(len(appended)).
	data map[string]*record
	// index holds data's keys in order, for listings.
	index   *btree.BTreeG[string]
	clients map[uint64]*clientRecord
	// oldest and newest end the list of clients by last use (the order in
	// which the log touched them, so the same on every replica): eviction
	// takes from the oldest end, expiry walks from it.
	oldest, newest *clientRecord
	// clock is the log's time: the largest leader stamp applied, in Unix
	// milliseconds. Sessions expire by it, never by a replica's own clock.
	clock int64
	// rev is the store revision: the number of changes applied.
	rev uint64
	history
	// leases maps a lease id to its lease.
	leases map[uint64]*lease
	// leaseGen changes whenever a lease is granted or ends, so the leader's
	// lease timer knows when to look at leases again.
	leaseGen uint64
	// level is the apply level in force (see ApplyLevel), raised by
	// opLevel entries; written under mu, and atomic for readers without it
	// (a write's proposal, Server.withQuota).
	level atomic.Uint32
	// size is the state's size as the quota counts it, kept as the state
	// changes: keySize of every key and its value, and refusalSize of
	// every remembered refusal.
	size uint64
	// hub wakes the watchers an applied event concerns; it has its own
	// lock, taken inside mu.
	hub watchHub
}

// record is one key's value and metadata at one revision.
type record struct {
	value                []byte
	create, mod, version uint64
	lease                uint64
}

// lease is one lease: its TTL and the keys attached to it.
type lease struct {
	id    uint64
	ttlMs uint64
	keys  map[string]struct{}
}

// stateLimits bound what the state keeps; every replica should use the
// same, so that they answer the same (the state itself stays equal
// anyway: history only answers watches and listings).
type stateLimits struct {
	// historyEvents and historyBytes bound the retained history.
	historyEvents int
	historyBytes  int
}

// clientRecord is one client's entry in the duplicate table: a session.
type clientRecord struct {
	id uint64
	// floor: every sequence number below it is finished for the client.
	floor uint64
	// done maps the sequence numbers at or above floor that were applied to
	// their result, and, from apply level 1, those refused for good too.
	done map[uint64]doneResult
	// refused maps the sequence numbers in done that were refused for good
	// (state.remembered) to their refusal, which a retry gets again; nil
	// until the session has one. (Apart from done, whose values are on
	// every write's path, so that they stay small.)
	refused map[uint64]error
	// lastUsed is the log clock when the session was opened or last wrote.
	lastUsed int64
	// older and newer link the use order (see state.oldest).
	older, newer *clientRecord
}

// doneResult is what the table remembers of an applied write, for its
// retries.
type doneResult struct {
	existed bool
	// rev is the store revision right after the write.
	rev uint64
	// lease is the id an opLeaseGrant created.
	lease uint64
}

// maxPendingResults bounds the results one session keeps: the writes of a
// client at or above its ack. A client with more writes in flight gets
// ErrTooManyPending (the Clerk opens another session first).
const maxPendingResults = 256

// writeResult is what applying a write returns to the waiting handler.
type writeResult struct {
	doneResult
	// refused is why the write was not applied, nil if it was: ErrStale (it
	// was below the client's floor), ErrNoSession, ErrTooManyPending,
	// ErrTooLarge, ErrLeaseNotFound, ErrTooManyLeases, errLeaseIDTaken, or
	// a *ConditionFailedError.
	refused error
	// remembered is set on the answer to a write that was applied or
	// refused before (a retry, or a copy of it in the log), taken from its
	// session: the write it answers may have carried another quota than
	// this one's (refusedError).
	remembered bool
}

// errLeaseIDTaken refuses a grant whose id exists; the leader draws another.
var errLeaseIDTaken = errors.New("kvraft: lease id taken")

// sessionResult is what applying an opOpenSession returns: false if the id
// was taken (the leader picks another).
type sessionResult struct{ opened bool }

// readResult is what applying an opGet returns.
type readResult struct {
	rec *record
	rev uint64
}

var (
	_ rsm.StateMachine      = (*state)(nil)
	_ rsm.SnapshotValidator = (*state)(nil)
	_ rsm.ResultDiscarder   = (*state)(nil)
)

func newState(limits stateLimits) *state {
	return &state{limits: limits, data: make(map[string]*record), index: btree.NewOrderedG[string](32),
		clients: make(map[uint64]*clientRecord), leases: make(map[uint64]*lease), hub: newWatchHub()}
}

// Apply implements rsm.StateMachine.
func (s *state) Apply(index uint64, cmd []byte) any {
	o, err := decodeOp(cmd)
	if err != nil {
		// Every replica decodes the same bytes the same way, so skipping a
		// bad command keeps them in agreement; not one of a kind it does
		// not know (stopUnknown).
		stopUnknown(index, err)
		return err
	}
	if res, ok := s.applyOther(index, o); ok {
		return res
	}
	return s.applyWrite(o)
}

// ApplyDiscard implements rsm.ResultDiscarder: Apply for a command whose
// result nobody waits for (every command on a follower), sparing the
// allocation of a write's result in an interface.
func (s *state) ApplyDiscard(index uint64, cmd []byte) {
	o, err := decodeOp(cmd)
	if err != nil {
		stopUnknown(index, err)
		return // as Apply: skipped
	}
	if _, ok := s.applyOther(index, o); !ok {
		s.applyWrite(o)
	}
}

// stopUnknown panics if err says the command at index is of a kind this
// version does not know (errUnknownKind): a newer replica wrote it, and
// newer replicas may apply it, so this one can neither skip it nor go on
// past it without its state differing from theirs. It stops, as etcd does
// on an entry it cannot apply, until it is upgraded; the log entry stays,
// and the upgraded replica applies it.
func stopUnknown(index uint64, err error) {
	if errors.Is(err, errUnknownKind) {
		panic(fmt.Sprintf("kvraft: cannot apply the log entry at index %d: %v; it was written by a newer version: "+
			"upgrade this replica (skipping the entry would make its state differ from the other replicas')", index, err))
	}
}

// applyOther applies o, the command at index, unless it is a write (ok
// false).
func (s *state) applyOther(index uint64, o op) (res any, ok bool) {
	switch o.kind {
	case opLevel:
		s.mu.Lock()
		defer s.mu.Unlock()
		s.raiseLevelLocked(index, o.limit)
		return nil, true
	case opGet:
		s.mu.RLock()
		defer s.mu.RUnlock()
		return readResult{rec: s.data[o.key], rev: s.rev}, true
	case opOpenSession:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.openLocked(o), true
	case opTick:
		s.mu.Lock()
		defer s.mu.Unlock()
		s.clock = max(s.clock, o.stamp)
		s.expireLocked(int64(min(o.limit, math.MaxInt64/2)))
		return nil, true
	}
	return nil, false
}

// applyWrite applies the write o within its session.
func (s *state) applyWrite(o op) writeResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keep = s.rev
	if o.id.ClientID == 0 {
		return s.applyWriteLocked(o)
	}
	rec := s.clients[o.id.ClientID]
	if rec == nil {
		if o.kind&opChecked != 0 || o.kind.base() >= opLeaseGrant {
			return writeResult{refused: ErrNoSession}
		}
		// A write from a log older than sessions: its client id opened
		// its own record, as it did then.
		rec = s.addLocked(o.id.ClientID)
	}
	s.touchLocked(rec)
	if o.id.Seq < rec.floor {
		return writeResult{refused: ErrStale}
	}
	// Raising the floor first frees the results the client no longer
	// needs before the cap below is checked; it cannot change the answer
	// for this write, as Ack <= Seq.
	if o.id.Ack > rec.floor {
		rec.floor = o.id.Ack
		for seq := range rec.done {
			if seq < rec.floor {
				delete(rec.done, seq)
			}
		}
		for seq, err := range rec.refused {
			if seq < rec.floor {
				s.size -= refusalSize(err)
				delete(rec.refused, seq)
			}
		}
	}
	if done, ok := rec.done[o.id.Seq]; ok {
		return writeResult{doneResult: done, refused: cloneRefusal(rec.refused[o.id.Seq]), remembered: true}
	}
	if (o.kind&opChecked != 0 || o.kind.base() >= opLeaseGrant) && len(rec.done) >= maxPendingResults {
		return writeResult{refused: ErrTooManyPending}
	}
	res := s.applyWriteLocked(o)
	if res.refused == nil {
		rec.done[o.id.Seq] = res.doneResult
	} else if kept := s.remembered(res.refused); kept != nil {
		if cost := refusalSize(kept); cost > 0 && o.quota > 0 && s.size+cost > o.quota {
			// No room under the quota to remember the answer (the keys
			// and values a failed condition names): the write is refused
			// for the quota instead, which costs nothing to remember.
			// Else a session could hold many times the quota in answers
			// (a txn names up to MaxTxnOps keys) and snapshots would
			// carry them all.
			res = writeResult{doneResult: doneResult{rev: s.rev}, refused: ErrNoSpace}
			kept = ErrNoSpace
		}
		rec.done[o.id.Seq] = res.doneResult
		s.rememberLocked(rec, o.id.Seq, kept)
	}
	return res
}

// rememberLocked keeps refusal as the answer of rec's sequence number seq,
// which done holds too, and counts it in the state's size.
func (s *state) rememberLocked(rec *clientRecord, seq uint64, refusal error) {
	if rec.refused == nil {
		rec.refused = make(map[uint64]error)
	}
	s.size += refusalSize(refusal)
	rec.refused[seq] = refusal
}

// refusalSize is what the state's size counts for a remembered refusal:
// the keys and values its answer names (a failed condition's current key,
// a failed txn's compared keys), each as keySize counts a stored key. Two
// answers that name the same value count it twice, though a replica
// shares its bytes (record.valueString): the count is the same on every
// replica, whichever shares what.
func refusalSize(err error) uint64 {
	switch e := err.(type) {
	case *ConditionFailedError:
		if e.Current != nil {
			return keySizeN(e.Current.Key, len(e.Current.Value))
		}
	case *txnFailedError:
		var n uint64
		for i := range e.current {
			n += keySizeN(e.current[i].Key, len(e.current[i].Value))
		}
		return n
	}
	return 0
}

// openLocked applies an opOpenSession: the new session is the most recently
// used, and the least recently used ones go if there are more than
// o.limit.
func (s *state) openLocked(o op) sessionResult {
	s.clock = max(s.clock, o.stamp)
	if _, taken := s.clients[o.id.ClientID]; taken || o.id.ClientID == 0 {
		return sessionResult{}
	}
	limit := max(o.limit, 1)
	for uint64(len(s.clients)) >= limit && s.oldest != nil {
		s.removeLocked(s.oldest)
	}
	s.addLocked(o.id.ClientID)
	return sessionResult{opened: true}
}

// expireLocked drops the sessions idle for more than idle milliseconds of
// log time.
func (s *state) expireLocked(idle int64) {
	for s.oldest != nil && s.clock-s.oldest.lastUsed > idle {
		s.removeLocked(s.oldest)
	}
}

// addLocked creates a record, most recently used.
func (s *state) addLocked(id uint64) *clientRecord {
	rec := &clientRecord{id: id, done: make(map[uint64]doneResult), lastUsed: s.clock}
	s.clients[id] = rec
	s.linkNewestLocked(rec)
	return rec
}

func (s *state) linkNewestLocked(rec *clientRecord) {
	rec.older, rec.newer = s.newest, nil
	if s.newest != nil {
		s.newest.newer = rec
	} else {
		s.oldest = rec
	}
	s.newest = rec
}

func (s *state) unlinkLocked(rec *clientRecord) {
	if rec.older != nil {
		rec.older.newer = rec.newer
	} else {
		s.oldest = rec.newer
	}
	if rec.newer != nil {
		rec.newer.older = rec.older
	} else {
		s.newest = rec.older
	}
	rec.older, rec.newer = nil, nil
}

// touchLocked marks rec used now.
func (s *state) touchLocked(rec *clientRecord) {
	rec.lastUsed = s.clock
	if s.newest != rec {
		s.unlinkLocked(rec)
		s.linkNewestLocked(rec)
	}
}

func (s *state) removeLocked(rec *clientRecord) {
	s.unlinkLocked(rec)
	delete(s.clients, rec.id)
	for _, err := range rec.refused {
		s.size -= refusalSize(err)
	}
}

// sessions returns the number of open sessions.
func (s *state) sessions() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.clients)
}

// applyWriteLocked applies a write (a key write or a lease operation)
// and returns its result.
func (s *state) applyWriteLocked(o op) writeResult {
	switch o.kind.base() {
	case opLeaseGrant:
		return s.grantLocked(o)
	case opLeaseRevoke, opLeaseExpire:
		existed := s.endLeaseLocked(o.lease)
		return writeResult{doneResult: doneResult{existed: existed, rev: s.rev}}
	case opTxn:
		return s.applyTxnLocked(o.txn, o.quota)
	}
	cur := s.data[o.key]
	if o.kind&opRevisioned == 0 {
		return s.applyLegacyLocked(o, cur)
	}
	if !o.cond.holds(cur) {
		return writeResult{refused: &ConditionFailedError{Revision: s.rev, Current: cur.keyValue(o.key)}}
	}
	switch o.kind.base() {
	case opPut:
		if o.lease != 0 && s.leases[o.lease] == nil {
			return writeResult{refused: ErrLeaseNotFound}
		}
		if s.overQuotaLocked(o.quota, o.key, cur, len(o.value)) {
			return writeResult{doneResult: doneResult{existed: cur != nil, rev: s.rev}, refused: ErrNoSpace}
		}
		s.setLocked(o.key, cur, []byte(o.value), o.lease)
	case opAppend:
		var old []byte
		var lease uint64
		if cur != nil {
			old, lease = cur.value, cur.lease
		}
		if o.limit > 0 && uint64(len(old))+uint64(len(o.value)) > o.limit {
			return writeResult{doneResult: doneResult{existed: cur != nil, rev: s.rev}, refused: ErrTooLarge}
		}
		if s.overQuotaLocked(o.quota, o.key, cur, len(old)+len(o.value)) {
			return writeResult{doneResult: doneResult{existed: cur != nil, rev: s.rev}, refused: ErrNoSpace}
		}
		// The full slice expression is not used on purpose: appending into
		// the spare capacity never touches the bytes of old (see data).
		s.setLocked(o.key, cur, append(old, o.value...), lease)
	case opDelete:
		if cur != nil {
			s.deleteLocked(o.key, cur)
		}
	}
	return writeResult{doneResult: doneResult{existed: cur != nil, rev: s.rev}}
}

// applyTxnLocked applies a txn: every write, in order, each at its own
// revision, if every condition holds and every lease a put names exists;
// otherwise nothing. A failed condition is refused with a *txnFailedError
// (remembered for the session from apply level 1, as a failed conditional
// Put). A txn that would grow the state past quota (0: none) is refused
// whole with ErrNoSpace.
func (s *state) applyTxnLocked(t *txn, quota uint64) writeResult {
	if t == nil {
		return writeResult{refused: ErrInvalid}
	}
	var failed []int
	for i, c := range t.conds {
		if !c.cond.holds(s.data[c.key]) {
			failed = append(failed, i)
		}
	}
	if failed != nil {
		f := &txnFailedError{rev: s.rev, failed: failed}
		seen := make(map[string]bool, len(t.conds))
		for _, c := range t.conds {
			if cur := s.data[c.key]; cur != nil && !seen[c.key] {
				seen[c.key] = true
				f.current = append(f.current, *cur.keyValue(c.key))
			}
		}
		return writeResult{refused: f}
	}
	for _, w := range t.writes {
		if !w.del && w.lease != 0 && s.leases[w.lease] == nil {
			return writeResult{refused: ErrLeaseNotFound}
		}
	}
	if quota > 0 {
		if after := s.txnSizeLocked(t); after > s.size && after > quota {
			return writeResult{doneResult: doneResult{rev: s.rev}, refused: ErrNoSpace}
		}
	}
	for _, w := range t.writes {
		cur := s.data[w.key]
		switch {
		case w.del && cur != nil:
			s.deleteLocked(w.key, cur)
		case !w.del:
			s.setLocked(w.key, cur, []byte(w.value), w.lease)
		}
	}
	return writeResult{doneResult: doneResult{rev: s.rev}}
}

// stateKeyOverhead is what the quota counts for a key beyond the bytes of
// its name and value: about what a key costs a replica's memory besides
// them (its record, map entry and index slot), so that many small keys
// count too. Changing it would change which writes apply: it takes a new
// apply level.
const stateKeyOverhead = 64

// keySize is what the quota counts for key with value.
func keySize(key string, value []byte) uint64 { return keySizeN(key, len(value)) }

func keySizeN(key string, n int) uint64 { return uint64(len(key)) + uint64(n) + stateKeyOverhead }

// overQuotaLocked reports whether storing a value of n bytes as key, whose
// record is cur (nil if absent), would grow the state and leave it larger
// than quota (0: no quota). A write that does not grow the state (a
// Delete, a Put of a shorter value) always fits, so that a full store can
// be made smaller.
func (s *state) overQuotaLocked(quota uint64, key string, cur *record, n int) bool {
	if quota == 0 {
		return false
	}
	var old uint64
	if cur != nil {
		old = keySize(key, cur.value)
	}
	next := keySizeN(key, n)
	return next > old && s.size-old+next > quota
}

// txnSizeLocked returns the state's size once t's writes are applied, in
// order (a key written twice counts as its last write leaves it).
func (s *state) txnSizeLocked(t *txn) uint64 {
	size := s.size
	after := make(map[string]uint64, len(t.writes)) // a written key's size so far; 0 once deleted
	for _, w := range t.writes {
		old, seen := after[w.key]
		if cur := s.data[w.key]; !seen && cur != nil {
			old = keySize(w.key, cur.value)
		}
		var next uint64
		if !w.del {
			next = keySizeN(w.key, len(w.value))
		}
		after[w.key] = next
		size = size - old + next
	}
	return size
}

// txnFailedError refuses a txn whose conditions did not all hold.
type txnFailedError struct {
	rev     uint64
	failed  []int
	current []KeyValue
}

func (e *txnFailedError) Error() string {
	return fmt.Sprintf("kvraft: txn conditions %v failed at revision %d", e.failed, e.rev)
}

// applyLegacyLocked applies a write from a log older than revisions: no
// revision, no event, the metadata a version-2 snapshot decodes to. (Such
// logs have no leases either.)
func (s *state) applyLegacyLocked(o op, cur *record) writeResult {
	res := writeResult{doneResult: doneResult{existed: cur != nil, rev: s.rev}}
	var old []byte
	if cur != nil {
		old = cur.value
	}
	switch o.kind.base() {
	case opPut:
		s.storeLocked(o.key, &record{value: []byte(o.value), version: 1})
	case opAppend:
		if o.limit > 0 && uint64(len(old))+uint64(len(o.value)) > o.limit {
			res.refused = ErrTooLarge
			return res
		}
		s.storeLocked(o.key, &record{value: append(old, o.value...), version: 1})
	case opDelete:
		if cur != nil {
			s.removeKeyLocked(o.key, cur)
		}
	}
	if cur != nil && cur.lease != 0 {
		s.detachLocked(o.key, cur.lease)
	}
	return res
}

// holds reports whether c holds for the key's current record (nil if
// absent).
func (c condition) holds(cur *record) bool {
	switch c.kind {
	case condAbsent:
		return cur == nil
	case condModRevision:
		return cur != nil && cur.mod == c.modRev
	case condVersion:
		var v uint64
		if cur != nil {
			v = cur.version
		}
		return v == c.version
	case condValue:
		return cur != nil && string(cur.value) == c.value
	}
	return true
}

// keyValue returns r as a KeyValue of key; nil for a nil record.
func (r *record) keyValue(key string) *KeyValue {
	if r == nil {
		return nil
	}
	return &KeyValue{Key: key, Value: r.valueString(), CreateRevision: r.create, ModRevision: r.mod,
		Version: r.version, Lease: r.lease}
}

// valueString returns r's value as a string that shares its bytes: they
// never change once stored (an Append writes only past the length of the
// value it extends, see state.data). So a Get, an event or a remembered
// refusal that names the key costs no copy of its value: 256 refused
// writes of a session against a 1 MB key hold that 1 MB once, not 256
// times.
func (r *record) valueString() string {
	if len(r.value) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(r.value), len(r.value))
}

// setLocked stores a new record for key at the next revision and records
// the event.
func (s *state) setLocked(key string, cur *record, value []byte, leaseID uint64) {
	s.rev++
	next := &record{value: value, mod: s.rev, lease: leaseID}
	if cur == nil {
		next.create, next.version = s.rev, 1
	} else {
		next.create, next.version = cur.create, cur.version+1
		if cur.lease != leaseID {
			s.detachLocked(key, cur.lease)
		}
	}
	if cur == nil || cur.lease != leaseID {
		s.attachLocked(key, leaseID)
	}
	s.storeLocked(key, next)
	s.recordLocked(event{key: key, kv: next, prev: cur})
}

// deleteLocked deletes key (present, with record cur) at the next
// revision and records the event.
func (s *state) deleteLocked(key string, cur *record) {
	s.rev++
	s.removeKeyLocked(key, cur)
	s.detachLocked(key, cur.lease)
	s.recordLocked(event{key: key, deleted: true, kv: &record{mod: s.rev}, prev: cur})
}

func (s *state) storeLocked(key string, r *record) {
	if old, ok := s.data[key]; ok {
		s.size -= keySize(key, old.value)
	} else {
		s.index.ReplaceOrInsert(key)
	}
	s.size += keySize(key, r.value)
	s.data[key] = r
}

// removeKeyLocked removes key, present with record cur, from the data.
func (s *state) removeKeyLocked(key string, cur *record) {
	delete(s.data, key)
	s.index.Delete(key)
	s.size -= keySize(key, cur.value)
}

func (s *state) attachLocked(key string, leaseID uint64) {
	if l := s.leases[leaseID]; l != nil {
		l.keys[key] = struct{}{}
	}
}

func (s *state) detachLocked(key string, leaseID uint64) {
	if l := s.leases[leaseID]; l != nil {
		delete(l.keys, key)
	}
}

// grantLocked applies an opLeaseGrant.
func (s *state) grantLocked(o op) writeResult {
	if _, taken := s.leases[o.lease]; taken || o.lease == 0 {
		return writeResult{refused: errLeaseIDTaken}
	}
	if uint64(len(s.leases)) >= max(o.limit, 1) {
		return writeResult{refused: ErrTooManyLeases}
	}
	s.leases[o.lease] = &lease{id: o.lease, ttlMs: o.ttl, keys: make(map[string]struct{})}
	s.leaseGen++
	return writeResult{doneResult: doneResult{lease: o.lease, rev: s.rev}}
}

// endLeaseLocked ends a lease: its keys are deleted in increasing order,
// one revision each. It reports whether the lease existed.
func (s *state) endLeaseLocked(id uint64) bool {
	l := s.leases[id]
	if l == nil {
		return false
	}
	for _, key := range slices.Sorted(maps.Keys(l.keys)) {
		if cur := s.data[key]; cur != nil {
			s.deleteLocked(key, cur)
		}
	}
	delete(s.leases, id)
	s.leaseGen++
	return true
}

// sizeBytes returns the state's size as the quota counts it (see
// keySize).
func (s *state) sizeBytes() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.size
}

// get reads a key from the local state, with the store revision.
func (s *state) get(key string) (*record, uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.data[key], s.rev
}

// revision returns the store revision.
func (s *state) revision() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev
}

// leaseInfo returns a lease's TTL and, if keys, its keys in order.
func (s *state) leaseInfo(id uint64, limit int) (ttl time.Duration, ks []string, more, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l := s.leases[id]
	if l == nil {
		return 0, nil, false, false
	}
	if limit > 0 {
		ks, more = smallestKeys(l.keys, limit)
	}
	return time.Duration(l.ttlMs) * time.Millisecond, ks, more, true
}

// smallestKeys returns the n smallest keys of set in increasing order,
// and whether set has more: O(len(set) log n) time and O(n) memory, so a
// lease with millions of keys costs a lookup no more memory than a List
// page.
func smallestKeys(set map[string]struct{}, n int) ([]string, bool) {
	if len(set) <= n {
		return slices.Sorted(maps.Keys(set)), false
	}
	h := make(maxHeap, 0, n)
	for k := range set {
		switch {
		case len(h) < n:
			heap.Push(&h, k)
		case k < h[0]:
			h[0] = k
			heap.Fix(&h, 0)
		}
	}
	slices.Sort(h)
	return h, true
}

// maxHeap is a container/heap of strings with the largest on top.
type maxHeap []string

func (h maxHeap) Len() int           { return len(h) }
func (h maxHeap) Less(i, j int) bool { return h[i] > h[j] }
func (h maxHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *maxHeap) Push(x any)        { *h = append(*h, x.(string)) }
func (h *maxHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// leaseTTLs returns every lease's TTL if the leases changed since gen,
// and the current generation.
func (s *state) leaseTTLs(gen uint64) (map[uint64]time.Duration, uint64, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if gen == s.leaseGen {
		return nil, gen, false
	}
	out := make(map[uint64]time.Duration, len(s.leases))
	for id, l := range s.leases {
		out[id] = time.Duration(l.ttlMs) * time.Millisecond
	}
	return out, s.leaseGen, true
}

// counts returns the store revision, compact revision and number of leases.
func (s *state) counts() (rev, compact uint64, leases int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev, s.compactRev, len(s.leases)
}

// lookup returns the remembered outcome of a client's write, if the table
// still knows it: applied (with its result) or below the floor (stale).
func (s *state) lookup(id WriteID) (writeResult, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec := s.clients[id.ClientID]
	if rec == nil {
		return writeResult{}, false
	}
	if id.Seq < rec.floor {
		return writeResult{refused: ErrStale}, true
	}
	done, ok := rec.done[id.Seq]
	return writeResult{doneResult: done, refused: cloneRefusal(rec.refused[id.Seq]), remembered: true}, ok
}
