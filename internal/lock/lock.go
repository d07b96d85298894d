// Package lock keeps two autodeploy processes from working at once: a run
// that outlasts the cron period, a manual rollback during a run. One
// Locker, two implementations: a lock on a file for one host, a Lease in
// the cluster for several.
//
// The file lock is an open file description lock (fcntl F_OFD_SETLK, Linux
// >= 3.15): like flock(2) it belongs to the open file, so a crashed holder
// can never leave it stuck (the kernel releases it with the process), but
// unlike flock it can be queried without being taken (F_OFD_GETLK). A
// probe (status, hold's note) therefore never holds the lock, even for an
// instant, and never makes a cron run starting at that instant exit 4.
// The lock is the file's, not the path's: a locker checks that the path
// still names the file it locked, and a holder that its file is not
// deleted (FileLocker).
package lock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/config"

	"golang.org/x/sys/unix"
)

// Holder describes who holds the lock, as written in the lock file.
type Holder struct {
	Pid     int
	Since   time.Time
	Command string
}

// Name is how the holder is named to a person: "pid 4242 since 10:29:55
// UTC: autodeploy run" for a file lock's. A Lease's holder has no pid of
// this host (its command, "host/pid: ...", names it), and a file lock's
// may have written no record: another program's fcntl lock on the file,
// or an autodeploy between its lock and its record (status said "pid 0
// since 00:00:00 UTC:" for both; issue 18, sixth pass). Its text is the
// holder's own: callers escape it for a terminal.
func (h Holder) Name() string {
	var parts []string
	if h.Pid != 0 {
		parts = append(parts, fmt.Sprintf("pid %d", h.Pid))
	}
	if !h.Since.IsZero() {
		parts = append(parts, "since "+h.Since.UTC().Format("15:04:05 UTC"))
	}
	who := strings.Join(parts, " ")
	switch {
	case who != "" && h.Command != "":
		return who + ": " + h.Command
	case h.Command != "":
		return h.Command
	case who != "":
		return who
	}
	return "a process that wrote no holder record: not autodeploy, or one that has just locked"
}

// HeldError is returned when another process holds the lock.
type HeldError struct {
	Path   string
	Holder Holder
	// Unnamed says the holder of a file lock left its record empty or
	// incomplete for as long as it was read (readHeldRecord).
	Unnamed bool
}

func (e *HeldError) Error() string {
	h := e.Holder
	if e.Unnamed {
		return fmt.Sprintf("another process holds the lock %s, but its holder has written no name in it within %s (autodeploy writes it right after locking: find the holder with fuser -v %s)", e.Path, recordReads*recordPause, e.Path)
	}
	if h.Pid == 0 && h.Command != "" {
		return fmt.Sprintf("another autodeploy (%s, since %s) holds the lock %s", h.Command, h.Since.Format(time.RFC3339), e.Path)
	}
	if h.Pid == 0 {
		return fmt.Sprintf("another autodeploy holds the lock %s", e.Path)
	}
	return fmt.Sprintf("another autodeploy (pid %d, %s, since %s) holds the lock %s",
		h.Pid, h.Command, h.Since.Format(time.RFC3339), e.Path)
}

// afterOpen, when set, runs between the open and the lock of the file:
// the window TestLockOnADeletedFileIsRetried deletes the file in.
var afterOpen func(path string)

// afterEmptyRead, when set, runs after a refused locker read an empty or
// incomplete holder record: the window TestHolderRecordRace writes the
// record or releases the lock in.
var afterEmptyRead func(path string)

// Lock is a held lock.
type Lock struct {
	f *os.File
}

// TryAcquire takes the lock at path without waiting, and records this
// process as the holder.
func TryAcquire(path, command string, now time.Time) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		if file := config.ThroughAFile(path); file != "" {
			// No permission makes a directory of a file (issue 18, ninth pass).
			return nil, fmt.Errorf("cannot create the directory of lockFile %s: %s is a file, not a directory (set lockFile in the config to a path in a directory)", path, strconv.Quote(file))
		}
		return nil, fmt.Errorf("cannot create the directory of lockFile %s: %w (fix its permissions, or set lockFile in the config)", path, err)
	}
	for attempt := 1; ; attempt++ {
		f, err := lockFile(path)
		if err != nil {
			return nil, err
		}
		// The lock is on the file opened, and the path may name another
		// one by now: deleted (by hand, a clean-up) between the open and
		// the lock, and created again by another locker, which holds
		// that one. Only a lock on the file at the path excludes anyone;
		// flock-based libraries check the same way (stat the path, fstat
		// the descriptor, compare device and inode) and start again.
		same, err := names(path, f)
		if err != nil {
			f.Close()
			return nil, err
		}
		if !same {
			f.Close()
			if attempt == maxReopen {
				return nil, fmt.Errorf("lock %s: the file was deleted or replaced %d times while being locked; is something removing it? (fix that, or set lockFile in the config)", path, attempt)
			}
			continue
		}
		// Truncate only once the lock is ours: the holder's record must
		// survive a failed attempt.
		l := &Lock{f: f}
		l.write(now, command)
		return l, nil
	}
}

// maxReopen bounds TryAcquire's attempts on a lock file that keeps being
// replaced.
const maxReopen = 10

// lockFile opens (or creates) the file at path and takes its lock, or
// returns a *HeldError naming the holder.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NONBLOCK, 0o644)
	if errors.Is(err, syscall.EISDIR) {
		// Opened for writing, a directory is refused before regular can
		// say what it is: the fix was "fix the permissions" of its parent
		// (issue 18, ninth pass).
		return nil, notRegular(path, "a directory, not a regular file")
	}
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w (fix the permissions of %s, or set lockFile in the config)", err, filepath.Dir(path))
	}
	if err := regular(f, path); err != nil {
		f.Close()
		return nil, err
	}
	if afterOpen != nil {
		afterOpen(path)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	refused := func() (bool, error) {
		err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return true, nil
		}
		return false, err
	}
	held, err := refused()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if !held {
		return f, nil
	}
	h, named, held := readHeldRecord(path, func() bool {
		held, err := refused()
		return held || err != nil
	})
	if !held {
		return f, nil // released while its record was read: ours now
	}
	f.Close()
	return nil, &HeldError{Path: path, Holder: h, Unnamed: !named}
}

// Reading the record of a held lock may fall between the holder's lock and
// its write of the record, or between its clearing and its release (3 of
// 78 refused runs named no holder under three simultaneous runs, issue 18
// item 11). Both are a few system calls long: the record is read again,
// recordReads times recordPause apart at most, while the lock is held.
const (
	recordReads = 50
	recordPause = 2 * time.Millisecond
)

// readHeldRecord reads the holder record of a lock found held, again while
// it is incomplete and stillHeld says the lock is held. named says the
// record is complete, held whether the lock was still held at the end.
func readHeldRecord(path string, stillHeld func() bool) (h Holder, named, held bool) {
	for i := 1; ; i++ {
		b, err := os.ReadFile(path)
		if err == nil {
			h = parseHolder(b)
			// TryAcquire writes the record in one write, ending with
			// the command's newline: anything less is being written.
			if bytes.HasSuffix(b, []byte("\n")) && h.Pid != 0 && h.Command != "" {
				return h, true, true
			}
		}
		if i == recordReads {
			return h, false, true
		}
		if afterEmptyRead != nil {
			afterEmptyRead(path)
		}
		time.Sleep(recordPause)
		if !stillHeld() {
			return Holder{}, false, false
		}
	}
}

// names reports whether path still names the open file f (same device and
// inode); false when nothing is at path any more.
func names(path string, f *os.File) (bool, error) {
	var atPath, open unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &open); err != nil {
		return false, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Stat(path, &atPath); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("lock %s: %w", path, err)
	}
	return atPath.Dev == open.Dev && atPath.Ino == open.Ino, nil
}

// Locker is autodeploy's one lock, whichever kind the config chooses
// (lock.type: file or lease); every command takes it through this
// interface, as client-go's resourcelock.Interface serves leader election
// for every kind of lock.
type Locker interface {
	// Acquire takes the lock for command, or returns a *HeldError naming
	// the holder. Work done under the lock uses the Held's context, which
	// ends when the lock is lost (context.Cause is then ErrLost).
	Acquire(ctx context.Context, command string) (*Held, error)
	// Holder says who holds the lock now, without ever taking it. Not
	// held, it returns the record of a holder that stopped without
	// releasing (it crashed; the zero Holder when there is none): the
	// watch's status flags a watch that died that way.
	Holder(ctx context.Context) (Holder, bool, error)
}

// Held is a lock held by this process.
type Held struct {
	ctx     context.Context
	release func() error
	note    func(string)
}

// Note replaces the holder's command in its record with what it does now,
// for those who read it (status): a long holder such as the watch says its
// last event there. A file's record changes at once, a Lease's with its
// next renewal.
func (h *Held) Note(what string) {
	if h != nil && h.note != nil {
		h.note(what)
	}
}

// Context ends when the lock is lost or released.
func (h *Held) Context() context.Context { return h.ctx }

// Release gives the lock up.
func (h *Held) Release() error {
	if h == nil || h.release == nil {
		return nil
	}
	r := h.release
	h.release = nil
	return r()
}

// FileLocker is the lock of one host: a lock on Path (see the package
// comment). It is lost only if the file is deleted or replaced while held
// (by hand, a clean-up of /run/lock): the next locker would create a new
// file and take it, so the holder checks every Check that Path still
// names its file and, if not, ends the Held's context with ErrLost, as a
// Lease not renewed does.
type FileLocker struct {
	Path string
	Now  func() time.Time
	// Check is how often the holder checks its file; DefaultFileCheck
	// when 0.
	Check time.Duration
}

// DefaultFileCheck is how often a held file lock checks that its path
// still names its file: a stat, cheap; a run that lost its file stops
// within it.
const DefaultFileCheck = 2 * time.Second

// Acquire takes the file lock without waiting.
func (f *FileLocker) Acquire(ctx context.Context, command string) (*Held, error) {
	now := time.Now
	if f.Now != nil {
		now = f.Now
	}
	l, err := TryAcquire(f.Path, command, now())
	if err != nil {
		return nil, err
	}
	every := f.Check
	if every <= 0 {
		every = DefaultFileCheck
	}
	hctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				if same, err := names(f.Path, l.f); err == nil && !same {
					cancel(fmt.Errorf("%w: the lock file %s was deleted or replaced while held; another run may hold a new one (leave the file in place)", ErrLost, f.Path))
					return
				}
			}
		}
	}()
	since := now()
	note := func(what string) { l.write(since, what) }
	return &Held{ctx: hctx, note: note, release: func() error { cancel(nil); <-done; return l.Release() }}, nil
}

// Holder asks the kernel who holds the file lock.
func (f *FileLocker) Holder(context.Context) (Holder, bool, error) {
	held, h, err := probe(f.Path)
	return h, held, err
}

// Wait takes l for command, trying again until it succeeds, fails otherwise
// than with a *HeldError, timeout passes or ctx ends; waiting is told the
// holder once, when it has to wait.
func Wait(ctx context.Context, l Locker, command string, timeout time.Duration, waiting func(Holder)) (*Held, error) {
	deadline := time.Now().Add(timeout)
	told := false
	for {
		h, err := l.Acquire(ctx, command)
		var held *HeldError
		if !errors.As(err, &held) || !time.Now().Before(deadline) {
			return h, err
		}
		if !told && waiting != nil {
			waiting(held.Holder)
			told = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond): // file locks and Leases have no wait queue
		}
	}
}

// write replaces the holder record. One write after the truncation: a
// reader sees the whole record or an empty file (readHeldRecord).
func (l *Lock) write(since time.Time, command string) {
	if l.f == nil {
		return
	}
	content := fmt.Sprintf("%d\n%s\n%s\n", os.Getpid(), since.UTC().Format(time.RFC3339), strings.ReplaceAll(command, "\n", " "))
	if err := l.f.Truncate(0); err == nil {
		_, _ = l.f.WriteAt([]byte(content), 0)
	}
}

// Release unlocks. The file stays: removing it would race with a process
// that has just opened it.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := l.f.Close() // closing the last descriptor releases the OFD lock
	l.f = nil
	return err
}

// parseHolder reads a holder record; a zero Holder when there is none.
func parseHolder(b []byte) Holder {
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
	return h
}

// Probe reports whether some process holds the lock now, and who. It asks
// the kernel (F_OFD_GETLK) and takes nothing.
func Probe(path string) (bool, Holder) {
	held, h, _ := probe(path)
	return held, h
}

// probe is Probe with why it could not tell: only a lock file that is not
// there means no run; one it may not open (permission denied, a path
// through a file) or not ask about read as "no run in progress" in status.
func probe(path string) (bool, Holder, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return false, Holder{}, nil
	}
	if err != nil {
		return false, Holder{}, fmt.Errorf("lock file: %w", err)
	}
	defer f.Close()
	if err := regular(f, path); err != nil {
		return false, Holder{}, err
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return false, Holder{}, fmt.Errorf("lock %s: %w", path, err)
	}
	if lk.Type == unix.F_UNLCK {
		// Release empties the record: one left in an unlocked file is a
		// holder that died holding it (the kernel released its lock).
		b, _ := io.ReadAll(io.LimitReader(f, 4096))
		return false, parseHolder(b), nil
	}
	h, _, held := readHeldRecord(path, func() bool {
		lk := unix.Flock_t{Type: unix.F_WRLCK}
		return unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk) != nil || lk.Type != unix.F_UNLCK
	})
	return held, h, nil
}

// regular refuses a lock file that is not a regular file: a named pipe
// opened to read waits for a writer forever (status and doctor hung on
// one), and its holder record is read back from the file. Opened without
// blocking, it is refused here instead.
func regular(f *os.File, path string) error {
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	if m := st.Mode(); !m.IsRegular() {
		what := "not a regular file"
		switch {
		case m&fs.ModeNamedPipe != 0:
			what = "a named pipe, not a regular file"
		case m.IsDir():
			what = "a directory, not a regular file"
		case m&fs.ModeDevice != 0:
			what = "a device, not a regular file"
		}
		return notRegular(path, what)
	}
	return nil
}

// notRegular is the refusal of a lockFile that is not a regular file.
func notRegular(path, what string) error {
	return fmt.Errorf("lock file %s is %s (set lockFile in the config to a file path)", path, what)
}
