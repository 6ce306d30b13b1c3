package rafttest

import (
	"strings"
	"testing"
)

// upMatrix renders which server reaches which, one row per server.
func upMatrix(l *Links) string {
	var rows []string
	for i := range l.N() {
		var b strings.Builder
		for j := range l.N() {
			switch {
			case i == j:
				b.WriteByte('-')
			case l.Up(i, j):
				b.WriteByte('1')
			default:
				b.WriteByte('0')
			}
		}
		rows = append(rows, b.String())
	}
	return strings.Join(rows, " ")
}

// TestLinks pins the fault API's meaning, shared by this package's Cluster
// and kvtest's.
func TestLinks(t *testing.T) {
	l := NewLinks(4)
	step := func(what, want string) {
		t.Helper()
		if got := upMatrix(l); got != want {
			t.Fatalf("after %s: %s, want %s", what, got, want)
		}
	}
	step("NewLinks", "-111 1-11 11-1 111-")
	l.Partition([]int{0, 1}, []int{2})
	step("Partition 01|2", "-100 1-00 00-0 000-") // 3 is in no group: alone
	l.Disconnect(1)
	step("Disconnect 1", "-000 0-00 00-0 000-")
	l.Connect(3) // to the connected servers only; 0 and 2 stay apart
	step("Connect 3", "-001 0-00 00-1 101-")
	l.Connect(1)
	step("Connect 1", "-101 1-11 01-1 111-")
	l.SetLink(0, 1, false)
	step("SetLink 0 1 off", "-001 0-11 01-1 111-")
	if !l.Connected(0) || !l.Connected(1) {
		t.Fatal("SetLink changed whether a server counts as connected")
	}
	l.Heal()
	step("Heal", "-111 1-11 11-1 111-")
	l.Disconnect(2)
	step("Disconnect 2", "-101 1-01 00-0 110-")
	if l.Connected(2) {
		t.Fatal("2 connected after Disconnect")
	}
}
