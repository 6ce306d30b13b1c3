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
//
// It asks the kernel to reclaim them (MADV_PAGEOUT, Linux 5.4), which never
// loses data: a page written through the mapping and not yet written back
// is unmapped and stays in the page cache for the next fsync or writeback,
// a clean one is dropped from the page cache too, and a later touch maps it
// again (read from the file if it was dropped). MADV_DONTNEED would keep
// the clean pages cached, but a range read from /proc/self/maps may be
// unmapped (a table deleted after a compaction) and its addresses reused by
// an anonymous mapping (the Go runtime's) before the madvise: DONTNEED would
// zero that memory, reclaim only swaps it out or leaves it. A range no
// longer mapped is skipped.
func ReleaseShared() (int64, error) {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	var spanned int64
	for _, m := range sharedMappings(maps) {
		_, _, errno := syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, madvPageout)
		switch errno {
		case 0:
			spanned += int64(m.end - m.start)
		case syscall.ENOMEM: // unmapped since maps was read
		default:
			return spanned, fmt.Errorf("exepages: madvise(MADV_PAGEOUT) %#x-%#x: %w", m.start, m.end, errno)
		}
	}
	return spanned, nil
}

// madvPageout is MADV_PAGEOUT, which package syscall does not define.
const madvPageout = 21

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
