package twirptransport

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	raftv1 "github.com/ruaft/ruaft/rpc/raft/v1"
)

// readFrame reads the header out of the reader's buffer rather than into an
// array of its own; a stream cut anywhere still ends as io.ReadFull would
// report it: io.EOF at a boundary between the length, the rest of the
// header and the body, io.ErrUnexpectedEOF inside one of them.
func TestReadFrameCutStream(t *testing.T) {
	frame, err := appendResponse(nil, 77, &raftv1.AppendEntriesResponse{Term: 5, Success: true})
	if err != nil {
		t.Fatal(err)
	}
	typ, id, body, err := readFrame(bufio.NewReaderSize(bytes.NewReader(frame), 16), 1<<20)
	if err != nil || typ != frameResponse || id != 77 || !bytes.Equal(body, frame[13:]) {
		t.Fatalf("readFrame = %d, %d, %x, %v; want a response to 77 with body %x", typ, id, body, err, frame[13:])
	}
	for cut := range len(frame) {
		want := io.ErrUnexpectedEOF
		if cut == 0 || cut == 4 || cut == 13 {
			want = io.EOF
		}
		_, _, _, err := readFrame(bufio.NewReaderSize(bytes.NewReader(frame[:cut]), 16), 1<<20)
		if !errors.Is(err, want) {
			t.Errorf("frame cut after %d of %d bytes: %v, want %v", cut, len(frame), err, want)
		}
	}
	// Two frames in a row: the second header is read where the first
	// frame ended.
	two := append(bytes.Clone(frame), frame...)
	setFrameID(two[len(frame):], 78)
	br := bufio.NewReaderSize(bytes.NewReader(two), 16)
	for _, want := range []uint64{77, 78} {
		if _, id, _, err := readFrame(br, 1<<20); err != nil || id != want {
			t.Fatalf("readFrame = id %d, %v; want %d", id, err, want)
		}
	}
}
