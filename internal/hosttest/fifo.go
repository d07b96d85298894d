package hosttest

import (
	"syscall"
	"testing"
	"time"
)

// Mkfifo makes a named pipe at path: what a file read without care (open
// to read waits for a writer, to write for a reader) blocks on forever.
func Mkfifo(t testing.TB, path string) string {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Returns runs fn and fails the test if fn is still blocked when the test
// binary's deadline (go test -timeout) is near: a read that blocks on a
// named pipe never returns, and the test must say which call hung instead
// of dying in the timeout's goroutine dump. It measures nothing: a
// correct fn returns at once, however slow the machine.
func Returns(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	deadline, ok := t.Deadline()
	if !ok {
		<-done
		return
	}
	// The margin leaves the test time to report before the binary's own
	// timeout panics.
	margin := time.Until(deadline) / 10
	select {
	case <-done:
	case <-time.After(time.Until(deadline) - margin):
		t.Fatalf("%s is still blocked near the test deadline", what)
	}
}
