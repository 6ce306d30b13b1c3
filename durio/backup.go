package durio

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
	"github.com/ruaft/ruaft/raft"
)

// A snapshot file (and the body of GET /admin/snapshot) is a magic line, a
// JSON header line, then the key-value state as kvraft encodes it:
//
//	durio-snapshot 1\n
//	{"index":…,"term":…,"bytes":…,"sha256":"…","created":"…","replica":…}\n
//	<bytes of state>
const snapshotMagic = "durio-snapshot 1\n"

// maxSnapshotHeader bounds the header line a reader accepts.
const maxSnapshotHeader = 4 << 10

// ErrBadSnapshot is wrapped by every error about an unreadable snapshot file.
var ErrBadSnapshot = errors.New("durio: bad snapshot")

// SnapshotHeader describes a snapshot: the last log entry it covers and a
// checksum of its state.
type SnapshotHeader struct {
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
}

// snapshotHandler serves GET /admin/snapshot: a consistent snapshot of the
// state, taken on the leader (other replicas answer 503 with the leader's
// id), in the snapshot file format.
func (r *Replica) snapshotHandler(w http.ResponseWriter, req *http.Request) {
	ctx, cancel := context.WithTimeout(req.Context(), r.cfg.RequestTimeout)
	defer cancel()
	if st := r.kv.Status(); st.Role != raft.Leader {
		terr := twirp.NewError(twirp.Unavailable, "not the leader: snapshots are taken on the leader")
		if st.Leader >= 0 {
			terr = terr.WithMeta("leader_id", strconv.Itoa(st.Leader))
		}
		writeError(w, terr)
		return
	}
	index, term, data, err := r.kv.Backup(ctx)
	if err != nil {
		writeError(w, twirp.NewError(twirp.Unavailable, "could not confirm a read point with the cluster: "+err.Error()))
		return
	}
	sum := sha256.Sum256(data)
	hdr := SnapshotHeader{Index: index, Term: term, Bytes: int64(len(data)), SHA256: hex.EncodeToString(sum[:]),
		Created: time.Now().UTC().Format(time.RFC3339), Replica: r.cfg.ID}
	head, _ := json.Marshal(hdr)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(snapshotMagic)+len(head)+1+len(data)))
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, snapshotMagic)
	_, _ = w.Write(append(head, '\n'))
	_, _ = w.Write(data)
	r.logger.Info("snapshot served", "index", index, "term", term, "bytes", len(data), "remote", req.RemoteAddr)
}

// readSnapshotHeader reads the magic and header lines.
func readSnapshotHeader(br *bufio.Reader) (SnapshotHeader, error) {
	var hdr SnapshotHeader
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return hdr, fmt.Errorf("%w: not a durio snapshot (no %q line)", ErrBadSnapshot, strings.TrimSpace(snapshotMagic))
	}
	line, err := br.ReadSlice('\n')
	if err != nil || len(line) > maxSnapshotHeader {
		return hdr, fmt.Errorf("%w: header line missing or too long", ErrBadSnapshot)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&hdr); err != nil {
		return hdr, fmt.Errorf("%w: header: %v", ErrBadSnapshot, err)
	}
	if hdr.Index == 0 || hdr.Bytes < 0 || len(hdr.SHA256) != 2*sha256.Size {
		return hdr, fmt.Errorf("%w: header: index, bytes or sha256 missing", ErrBadSnapshot)
	}
	return hdr, nil
}

// copySnapshot reads a snapshot from r (a file or a response body), checks
// its length and checksum, and writes it, header included, to w. maxBytes
// bounds the state it accepts.
func copySnapshot(w io.Writer, r io.Reader, maxBytes int64) (SnapshotHeader, error) {
	br := bufio.NewReaderSize(r, maxSnapshotHeader+len(snapshotMagic))
	hdr, err := readSnapshotHeader(br)
	if err != nil {
		return hdr, err
	}
	if hdr.Bytes > maxBytes {
		return hdr, fmt.Errorf("%w: %d bytes of state, more than the %d accepted", ErrBadSnapshot, hdr.Bytes, maxBytes)
	}
	head, _ := json.Marshal(hdr)
	if _, err := io.WriteString(w, snapshotMagic+string(head)+"\n"); err != nil {
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

// ReadSnapshotFile reads and verifies a snapshot file: header, length,
// checksum, and that the state decodes. It returns the header, the state and
// the number of keys.
func ReadSnapshotFile(path string, maxBytes int64) (SnapshotHeader, []byte, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return SnapshotHeader{}, nil, 0, err
	}
	defer f.Close()
	var buf bytes.Buffer
	hdr, err := copySnapshot(&buf, f, maxBytes)
	if err != nil {
		return hdr, nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	data := buf.Bytes()[bytes.IndexByte(buf.Bytes()[len(snapshotMagic):], '\n')+len(snapshotMagic)+1:]
	keys, err := kvraft.CheckSnapshot(data)
	if err != nil {
		return hdr, nil, 0, fmt.Errorf("%w: %s: the state does not decode: %v", ErrBadSnapshot, path, err)
	}
	return hdr, data, keys, nil
}

// SaveSnapshot fetches a snapshot from the leader among endpoints (following
// a replica's leader hint), verifies it, and writes it to path atomically
// (a temporary file in the same folder, fsynced, then renamed).
func SaveSnapshot(ctx context.Context, hc *http.Client, endpoints []string, path string) (SnapshotHeader, error) {
	var last error
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
			return hdr, nil
		}
		last = fmt.Errorf("%s: %w", endpoints[i], err)
		if errors.Is(err, ErrBadSnapshot) || kvwire.TLSRejected(err) || ctx.Err() != nil {
			return hdr, last
		}
		if hint >= 0 && hint < len(endpoints) && !tried[hint] {
			next = hint
		} else if next >= len(endpoints) {
			next = 0
		}
	}
	return SnapshotHeader{}, last
}

// saveFrom tries one endpoint; hint is the leader id a non-leader named, or -1.
func saveFrom(ctx context.Context, hc *http.Client, endpoint, path string) (hdr SnapshotHeader, hint int, err error) {
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
	hdr, err = copySnapshot(tmp, resp.Body, 1<<40)
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

// RestoreSnapshot seeds an empty store with a snapshot: the state at the
// snapshot's index and term, an empty log, and a hard state in its term. Run
// it on every replica's data folder (with the replicas stopped), then start
// the cluster: it carries on from the snapshot.
func RestoreSnapshot(ctx context.Context, store persist.Store, hdr SnapshotHeader, data []byte) error {
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
