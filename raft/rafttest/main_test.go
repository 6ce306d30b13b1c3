package rafttest

import (
	"testing"

	"github.com/ruaft/ruaft/persist/persisttest"
)

// TestMain lets the test binary serve plugin stores when re-executed as a
// persister plugin (TestStores).
func TestMain(m *testing.M) { persisttest.Main(m) }
