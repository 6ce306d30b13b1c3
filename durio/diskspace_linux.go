package durio

import "syscall"

func statFree(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	// Bavail counts fragments of Frsize bytes (statvfs(3)); Bsize is the
	// preferred I/O size, which some file systems set larger.
	return uint64(st.Bavail) * uint64(st.Frsize), true
}
