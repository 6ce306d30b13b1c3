package exepages

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Release unmaps from this process the pages of its own executable that it
// has touched so far, in the file's read-only mappings (code, read-only
// data, the symbol and line tables), and returns how many bytes were mapped.
// Pages the process needs again come back on first touch from the page cache
// (a minor fault, no I/O), so what stays resident is what it uses from then
// on. It is safe at any time; it pays off once, after start-up.
//
// Only mappings that cannot hold private changes are released: not
// writable, and with no anonymous (copied-on-write) pages; MADV_DONTNEED on
// anything else would throw away data.
func Release() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	var released int64
	for _, m := range imageMappings(smaps, exe) {
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, syscall.MADV_DONTNEED); errno != 0 {
			return released, fmt.Errorf("exepages: madvise %#x-%#x: %w", m.start, m.end, errno)
		}
		released += m.rss
	}
	return released, nil
}

// mapping is one address range of /proc/self/smaps that Release may
// release, with its resident bytes.
type mapping struct {
	start, end uintptr
	rss        int64
}

// imageMappings parses smaps and returns the read-only, private mappings of
// the file exe that hold no anonymous pages.
func imageMappings(smaps []byte, exe string) []mapping {
	var (
		out  []mapping
		cur  mapping
		ok   bool // cur is a candidate so far
		anon int64
	)
	done := func() {
		if ok && anon == 0 && cur.rss > 0 {
			out = append(out, cur)
		}
		ok = false
	}
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if !strings.HasSuffix(f[0], ":") { // a mapping's header line
			done()
			// start-end perms offset dev inode path
			if len(f) < 6 || strings.Join(f[5:], " ") != exe || len(f[1]) != 4 ||
				f[1][1] == 'w' || f[1][3] != 'p' {
				continue
			}
			lo, hi, found := strings.Cut(f[0], "-")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if !found || err1 != nil || err2 != nil || end <= start {
				continue
			}
			cur, ok, anon = mapping{start: uintptr(start), end: uintptr(end)}, true, 0
			continue
		}
		if !ok || len(f) < 2 {
			continue
		}
		kib, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			cur.rss = kib << 10
		case "Anonymous:":
			anon = kib
		}
	}
	done()
	return out
}
