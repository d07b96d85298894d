// Package lock keeps two autodeploy processes from working at once: a run
// that outlasts the cron period, a manual rollback during a run. It is an
// flock(2) on a file, so a crashed holder can never leave it stuck: the
// kernel releases it with the process.
package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Holder describes who holds the lock, as written in the lock file.
type Holder struct {
	Pid     int
	Since   time.Time
	Command string
}

// HeldError is returned when another process holds the lock.
type HeldError struct {
	Path   string
	Holder Holder
}

func (e *HeldError) Error() string {
	h := e.Holder
	if h.Pid == 0 && h.Command != "" {
		return fmt.Sprintf("another autodeploy (%s, since %s) holds the lock %s", h.Command, h.Since.Format(time.RFC3339), e.Path)
	}
	if h.Pid == 0 {
		return fmt.Sprintf("another autodeploy holds the lock %s", e.Path)
	}
	return fmt.Sprintf("another autodeploy (pid %d, %s, since %s) holds the lock %s",
		h.Pid, h.Command, h.Since.Format(time.RFC3339), e.Path)
}

// Lock is a held lock.
type Lock struct {
	f *os.File
}

// TryAcquire takes the lock at path without waiting, and records this
// process as the holder.
func TryAcquire(path, command string, now time.Time) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			h, _ := ReadHolder(path)
			return nil, &HeldError{Path: path, Holder: h}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Truncate only once the lock is ours: the holder's record must survive
	// a failed attempt.
	content := fmt.Sprintf("%d\n%s\n%s\n", os.Getpid(), now.UTC().Format(time.RFC3339), command)
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(content), 0)
	}
	return &Lock{f: f}, nil
}

// Wait calls try, which takes some lock (a file, a Lease), until it
// succeeds, fails otherwise than with a *HeldError, timeout passes or ctx
// ends; waiting is told the holder once, when it has to wait.
func Wait(ctx context.Context, timeout time.Duration, try func() (release func(), err error), waiting func(Holder)) (func(), error) {
	deadline := time.Now().Add(timeout)
	told := false
	for {
		release, err := try()
		var held *HeldError
		if !errors.As(err, &held) || !time.Now().Before(deadline) {
			return release, err
		}
		if !told && waiting != nil {
			waiting(held.Holder)
			told = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond): // flock and Leases have no wait queue
		}
	}
}

// Release unlocks. The file stays: removing it would race with a process
// that has just opened it.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := l.f.Close() // closing releases the flock
	l.f = nil
	return err
}

// ReadHolder reads the holder record; a zero Holder when there is none.
func ReadHolder(path string) (Holder, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Holder{}, err
	}
	lines := strings.SplitN(strings.TrimSpace(string(b)), "\n", 3)
	var h Holder
	if len(lines) > 0 {
		h.Pid, _ = strconv.Atoi(lines[0])
	}
	if len(lines) > 1 {
		h.Since, _ = time.Parse(time.RFC3339, lines[1])
	}
	if len(lines) > 2 {
		h.Command = lines[2]
	}
	return h, nil
}

// Held reports whether some process holds the lock now, and who.
func Held(path string) (bool, Holder) {
	f, err := os.Open(path)
	if err != nil {
		return false, Holder{}
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		h, _ := ReadHolder(path)
		return true, h
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false, Holder{}
}
