package kubetest

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// Lines collects what a command or a logger writes, line by line, and lets
// a test wait for a line: each write wakes the waiters (no polling).
type Lines struct {
	mu   sync.Mutex
	cond *sync.Cond
	all  []string
	part string
}

// NewLines is an empty Lines.
func NewLines() *Lines {
	l := &Lines{}
	l.cond = sync.NewCond(&l.mu)
	return l
}

func (l *Lines) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.cond.Broadcast()
	s := l.part + string(b)
	parts := strings.Split(s, "\n")
	l.part = parts[len(parts)-1]
	l.all = append(l.all, parts[:len(parts)-1]...)
	return len(b), nil
}

// WaitFor returns the index of the first line from index from that
// contains every one of what, failing the test after a minute.
func (l *Lines) WaitFor(t testing.TB, from int, what ...string) int {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	wake := time.AfterFunc(time.Minute, func() { l.mu.Lock(); l.cond.Broadcast(); l.mu.Unlock() })
	defer wake.Stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		for i := from; i < len(l.all); i++ {
			if containsAll(l.all[i], what) {
				return i
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line with %q after line %d in:\n%s", what, from, strings.Join(l.all, "\n"))
		}
		l.cond.Wait()
	}
}

// Count is the number of lines with every one of what (all lines for
// none).
func (l *Lines) Count(what ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.all {
		if containsAll(s, what) {
			n++
		}
	}
	return n
}

func (l *Lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(append(l.all[:len(l.all):len(l.all)], l.part), "\n")
}

func containsAll(s string, what []string) bool {
	for _, w := range what {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}
