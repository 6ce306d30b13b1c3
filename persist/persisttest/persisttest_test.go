package persisttest_test

import (
	"testing"

	"github.com/ruaft/ruaft/persist/persisttest"
)

func TestMemory(t *testing.T)    { persisttest.Run(t, persisttest.Memory()) }
func TestNoop(t *testing.T)      { persisttest.Run(t, persisttest.Noop()) }
func TestFile(t *testing.T)      { persisttest.Run(t, persisttest.File()) }
func TestFileMemFS(t *testing.T) { persisttest.Run(t, persisttest.FileMemFS()) }
func TestBadger(t *testing.T)    { persisttest.Run(t, persisttest.Badger()) }
