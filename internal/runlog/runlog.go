// Package runlog writes autodeploy's log file: one logfmt line per event
// (time, level, msg, run id, service, images, durations), rotated by
// lumberjack. logfmt is what slog's TextHandler writes: a person can read
// it, and `grep run=...` or any logfmt parser can take it apart.
package runlog

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/autodeploy-dev/autodeploy/internal/config"
)

// Log is an open log file.
type Log struct {
	*slog.Logger
	w io.WriteCloser
}

// Open opens (creating as needed, mode 0640) the log file of cfg and
// writes nothing yet, but makes sure the file can be written, so that a
// file that cannot be written is known before any change is made: a deploy
// that leaves no trace is not allowed. log.file "-" writes to stdout
// instead, without rotation.
func Open(cfg config.Log, runID string, stdout io.Writer) (*Log, error) {
	if cfg.File == config.LogToStdout {
		return &Log{Logger: New(stdout).With("run", runID), w: nopCloser{stdout}}, nil
	}
	if err := os.MkdirAll(filepath.Dir(cfg.File), 0o755); err != nil {
		return nil, fmt.Errorf("cannot create the log directory of %s: %w (fix the permissions or set log.file in the config)", cfg.File, err)
	}
	// lumberjack creates files 0600 and gives rotated files the mode of the
	// current one: create it first so that the group (adm) can read logs.
	if f, err := os.OpenFile(cfg.File, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640); err == nil {
		f.Close()
	}
	lj := &lumberjack.Logger{
		Filename:   cfg.File,
		MaxSize:    cfg.MaxSizeMB,
		MaxBackups: cfg.MaxBackups,
		MaxAge:     cfg.MaxAgeDays,
		Compress:   cfg.Compress,
	}
	l := &Log{Logger: New(lj).With("run", runID), w: lj}
	if err := l.check(); err != nil {
		lj.Close()
		return nil, fmt.Errorf("cannot write the log file %s: %w (fix the permissions or set log.file in the config)", cfg.File, err)
	}
	return l, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// check writes nothing visible: lumberjack opens the file on the first
// Write, so an empty write surfaces permission errors now.
func (l *Log) check() error {
	_, err := l.w.Write(nil)
	return err
}

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

// Close flushes and closes the file.
func (l *Log) Close() error { return l.w.Close() }

// Discard is a logger for commands that write no log file.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// NewRunID returns a short id that groups one run's lines: the start time
// (sortable) and a random suffix (unique across hosts).
func NewRunID(now time.Time) string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return now.UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b)
}
