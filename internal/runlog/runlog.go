// Package runlog writes autodeploy's log file: one logfmt line per event
// (time, level, msg, run id, service, images, durations), rotated at a
// size. logfmt is what slog's TextHandler writes: a person can read it,
// and `grep run=...` or any logfmt parser can take it apart.
//
// Several processes write the same file: every cron run (skipped runs
// too), and rollback, hold and resume run by hand, possibly during a run.
// lumberjack, used before, supports one writing process: it keeps the
// file open (another process's rotation left it writing into the renamed
// backup, which a third one could compress and delete under it), counts
// the size itself, and compresses backups in a goroutine that races with
// other processes and is cut short when the process exits, leaving a
// partial .gz. So the file is written here (rotate.go) with one design
// that is simple to reason about: every line is written holding an
// flock(2) on a sidecar file, <log.file>.lock, and the rotation and the
// compression it triggers happen under that same lock, before Write
// returns. The log is opened by name for each line (O_APPEND) and closed
// after it, so no process ever writes to a file another one renamed. The
// cost, a few system calls per line and a pause of the writer that rotates
// while it compresses (a tenth of a second for the default 10 MB), is
// nothing for a tool that writes a few hundred lines every few minutes.
// Backups keep lumberjack's names, <name>-<UTC time>.<ext>[.gz], so the
// history written by earlier versions reads as one.
package runlog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/ui"

	"github.com/autodeploy-dev/autodeploy/internal/config"
)

// Log is an open log file.
type Log struct {
	*slog.Logger
	w   io.WriteCloser
	rec *recorder
}

// recorder remembers the lines its writer failed to write. slog's Logger
// drops the error of every write, so a log whose file system filled up or
// turned read-only during a run lost the rest of the run silently, and the
// run exited 0 (issue 18, item 2): Lost tells the command at its end.
type recorder struct {
	w    io.Writer
	file string

	mu    sync.Mutex
	lost  int
	first error
	at    time.Time
}

func (r *recorder) Write(p []byte) (int, error) {
	n, err := r.w.Write(p)
	if err != nil {
		r.mu.Lock()
		if r.lost == 0 {
			r.first, r.at = err, time.Now()
		}
		r.lost++
		r.mu.Unlock()
	}
	return n, err
}

// LostError says that lines of this process could not be written to the
// log.
type LostError struct {
	File  string
	Lines int
	At    time.Time
	Err   error // the first failure
}

func (e *LostError) Error() string {
	return fmt.Sprintf("%s could not be written to the log file %s, from %s on: %v", ui.Count(e.Lines, "line", "lines"), e.File, e.At.UTC().Format(timeFormat), e.Err)
}

func (e *LostError) Unwrap() error { return e.Err }

// Lost returns a *LostError when some line since Open could not be
// written, nil otherwise.
func (l *Log) Lost() error {
	r := l.rec
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lost == 0 {
		return nil
	}
	err := r.first
	// The message names the file already.
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == r.file {
		err = pe.Err
	}
	return &LostError{File: r.file, Lines: r.lost, At: r.at, Err: err}
}

// Open opens (creating as needed, mode 0640) the log file of cfg and
// writes its first line, msg="log opened" with the process id and attrs
// (such as "cmd", "rollback"), and returns an error if that line could not
// be written: a deploy that would leave no trace is not allowed, and only
// a real write tells (an empty one succeeds on a full disk). log.file "-"
// writes to stdout instead, without rotation. ctx is the command's: once it
// is done, a write stops waiting for the log's lock another process holds
// (the line is lost, or Open refuses), as a command stops on SIGTERM; a
// lock that is free is still taken, so the lines a command writes as it
// stops are kept.
func Open(ctx context.Context, cfg config.Log, runID string, stdout io.Writer, attrs ...any) (*Log, error) {
	if cfg.File == config.LogToStdout {
		rec := &recorder{w: stdout, file: "standard output"}
		l := &Log{Logger: New(rec).With("run", runID), w: nopCloser{stdout}, rec: rec}
		if err := l.first(attrs); err != nil {
			return nil, fmt.Errorf("cannot write the log to standard output: %w (or set log.file in the config to a file)", err)
		}
		return l, nil
	}
	// config.Load refuses these too; checked again because the file may
	// have changed since, and a Log may be built by hand. A FIFO must be
	// refused before any open: opening it to write waits for a reader.
	if why := config.LogFileProblem(cfg.File); why != "" {
		return nil, fmt.Errorf("log.file %s %s", strconv.Quote(cfg.File), why)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.File), 0o755); err != nil {
		return nil, fmt.Errorf("cannot create the log directory of %s: %w (fix the permissions or set log.file in the config)", cfg.File, err)
	}
	w, err := openRotating(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("log file %s: %w", cfg.File, err)
	}
	rec := &recorder{w: w, file: cfg.File}
	l := &Log{Logger: New(rec).With("run", runID), w: w, rec: rec}
	if err := l.first(attrs); err != nil {
		w.Close()
		// The message names the file already.
		var pe *fs.PathError
		if errors.As(err, &pe) && pe.Path == cfg.File {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot write the log file %s: %w (free space on its file system or fix its permissions, or set log.file in the config)", cfg.File, err)
	}
	return l, nil
}

// Writable says whether Open could write the log of cfg, without writing
// to the log: what Open refuses before opening (LogFileProblem), and a
// real write of a line, synced, to a file beside it (then removed), since
// an empty file is still created on a full file system (issue 18, review
// item 3). doctor's log check.
func Writable(cfg config.Log) error {
	if cfg.File == config.LogToStdout {
		return nil
	}
	if why := config.LogFileProblem(cfg.File); why != "" {
		return fmt.Errorf("log.file %s %s", strconv.Quote(cfg.File), why)
	}
	// The nearest directory there: Open creates the rest in it.
	dir := filepath.Dir(cfg.File)
	for {
		if _, err := os.Stat(dir); err == nil || filepath.Dir(dir) == dir {
			break
		}
		dir = filepath.Dir(dir)
	}
	f, err := os.CreateTemp(dir, ".autodeploy-doctor-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("cannot write the log file %s: %w (free space on its file system or fix its permissions, or set log.file in the config)", cfg.File, err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write([]byte(`time=2006-01-02T15:04:05.000Z level=INFO msg="log opened" run=doctor-probe` + "\n"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		var fh *os.File
		if fh, err = os.OpenFile(cfg.File, os.O_WRONLY|os.O_APPEND, 0); err == nil {
			fh.Close()
		} else if errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
	}
	if err == nil {
		// The lock every line is written under, opened as Open opens it
		// (one that is a directory was "✔ writable" while every run
		// refused; issue 18, fourth pass); one not there yet is created
		// by Open, in the directory just written to.
		if err = lockOpens(lockPath(cfg.File)); err != nil {
			return fmt.Errorf("log file %s: %w", cfg.File, err)
		}
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("cannot write the log file %s: %w (free space on its file system or fix its permissions, or set log.file in the config)", cfg.File, err)
	}
	return nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// first writes the first line through the handler, which, unlike the
// Logger's methods, returns the error of the write.
func (l *Log) first(attrs []any) error {
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "log opened", 0)
	r.Add("pid", os.Getpid())
	r.Add(attrs...)
	return l.Handler().Handle(context.Background(), r)
}

// sizeUnit is the number of bytes in one log.maxSizeMB; tests lower it to
// rotate every few kilobytes.
var sizeUnit int64 = 1 << 20

const timeFormat = "2006-01-02T15:04:05.000Z"

// New returns a logfmt logger on w, with times in UTC to the millisecond.
func New(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.String(slog.TimeKey, a.Value.Time().UTC().Format(timeFormat))
			}
			if a.Value.Kind() == slog.KindDuration {
				return slog.String(a.Key, a.Value.Duration().Round(time.Millisecond).String())
			}
			return a
		},
	}))
}

// Close closes the log. Nothing is buffered and no compression runs in the
// background, so a process may exit as soon as Close returns; the error is
// that of a failed compression or removal of an old backup, if any.
func (l *Log) Close() error { return l.w.Close() }

// ForRun is a logger on the same file for another run id: a long-lived
// process (the watch) logs each of its actions as a run of its own, so
// that `grep run=...`, LastRun and history read them as they read a run.
// Its lines count in Lost like the Log's.
func (l *Log) ForRun(runID string, attrs ...any) *slog.Logger {
	return New(l.rec).With(append([]any{"run", runID}, attrs...)...)
}

// Discard is a logger for commands that write no log file.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// NewRunID returns a short id that groups one run's lines: the start time
// (sortable) and a random suffix (unique across hosts).
func NewRunID(now time.Time) string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return now.UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b)
}
