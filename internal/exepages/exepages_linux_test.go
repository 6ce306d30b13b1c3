package exepages

import (
	"os"
	"testing"
)

// imageRSS is the resident size of this process's read-only mappings of its
// executable, from /proc/self/smaps.
func imageRSS(t *testing.T) int64 {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	var rss int64
	for _, m := range imageMappings(smaps, exe) {
		rss += m.rss
	}
	return rss
}

// TestRelease releases the test binary's own pages from this very
// process, which must keep running (the pages come back from the page cache
// when touched), and checks that the resident set of its read-only mappings
// shrank.
func TestRelease(t *testing.T) {
	before := imageRSS(t)
	released, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	after := imageRSS(t)
	t.Logf("executable's read-only mappings: %d KiB resident before, %d KiB released, %d KiB after", before>>10, released>>10, after>>10)
	if released <= 0 || after >= before {
		t.Fatalf("released %d bytes; resident %d before, %d after: want less after", released, before, after)
	}
}

func TestImageMappings(t *testing.T) {
	smaps := []byte(`00400000-00c00000 r-xp 00000000 fc:01 42 /usr/bin/host
Size:               8192 kB
Rss:                4096 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
00c00000-00e00000 r--p 00800000 fc:01 42 /usr/bin/host
Rss:                1024 kB
Anonymous:             0 kB
00e00000-00f00000 rw-p 00a00000 fc:01 42 /usr/bin/host
Rss:                 512 kB
Anonymous:           100 kB
00f00000-00f10000 r--p 00b00000 fc:01 42 /usr/bin/host
Rss:                  64 kB
Anonymous:             4 kB
00f10000-00f20000 r--p 00b00000 fc:01 42 /usr/bin/host
Rss:                   0 kB
Anonymous:             0 kB
01000000-01100000 r-xp 00000000 fc:01 43 /usr/lib/libc.so.6
Rss:                 900 kB
Anonymous:             0 kB
02000000-02100000 r--s 00000000 fc:01 44 /usr/bin/host
Rss:                 900 kB
Anonymous:             0 kB
7f000000-7f100000 r--p 00000000 00:00 0
Rss:                 100 kB
Anonymous:           100 kB
`)
	got := imageMappings(smaps, "/usr/bin/host")
	want := []mapping{{0x400000, 0xc00000, 4096 << 10}, {0xc00000, 0xe00000, 1024 << 10}}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v (writable, copied-on-write, empty, shared and other files' mappings left out)", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("mapping %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}
