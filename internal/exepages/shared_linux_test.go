package exepages

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// TestReleaseSharedKeepsWrites writes a file through a shared mapping, as
// badger writes its tables and logs, releases the mapping's pages before
// any sync, and checks that the file has every byte written (read with
// read(2) and through the mapping again) and survives fsync, and that the
// pages were no longer mapped in between.
func TestReleaseSharedKeepsWrites(t *testing.T) {
	const size = 1 << 20
	f, err := os.Create(filepath.Join(t.TempDir(), "mapped"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	want := make([]byte, size)
	for i := range want {
		want[i] = byte(i*7 + i>>12)
	}
	copy(m, want)
	if kib := mappingRSS(t, m); kib == 0 {
		t.Fatal("no page resident after writing through the mapping")
	}
	spanned, err := ReleaseShared()
	if err != nil {
		t.Fatal(err)
	}
	if spanned < size {
		t.Fatalf("released %d bytes of shared mappings, want at least the %d mapped here", spanned, size)
	}
	if kib := mappingRSS(t, m); kib != 0 {
		t.Fatalf("mapping holds %d KiB after ReleaseShared, want 0", kib)
	}
	got := make([]byte, size)
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("file content differs from what was written through the mapping")
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m, want) {
		t.Fatal("mapping reads back different bytes after ReleaseShared")
	}
}

// mappingRSS is the resident size, in KiB, of the mapping that starts at
// b's first byte, from /proc/self/smaps.
func mappingRSS(t *testing.T, b []byte) int64 {
	t.Helper()
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	header := fmt.Sprintf("%x-", uintptr(unsafe.Pointer(&b[0])))
	in := false
	for _, line := range strings.Split(string(smaps), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case !strings.HasSuffix(f[0], ":"):
			in = strings.HasPrefix(f[0], header)
		case in && f[0] == "Rss:" && len(f) >= 2:
			kib, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kib
		}
	}
	t.Fatalf("mapping %s... not in smaps", header)
	return 0
}

func TestSharedMappings(t *testing.T) {
	maps := []byte(`00400000-00c00000 r-xp 00000000 fc:01 42 /usr/bin/host
7f000000-7f200000 rw-s 00000000 fc:01 50 /data/store/000001.vlog
7f200000-7f300000 r--s 00000000 fc:01 51 /data/store/000002.sst
7f300000-7f400000 rw-p 00000000 fc:01 52 /data/store/private
7f400000-7f500000 rw-s 00000000 00:01 1 /dev/zero (deleted)
7f500000-7f600000 rw-p 00000000 00:00 0
7ffd0000-7ffd2000 r-xp 00000000 00:00 0 [vdso]
7f600000-7f500000 rw-s 00000000 fc:01 53 /data/store/backwards
`)
	got := sharedMappings(maps)
	want := []mapping{{start: 0x7f000000, end: 0x7f200000}, {start: 0x7f200000, end: 0x7f300000}, {start: 0x7f400000, end: 0x7f500000}}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v (private, anonymous and malformed mappings left out)", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("mapping %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}
