// Package backup is durio's snapshot file: its format (a magic line, a JSON
// Header line, then the key-value state as kvraft encodes it), reading and
// verifying one (ReadFile), fetching one from a cluster's leader (Save, over
// GET /admin/snapshot, which package durio serves with Prefix and
// NewHeader), and seeding an empty store with one (Restore). The durio
// command's snapshot save/inspect/restore are thin wrappers over it.
package backup

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/twitchtv/twirp"

	"github.com/ruaft/ruaft/kvraft"
	"github.com/ruaft/ruaft/kvraft/kvwire"
	"github.com/ruaft/ruaft/persist"
)

// A snapshot file (and the body of GET /admin/snapshot) is a magic line, a
// JSON header line, then the key-value state as kvraft encodes it:
//
//	durio-snapshot 1\n
//	{"index":…,"term":…,"bytes":…,"sha256":"…","created":"…","replica":…,"header_sha256":"…"}\n
//	<bytes of state>
//
// sha256 covers the state; header_sha256 covers the header's other fields
// (files written before it existed have none, and are read without that
// check).
const magic = "durio-snapshot 1\n"

// maxHeaderBytes bounds the header line a reader accepts.
const maxHeaderBytes = 4 << 10

// ErrBadSnapshot is wrapped by every error about an unreadable snapshot file.
var ErrBadSnapshot = errors.New("durio: bad snapshot")

// Header describes a snapshot: the last log entry it covers and a
// checksum of its state.
type Header struct {
	// Index and Term are those of the last log entry the snapshot covers:
	// every write acknowledged before the snapshot was taken is in it.
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
	// Bytes is the length of the state, SHA256 its hex SHA-256.
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
	// Created is when the replica took it (RFC 3339, UTC); Replica is its id.
	Created string `json:"created"`
	Replica int    `json:"replica"`
	// HeaderSHA256 is the hex SHA-256 of the header's JSON with this field
	// empty (see headerSum): a damaged index or term, which the state's
	// checksum does not cover, would restore a replica that skips or
	// repeats log entries. Prefix sets it; a reader checks it when present.
	HeaderSHA256 string `json:"header_sha256,omitempty"`
}

// headerSum returns the hex SHA-256 of hdr's JSON without its own
// checksum. Go marshals a struct's fields in their order, so the writer's
// and the reader's JSON of the same values are the same bytes.
func headerSum(hdr Header) string {
	hdr.HeaderSHA256 = ""
	b, _ := json.Marshal(hdr) // a struct of numbers and strings always marshals
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// NewHeader describes data, the key-value state at index and term, taken
// now by replica.
func NewHeader(index, term uint64, replica int, data []byte) Header {
	sum := sha256.Sum256(data)
	return Header{Index: index, Term: term, Bytes: int64(len(data)), SHA256: hex.EncodeToString(sum[:]),
		Created: time.Now().UTC().Format(time.RFC3339), Replica: replica}
}

// Prefix is what precedes the state in a snapshot file: the magic line and
// hdr's JSON line, with its header checksum.
func Prefix(hdr Header) []byte {
	hdr.HeaderSHA256 = headerSum(hdr)
	head, _ := json.Marshal(hdr) // a struct of numbers and strings always marshals
	return append(append([]byte(magic), head...), '\n')
}

// readHeader reads the magic and header lines.
func readHeader(br *bufio.Reader) (Header, error) {
	var hdr Header
	first := make([]byte, len(magic))
	if _, err := io.ReadFull(br, first); err != nil || string(first) != magic {
		return hdr, fmt.Errorf("%w: not a durio snapshot (no %q line)", ErrBadSnapshot, strings.TrimSpace(magic))
	}
	line, err := br.ReadSlice('\n')
	if err != nil || len(line) > maxHeaderBytes {
		return hdr, fmt.Errorf("%w: header line missing or too long", ErrBadSnapshot)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&hdr); err != nil {
		return hdr, fmt.Errorf("%w: header: %v", ErrBadSnapshot, err)
	}
	if hdr.HeaderSHA256 != "" && headerSum(hdr) != hdr.HeaderSHA256 {
		return hdr, fmt.Errorf("%w: header checksum mismatch: the header was damaged (index %d, term %d as read)",
			ErrBadSnapshot, hdr.Index, hdr.Term)
	}
	if hdr.Index == 0 || hdr.Bytes < 0 || len(hdr.SHA256) != 2*sha256.Size {
		return hdr, fmt.Errorf("%w: header: index, bytes or sha256 missing", ErrBadSnapshot)
	}
	return hdr, nil
}

// copyVerified reads a snapshot from r (a file or a response body), checks
// its length and checksum, and writes it, header included, to w. maxBytes
// bounds the state it accepts.
func copyVerified(w io.Writer, r io.Reader, maxBytes int64) (Header, error) {
	br := bufio.NewReaderSize(r, maxHeaderBytes+len(magic))
	hdr, err := readHeader(br)
	if err != nil {
		return hdr, err
	}
	if hdr.Bytes > maxBytes {
		return hdr, fmt.Errorf("%w: %d bytes of state, more than the %d accepted", ErrBadSnapshot, hdr.Bytes, maxBytes)
	}
	if _, err := w.Write(Prefix(hdr)); err != nil {
		return hdr, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(br, hdr.Bytes))
	if err != nil {
		return hdr, err
	}
	if n != hdr.Bytes {
		return hdr, fmt.Errorf("%w: truncated: %d of %d bytes of state", ErrBadSnapshot, n, hdr.Bytes)
	}
	if extra, _ := br.Read(make([]byte, 1)); extra != 0 {
		return hdr, fmt.Errorf("%w: data after the %d bytes of state", ErrBadSnapshot, hdr.Bytes)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != hdr.SHA256 {
		return hdr, fmt.Errorf("%w: checksum mismatch: the state hashes to %s, the header says %s", ErrBadSnapshot, got, hdr.SHA256)
	}
	return hdr, nil
}

// ReadFile reads and verifies a snapshot file: header, length,
// checksum, and that the state decodes. It returns the header, the state and
// the number of keys.
func ReadFile(path string, maxBytes int64) (Header, []byte, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return Header{}, nil, 0, err
	}
	defer f.Close()
	var buf bytes.Buffer
	hdr, err := copyVerified(&buf, f, maxBytes)
	if err != nil {
		return hdr, nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	data := buf.Bytes()[bytes.IndexByte(buf.Bytes()[len(magic):], '\n')+len(magic)+1:]
	keys, err := kvraft.CheckSnapshot(data)
	if err != nil {
		return hdr, nil, 0, fmt.Errorf("%w: %s: the state does not decode: %v", ErrBadSnapshot, path, err)
	}
	return hdr, data, keys, nil
}

// Save fetches a snapshot from the leader among endpoints (following
// a replica's leader hint), verifies it, and writes it to path atomically
// (a temporary file in the same folder, fsynced, then renamed). While no
// replica can serve one (an election is under way, the leader could not
// confirm a read point, replicas do not answer) it asks again, with
// backoff, until ctx ends. It stops at once on a damaged snapshot, a
// refused certificate or a failure to write the file, and after a round in
// which every replica gave an answer that asking again cannot change.
func Save(ctx context.Context, hc *http.Client, endpoints []string, path string) (Header, error) {
	wait := minRetryWait
	for {
		hdr, again, err := saveRound(ctx, hc, endpoints, path)
		if err == nil || !again || ctx.Err() != nil {
			return hdr, err
		}
		select {
		case <-ctx.Done():
			return Header{}, fmt.Errorf("%w; the last answer: %w", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, maxRetryWait)
	}
}

// The wait between two rounds over the endpoints doubles from
// minRetryWait up to maxRetryWait: about an election's length, so that a
// save in the middle of one gets a few tries.
const (
	minRetryWait = 50 * time.Millisecond
	maxRetryWait = time.Second
)

// saveRound tries each endpoint at most once, following leader hints, and
// returns at the first success or final error; again reports whether
// another round may succeed (some replica's answer was retriable).
func saveRound(ctx context.Context, hc *http.Client, endpoints []string, path string) (hdr Header, again bool, last error) {
	tried := make(map[int]bool)
	next := 0
	for len(tried) < len(endpoints) {
		i := next
		if tried[i] {
			for i = 0; tried[i]; i++ {
			}
		}
		tried[i] = true
		next = i + 1
		hdr, hint, err := saveFrom(ctx, hc, endpoints[i], path)
		if err == nil {
			return hdr, false, nil
		}
		last = fmt.Errorf("%s: %w", endpoints[i], err)
		if final(err) || ctx.Err() != nil {
			return hdr, false, last
		}
		again = again || retriable(err)
		if hint >= 0 && hint < len(endpoints) && !tried[hint] {
			next = hint
		} else if next >= len(endpoints) {
			next = 0
		}
	}
	return Header{}, again, last
}

// final reports whether err ends the save whatever the other replicas
// would answer: a damaged snapshot, a refused certificate, a failure to
// write the local file.
func final(err error) bool {
	var (
		pathErr *fs.PathError
		linkErr *os.LinkError
	)
	return errors.Is(err, ErrBadSnapshot) || kvwire.TLSRejected(err) || errors.As(err, &pathErr) || errors.As(err, &linkErr)
}

// retriable reports whether asking the same replica again may succeed: it
// is not the leader or could not confirm a read point (503), is
// overloaded (429), or did not answer, or its answer broke off. Any other
// error it sent (a refused request, an unknown route) stays.
func retriable(err error) bool {
	var terr twirp.Error
	if errors.As(err, &terr) {
		return terr.Code() == twirp.Unavailable || terr.Code() == twirp.ResourceExhausted
	}
	return true
}

// saveFrom tries one endpoint; hint is the leader id a non-leader named, or -1.
func saveFrom(ctx context.Context, hc *http.Client, endpoint, path string) (hdr Header, hint int, err error) {
	hint = -1
	if !strings.Contains(endpoint, "://") {
		endpoint = "http://" + endpoint
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(endpoint, "/")+"/admin/snapshot", nil)
	if err != nil {
		return hdr, hint, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return hdr, hint, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var body struct {
			Code string            `json:"code"`
			Msg  string            `json:"msg"`
			Meta map[string]string `json:"meta"`
		}
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body)
		if id, perr := strconv.Atoi(body.Meta["leader_id"]); perr == nil {
			hint = id
		}
		return hdr, hint, twirp.NewError(twirp.ErrorCode(body.Code), fmt.Sprintf("%s (HTTP %d)", body.Msg, resp.StatusCode))
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return hdr, hint, err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	hdr, err = copyVerified(tmp, resp.Body, 1<<40)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return hdr, hint, err
}

// Restore seeds an empty store with a snapshot: the state at the
// snapshot's index and term, an empty log, and a hard state in its term. Run
// it on every replica's data folder (with the replicas stopped), then start
// the cluster: it carries on from the snapshot.
func Restore(ctx context.Context, store persist.Store, hdr Header, data []byte) error {
	st, err := store.Load(ctx)
	if err != nil {
		return fmt.Errorf("durio: read the store: %w", err)
	}
	if st.LastIndex() != 0 || st.HardState.Term != 0 {
		return fmt.Errorf("durio: the store already holds raft state (term %d, last index %d): restore only into an empty data folder",
			st.HardState.Term, st.LastIndex())
	}
	if err := store.SaveSnapshot(ctx, persist.Snapshot{Index: hdr.Index, Term: hdr.Term, Data: data}); err != nil {
		return fmt.Errorf("durio: save the snapshot: %w", err)
	}
	if err := store.Append(ctx, persist.HardState{Term: hdr.Term, VotedFor: persist.NoVote, Commit: hdr.Index}, nil); err != nil {
		return fmt.Errorf("durio: save the hard state: %w", err)
	}
	return nil
}
