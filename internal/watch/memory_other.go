//go:build !linux

package watch

import "runtime/debug"

// ReleaseIdle returns the heap an action freed; the executable's pages are
// given back on Linux only (memory_linux.go).
func ReleaseIdle() error {
	debug.FreeOSMemory()
	return nil
}
