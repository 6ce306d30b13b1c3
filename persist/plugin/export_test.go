package plugin

import "time"

// SetCloseTimeouts shortens Close's bounds for a test; the returned func
// restores them.
func SetCloseTimeouts(closeRPC, kill time.Duration) func() {
	oldClose, oldKill := closeTimeout, killWait
	closeTimeout, killWait = closeRPC, kill
	return func() { closeTimeout, killWait = oldClose, oldKill }
}
