package plugin

import (
	"os"
	"os/signal"
	"syscall"
	"time"
)

// leaveStopToHost makes a plugin process ignore SIGINT, SIGTERM and SIGHUP
// (a reload for a durio replica, and nothing a plugin acts on): its
// host owns its lifetime and stops it as the last step of the host's own
// graceful shutdown, after the last write has reached the store. Those
// signals reach the plugin together with its host whenever they are sent
// to the whole process group or control group: Ctrl-C in a terminal,
// `timeout`, `kill -TERM -PGID`, systemd's default KillMode=control-group,
// `systemctl kill -s HUP` (every process of the unit by default).
// A plugin that died of them would take the store away from the host
// mid-shutdown: the host's in-flight writes would fail and its Close with
// them (a durio replica stopped that way exited 1 with "store
// unavailable").
//
// The plugin still never outlives its host: the kernel kills it with its
// host on Linux (Pdeathsig), and elsewhere it exits within about a second
// of its parent's end (watchParent). SIGKILL ends it as ever.
func leaveStopToHost() {
	signal.Ignore(os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	if !parentDeathSignal {
		go watchParent(os.Getppid(), time.Second, nil, func() { os.Exit(1) })
	}
}

// watchParent calls gone once this process's parent is no longer parent,
// the process having been handed to another (init or a subreaper), looking
// every interval, until stop is closed (nil: never).
func watchParent(parent int, interval time.Duration, stop <-chan struct{}, gone func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if os.Getppid() != parent {
			gone()
			return
		}
	}
}
