package kvraft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ruaft/ruaft/kvraft/kvclient"
	"github.com/ruaft/ruaft/kvraft/rsm"
	"github.com/ruaft/ruaft/raft"
)

// ApplyLevel is the highest apply level this version supports: the set of
// log commands and apply rules the replicas of a cluster agree to use.
// Give it to the raft node as raft.Config.AppVersion, which every replica
// sends its leader; the leader raises the cluster's level (a log entry,
// applied by every replica at the same index) once every member of the
// configuration reports that it supports it. Until then the replicas apply
// as the oldest among them would, so a rolling upgrade never makes their
// states differ. A level, once raised, stays: a replica whose version does
// not support the cluster's level stops at the entry that raised it (or
// refuses a snapshot taken at it), asking to be upgraded.
//
// Levels:
//
//   - 0: the rules of every version before levels existed.
//   - 1: a write refused for good by the state (a failed condition of a
//     Put, Delete or Txn, an Append over the value cap, a missing lease, too
//     many leases) is remembered in its session with its answer, as an
//     applied write is: a retry, or a delayed copy of the request, gets
//     the same answer and can never apply later, when the condition has
//     come true. At level 0 such a write is not remembered, so a copy
//     delayed in the network past its answer could still apply.
//   - 2: a leader with a quota on the state's size (Config.MaxStateBytes)
//     records it in each Put, Append and Txn it proposes, and a write
//     that would grow the state past it is refused (ErrNoSpace), and
//     remembered as the refusals of level 1. Below level 2 no write
//     carries a quota: older replicas could not decode it.
const ApplyLevel = kvclient.ApplyLevel

// levelFor returns the highest level up to want that every member of st's
// configuration reports supporting, from a leader's status (0 elsewhere,
// or while a member has not answered the leader in its term).
func levelFor(st raft.Status, want uint32) uint32 {
	if st.Role != raft.Leader || len(st.Membership.Members) == 0 {
		return 0
	}
	level := want
	for _, m := range st.Membership.Members {
		p, ok := st.Progress[m.ID]
		if !ok {
			return 0
		}
		level = min(level, p.AppVersion)
	}
	return level
}

// raiseLevel runs on every replica until its state reaches ApplyLevel: on
// the leader, it proposes the highest level every member supports, and
// again every LeaseTick if that proposal was lost (its future ended
// without the state reaching the level), until the state applies it. One
// proposal at a time: a leader whose entries do not commit, or whose state
// lags behind its log, would otherwise append one entry per tick.
func (s *Server) raiseLevel() {
	t := time.NewTicker(s.cfg.LeaseTick)
	defer t.Stop()
	var pending *rsm.Future
	for {
		select {
		case <-s.stopTicks:
			return
		case <-t.C:
		}
		cur := s.state.applyLevel()
		if cur >= ApplyLevel {
			return
		}
		if pending != nil && !isDone(pending) {
			continue // applied, or failed with the leadership, in time
		}
		if _, isLeader := s.rsm.Raft().State(); !isLeader {
			continue
		}
		// Not while AdmitMember checks and adds a member: its check and
		// its addition are one step as this decision sees them. TryLock,
		// for an addition may wait a request timeout and Kill must not.
		if !s.admitMu.TryLock() {
			continue
		}
		if level := levelFor(s.rsm.Raft().Status(), ApplyLevel); level > cur {
			s.logger.Info("kvraft: every member supports a higher apply level; raising it", "from", cur, "to", level)
			// Before the proposal: from now on a replica that supports less
			// must not join (JoinLevel), though the entry is not applied yet.
			s.proposedLevel.Store(max(s.proposedLevel.Load(), level))
			pending, _ = s.rsm.Propose(encodeOp(op{kind: opLevel, limit: uint64(level)}))
		}
		s.admitMu.Unlock()
	}
}

// ApplyLevelError refuses to add a replica whose version supports a lower
// apply level than the cluster's (AdmitMember): it could not apply the
// log.
type ApplyLevelError struct {
	Supported uint32 // the level the replica supports
	Required  uint32 // the level a replica added now must support
}

func (e *ApplyLevelError) Error() string {
	return fmt.Sprintf("the replica supports apply level %d, and the cluster is at level %d", e.Supported, e.Required)
}

// AdmitMember adds a replica that supports apply level supported to the
// cluster, with add (which appends the configuration change, as
// raft.Node.AddLearnerInTerm does), if its level is at least JoinLevel, and
// refuses it with an *ApplyLevelError otherwise. Call it on the leader.
// The check and the addition are one step against raising the level:
// first a read index makes every entry of an earlier leader applied here
// (one of them may raise the level though no member has answered this
// leader yet), then, until add returns, this replica proposes no raise;
// once the new member is in the configuration, no level it has not
// reported supporting is raised.
//
// All of it in one term of this replica's leadership, else it fails with
// raft.ErrNotLeader before add: on a follower the read index succeeds
// (asking the leader), but JoinLevel there knows neither the levels the
// leader hears its members support nor the raise it proposed; and a
// replica that led, lost and regained leadership meanwhile may have a
// raising entry of another leader in its log that it has not applied.
// add is given the term checked and must append only in that term
// (raft.Node.AddLearnerInTerm): this replica may lose and regain
// leadership between the last check and add's append.
func (s *Server) AdmitMember(ctx context.Context, supported uint32, add func(term uint64) error) error {
	s.admitMu.Lock()
	defer s.admitMu.Unlock()
	term, isLeader := s.rsm.Raft().State()
	if !isLeader {
		return raft.ErrNotLeader
	}
	if _, err := s.rsm.ReadIndex(ctx); err != nil {
		return err
	}
	need := s.JoinLevel()
	if now, isLeader := s.rsm.Raft().State(); !isLeader || now != term {
		return fmt.Errorf("%w: leadership changed (term %d, now %d) while admitting a member", raft.ErrNotLeader, term, now)
	}
	if supported < need {
		return &ApplyLevelError{Supported: supported, Required: need}
	}
	return add(term)
}

// ApplyLevel returns the apply level in force in this replica's state
// (see the constant ApplyLevel).
func (s *Server) ApplyLevel() uint32 { return s.state.applyLevel() }

// JoinLevel returns the lowest apply level a replica added to the cluster
// now must support: the highest of the level in force here, a higher one
// this replica has proposed as leader and not yet applied (a replica added
// in between would meet the raising entry in the log), and, on a leader,
// the level every member already reports supporting (which it is about to
// raise to, or which a committed entry it has not applied yet holds). A
// proposal lost to a leader change keeps it high until the level is
// raised, which the next leader does as soon as every member reports it:
// it only refuses a replica that would soon be refused anyway.
func (s *Server) JoinLevel() uint32 {
	level := max(s.state.applyLevel(), s.proposedLevel.Load())
	if level >= ApplyLevel {
		return level
	}
	return max(level, levelFor(s.rsm.Raft().Status(), ApplyLevel))
}

// applyLevel returns the level in force.
func (s *state) applyLevel() uint32 { return s.level.Load() }

// raiseLevelLocked applies an opLevel. A level above ApplyLevel was
// proposed by a leader that heard this replica support it: the replica
// has since been downgraded, and stops, as on a command of a kind it does
// not know (stopUnknown).
func (s *state) raiseLevelLocked(index uint64, level uint64) {
	if level > uint64(ApplyLevel) {
		panic(fmt.Sprintf("kvraft: the log entry at index %d raises the apply level to %d; this version supports up to %d: "+
			"upgrade this replica", index, level, ApplyLevel))
	}
	s.level.Store(max(s.level.Load(), uint32(level)))
}

// remembered returns what the session table keeps of a write refused with
// err: a copy of the answer, from level 1, if the refusal is final (the
// state's own verdict on this write, not a session or protocol error); nil
// if the refusal is not remembered.
func (s *state) remembered(err error) error {
	if s.level.Load() < 1 {
		return nil
	}
	return cloneRefusal(err)
}

// cloneRefusal returns a copy of a refusal the session table keeps (nil
// for any other error), sharing no memory with it: the table keeps one
// copy, and every answer from it is another, for the caller may change
// the answer it gets (a prefix-scoped token's masking does), and the
// table's copy must stay as every replica has it.
func cloneRefusal(err error) error {
	if err == nil {
		// Most answers: a lookup that misses, an applied write. Before
		// errors.As, whose targets escape: two allocations per write.
		return nil
	}
	var cf *ConditionFailedError
	var tf *txnFailedError
	switch {
	case errors.As(err, &cf):
		c := *cf
		if cf.Current != nil {
			cur := *cf.Current
			c.Current = &cur
		}
		return &c
	case errors.As(err, &tf):
		return &txnFailedError{rev: tf.rev, failed: append([]int(nil), tf.failed...),
			current: append([]KeyValue(nil), tf.current...)}
	case err == ErrTooLarge, err == ErrLeaseNotFound, err == ErrTooManyLeases, err == ErrNoSpace:
		return err
	}
	return nil
}

// Remembered refusals in a version-4 snapshot: a kind byte, then its
// fields.
const (
	refusalNone = iota
	refusalCondition
	refusalTxn
	refusalTooLarge
	refusalLeaseNotFound
	refusalTooManyLeases
	// From apply level 2.
	refusalNoSpace
)

// appendRefusal encodes a remembered refusal (nil for none): for a failed
// condition, uvarint revision and a byte (1: the key existed) followed by
// the key; for a failed txn, uvarint revision, the failed conditions'
// indexes (a count, then each) and the compared keys (a count, then each);
// the others are the kind alone. A key is its name, value and uvarint
// create, mod, version and lease.
func appendRefusal(b []byte, err error) []byte {
	var cf *ConditionFailedError
	var tf *txnFailedError
	switch {
	case err == nil:
		return append(b, refusalNone)
	case errors.As(err, &cf):
		b = append(b, refusalCondition)
		b = binary.AppendUvarint(b, cf.Revision)
		b = append(b, boolByte(cf.Current != nil))
		if cf.Current != nil {
			b = appendKeyValue(b, cf.Current)
		}
		return b
	case errors.As(err, &tf):
		b = append(b, refusalTxn)
		b = binary.AppendUvarint(b, tf.rev)
		b = binary.AppendUvarint(b, uint64(len(tf.failed)))
		for _, i := range tf.failed {
			b = binary.AppendUvarint(b, uint64(i))
		}
		b = binary.AppendUvarint(b, uint64(len(tf.current)))
		for i := range tf.current {
			b = appendKeyValue(b, &tf.current[i])
		}
		return b
	case err == ErrTooLarge:
		return append(b, refusalTooLarge)
	case err == ErrLeaseNotFound:
		return append(b, refusalLeaseNotFound)
	case err == ErrTooManyLeases:
		return append(b, refusalTooManyLeases)
	case err == ErrNoSpace:
		return append(b, refusalNoSpace)
	}
	// remembered keeps nothing else.
	panic(fmt.Sprintf("kvraft: cannot encode the remembered refusal %v", err))
}

func appendKeyValue(b []byte, kv *KeyValue) []byte {
	b = appendString(b, kv.Key)
	b = appendString(b, kv.Value)
	b = binary.AppendUvarint(b, kv.CreateRevision)
	b = binary.AppendUvarint(b, kv.ModRevision)
	b = binary.AppendUvarint(b, kv.Version)
	return binary.AppendUvarint(b, kv.Lease)
}

// keyValue decodes appendKeyValue's encoding. Its Value aliases d's
// bytes: decodeSnapshot, the only caller, gives it storage of its own
// (state.ownRefusalValues) once the snapshot is decoded.
func (d *decoder) keyValue() KeyValue {
	return KeyValue{Key: d.string(), Value: d.view(), CreateRevision: d.uvarint(), ModRevision: d.uvarint(),
		Version: d.uvarint(), Lease: d.uvarint()}
}

// ownRefusalValues gives the values in the remembered refusals of a state
// decoded from a snapshot, which alias the snapshot's bytes, storage of
// their own: the bytes of the record the refusal named, if the state still
// holds it (the key's current record or a retained event's), as the
// replica that applied the refusal shares them (record.valueString); a copy
// otherwise. Without it a restored replica (a restart, a follower sent the
// snapshot) would hold a copy of the value per refusal: 256 refusals of a
// session against a 1 MB key, 256 MB where the leader holds 1 MB.
func (s *state) ownRefusalValues() {
	own := func(kv *KeyValue) {
		if r := s.recordAt(kv.Key, kv.ModRevision); r != nil && string(r.value) == kv.Value {
			kv.Value = r.valueString()
		} else {
			kv.Value = strings.Clone(kv.Value)
		}
	}
	for _, rec := range s.clients {
		for _, err := range rec.refused {
			switch e := err.(type) {
			case *ConditionFailedError:
				if e.Current != nil {
					own(e.Current)
				}
			case *txnFailedError:
				for i := range e.current {
					own(&e.current[i])
				}
			}
		}
	}
}

// recordAt returns key's record of mod revision mod if the state holds it:
// its current one, or a retained event's; nil otherwise.
func (s *state) recordAt(key string, mod uint64) *record {
	if r := s.data[key]; r != nil && r.mod == mod {
		return r
	}
	if mod > s.compactRev && mod-s.compactRev <= uint64(len(s.events)) {
		if e := s.events[mod-s.compactRev-1]; e.key == key && !e.deleted && e.kv != nil && e.kv.mod == mod {
			return e.kv
		}
	}
	return nil
}

// refusal decodes appendRefusal's encoding.
func (d *decoder) refusal() error {
	switch kind := d.byte(); kind {
	case refusalNone:
		return nil
	case refusalCondition:
		cf := &ConditionFailedError{Revision: d.uvarint()}
		if d.byte() != 0 {
			kv := d.keyValue()
			cf.Current = &kv
		}
		return cf
	case refusalTxn:
		tf := &txnFailedError{rev: d.uvarint()}
		// Empty lists stay nil, as remembered leaves them.
		n := d.count()
		if n > 0 {
			tf.failed = make([]int, 0, min(n, kvclient.MaxTxnOps))
		}
		for range n {
			i := d.uvarint()
			if d.err == nil && i >= 1<<20 {
				d.err = fmt.Errorf("%w: txn condition index %d", errCorrupt, i)
			}
			if d.err != nil {
				return tf
			}
			tf.failed = append(tf.failed, int(i))
		}
		n = d.count()
		if n > 0 {
			tf.current = make([]KeyValue, 0, min(n, kvclient.MaxTxnOps))
		}
		for range n {
			kv := d.keyValue()
			if d.err != nil {
				return tf
			}
			tf.current = append(tf.current, kv)
		}
		return tf
	case refusalTooLarge:
		return ErrTooLarge
	case refusalLeaseNotFound:
		return ErrLeaseNotFound
	case refusalTooManyLeases:
		return ErrTooManyLeases
	case refusalNoSpace:
		return ErrNoSpace
	default:
		if d.err == nil {
			d.err = fmt.Errorf("%w: remembered refusal kind %d", errCorrupt, kind)
		}
		return nil
	}
}
