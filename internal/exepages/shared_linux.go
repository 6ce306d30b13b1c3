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

// ReleaseShared unmaps from this process the resident pages of its shared
// mappings of files (MAP_SHARED: a store's memory-mapped tables, write-ahead
// log or value log) and returns the size of the address ranges it covered.
// A shared mapping holds no private data: what was written through it is
// the file's page-cache page, which MADV_DONTNEED leaves in the page cache
// (dirty, if it was, for the next fsync or writeback to write), as the
// kernel's own reclaim does. A later touch maps the page again (a minor
// fault, no I/O), so what stays resident is what the process touched since.
func ReleaseShared() (int64, error) {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	var spanned int64
	for _, m := range sharedMappings(maps) {
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, syscall.MADV_DONTNEED); errno != 0 {
			return spanned, fmt.Errorf("exepages: madvise %#x-%#x: %w", m.start, m.end, errno)
		}
		spanned += int64(m.end - m.start)
	}
	return spanned, nil
}

// sharedMappings parses /proc/self/maps and returns the shared mappings of
// files (a path, not [vdso] or an anonymous mapping).
func sharedMappings(maps []byte) []mapping {
	var out []mapping
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// start-end perms offset dev inode path
		f := strings.Fields(sc.Text())
		if len(f) < 6 || len(f[1]) != 4 || f[1][3] != 's' || !strings.HasPrefix(f[5], "/") {
			continue
		}
		lo, hi, found := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !found || err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, mapping{start: uintptr(start), end: uintptr(end)})
	}
	return out
}
