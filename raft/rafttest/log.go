package rafttest

// Logging: node logs and RPC traces sent to the test log on demand
// (RAFTTEST_LOG, RAFTTEST_TRACE).

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"

	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
	"google.golang.org/protobuf/proto"
)

// traceRPC describes one RPC served by server i, for RAFTTEST_TRACE.
func traceRPC(i int, method string, req, reply []byte, err error) string {
	switch method {
	case MethodAppendEntries:
		q, qerr := DecodeAppendEntries(req)
		if qerr != nil {
			return fmt.Sprintf("trace: AE to %d: bad request: %v", i, qerr)
		}
		first, last := uint64(0), uint64(0)
		if len(q.Entries) > 0 {
			first, last = q.Entries[0].Index, q.Entries[len(q.Entries)-1].Index
		}
		out := fmt.Sprintf("trace: AE %d->%d term=%d prev=%d/%d entries=[%d,%d] commit=%d",
			q.LeaderID, i, q.Term, q.PrevLogIndex, q.PrevLogTerm, first, last, q.LeaderCommit)
		if err != nil {
			return out + fmt.Sprintf(" => error %v", err)
		}
		p := new(raftv1.AppendEntriesResponse)
		if perr := proto.Unmarshal(reply, p); perr != nil {
			return out + fmt.Sprintf(" => bad reply %v", perr)
		}
		return out + fmt.Sprintf(" => term=%d success=%v match=%d conflict=%d/%d last=%d",
			p.GetTerm(), p.GetSuccess(), p.GetMatchIndex(), p.GetConflictTerm(), p.GetConflictIndex(), p.GetLastLogIndex())
	default:
		return fmt.Sprintf("trace: %s to %d: %d bytes => %d bytes, err %v", method, i, len(req), len(reply), err)
	}
}

// tbLog sends node logs to the test log when RAFTTEST_LOG is set, and stops
// once the test is over (logging after that would panic).
type tbLog struct {
	t       testing.TB
	mu      sync.Mutex // guards stopped
	stopped bool
}

func (l *tbLog) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
}

// Write implements io.Writer for the slog handler: one record, one t.Log.
func (l *tbLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func (l *tbLog) printf(format string, args ...any) {
	if os.Getenv("RAFTTEST_LOG") != "" || os.Getenv("RAFTTEST_TRACE") != "" {
		fmt.Fprintf(l, format, args...)
	}
}

func (l *tbLog) logger(id, gen int) *slog.Logger {
	if os.Getenv("RAFTTEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})).
		With("server", id, "gen", gen)
}
