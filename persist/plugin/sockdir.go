package plugin

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// maxSocketPathBytes is the longest Unix socket path this package lets
// go-plugin create: sun_path holds 108 bytes on Linux and 104 on macOS and
// the BSDs, including the terminating NUL.
const maxSocketPathBytes = 103

// socketPrefix is how a go-plugin server names its socket in the folder
// it is given (os.CreateTemp with pattern "plugin": up to 10 random digits
// follow).
const socketPrefix = "plugin"

// socketSuffixBytes is what the socket's path adds to the folder's.
const socketSuffixBytes = len("/"+socketPrefix) + 10

// socketDir returns the folder the plugin creates its socket in (Open
// passes it in the plugin's environment, PLUGIN_UNIX_SOCKET_DIR; without it
// go-plugin uses the system temp folder), and a folder to remove on Close
// ("" for none).
//
// The folder is cfg.SocketDir, else DataDir/plugin: the replica owns it, so
// sockets in it, which no running plugin uses — left behind when the host
// and its plugin were killed with SIGKILL — are removed here. If the socket path would
// pass the Unix limit (a deep data dir), or there is no data dir, it falls
// back to a private folder in the system temp folder, removed on Close (and
// at reboot, or when the unit stops under systemd's PrivateTmp, if the host
// is killed).
func socketDir(cfg Config, log *slog.Logger) (dir, remove string, err error) {
	dir = cfg.SocketDir
	if dir == "" && cfg.DataDir != "" {
		dir = filepath.Join(cfg.DataDir, "plugin")
	}
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", "", fmt.Errorf("%w: SocketDir %q: %v", ErrInvalidConfig, dir, err)
		}
		if len(abs)+socketSuffixBytes <= maxSocketPathBytes {
			if err := os.MkdirAll(abs, 0o700); err != nil {
				return "", "", fmt.Errorf("%w: SocketDir %q: %v", ErrInvalidConfig, dir, err)
			}
			removeStaleSockets(abs, log)
			return abs, "", nil
		}
		log.Warn("persister plugin: the socket folder's path is too long for a Unix socket; using a private temporary folder instead",
			"socket_dir", abs, "max_bytes", maxSocketPathBytes-socketSuffixBytes)
	}
	d, err := os.MkdirTemp("", "ruaft-persister-")
	if err != nil {
		return "", "", fmt.Errorf("persist/plugin: socket folder: %w", err)
	}
	return d, d, nil
}

// removeStaleSockets deletes the plugin sockets in dir. Open calls it before
// it starts a plugin, and one host at a time owns dir (its data dir), so
// none of them belongs to a running plugin: they are what a plugin killed
// with SIGKILL left behind.
func removeStaleSockets(dir string, log *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		log.Warn("persister plugin: listing the socket folder", "dir", dir, "err", err)
		return
	}
	for _, e := range entries {
		if e.Type()&os.ModeSocket == 0 || !strings.HasPrefix(e.Name(), socketPrefix) {
			continue
		}
		name := filepath.Join(dir, e.Name())
		if err := os.Remove(name); err != nil {
			log.Warn("persister plugin: removing a stale socket", "socket", name, "err", err)
			continue
		}
		log.Info("persister plugin: removed a stale socket", "socket", name)
	}
}
