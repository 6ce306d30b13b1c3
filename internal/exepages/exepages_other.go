//go:build !linux

package exepages

// Release does nothing outside Linux.
func Release() (int64, error) { return 0, nil }

// ReleaseShared does nothing outside Linux.
func ReleaseShared() (int64, error) { return 0, nil }
