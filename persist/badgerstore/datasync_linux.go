package badgerstore

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
	"unsafe"
)

// datasync flushes f's data and the metadata needed to read it back
// (fdatasync(2)), not its times: what badger's msync of the same file
// flushed, without a journal commit for an mtime change alone.
//
// It is a raw system call: the Go runtime is not told the thread entered
// one, so the processor stays with it for the flush (other goroutines wait,
// as they would for any long call on GOMAXPROCS=1) and the runtime's sysmon
// thread is neither woken nor sent to take the processor away (a hand-off
// and wake-ups of other threads per Append; see persist/plugin pollEnd for
// the measurements).
func datasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	err = rc.Control(func(fd uintptr) {
		for {
			if _, _, errno = syscall.RawSyscall(syscall.SYS_FDATASYNC, fd, 0, 0); errno != syscall.EINTR {
				return
			}
		}
	})
	if err == nil && errno != 0 {
		err = &os.PathError{Op: "fdatasync", Path: f.Name(), Err: errno}
	}
	return err
}

// exists reports whether a file named name exists (faccessat(2), raw for
// the reason datasync is: it runs once per Append).
func exists(name string) (bool, error) {
	p, err := syscall.BytePtrFromString(name)
	if err != nil {
		return false, err
	}
	const atFDCWD = -100
	fdcwd := atFDCWD
	_, _, errno := syscall.RawSyscall(syscall.SYS_FACCESSAT, uintptr(fdcwd), uintptr(unsafe.Pointer(p)), 0)
	switch {
	case errno == 0:
		return true, nil
	case errors.Is(errno, fs.ErrNotExist):
		return false, nil
	}
	return false, &os.PathError{Op: "faccessat", Path: name, Err: errno}
}
