package runlog

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/hosttest"
)

// Whatever slog writes, ParseLine reads back: quotes, newlines, '=' and
// unicode in values.
func TestParseLineRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf).With("run", "r-1")
	values := []string{"plain", "with space", `with "quotes"`, "a=b", "line\nbreak", "tab\tx", "é ✓", "", "back\\slash"}
	for _, v := range values {
		l.Info("event", "svc", "api", "value", v, "duration", 1500*time.Millisecond)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != len(values) {
		t.Fatalf("%d lines for %d values", len(lines), len(values))
	}
	for i, line := range lines {
		e, err := ParseLine(line)
		if err != nil {
			t.Fatalf("ParseLine(%q): %v", line, err)
		}
		if e.Msg != "event" || e.Run != "r-1" || e.Fields["svc"] != "api" || e.Fields["value"] != values[i] || e.Fields["duration"] != "1.5s" || e.Level != "INFO" || e.Time.IsZero() {
			t.Errorf("ParseLine(%q) = %+v", line, e)
		}
	}
	for _, bad := range []string{"", "hello world", `time=2026 msg="x`, "msg=x"} {
		if _, err := ParseLine(bad); err == nil {
			t.Errorf("ParseLine(%q) accepted", bad)
		}
	}
}

// The last run is found across a rotation, in a gzipped backup too.
func TestLastRunAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "autodeploy.log")
	lj := &lumberjack.Logger{Filename: path, MaxSize: 1}
	first := New(lj).With("run", "run-1")
	first.Info("run started", "services", 2)
	first.Info("plan", "svc", "api", "action", "up-to-date")
	first.Info("service done", "svc", "web", "outcome", "deployed")
	first.Info("run finished", "duration", time.Second)

	second := New(lj).With("run", "run-2")
	second.Info("run started", "services", 2)
	second.Info("plan", "svc", "api", "action", "deploy")
	if err := lj.Rotate(); err != nil { // the run goes on in a new file
		t.Fatal(err)
	}
	second.Error("rollout failed", "svc", "api", "error", `pod api-1: container api is in "ImagePullBackOff"`)
	second.Info("service done", "svc", "api", "outcome", "rolled-back")
	second.Info("plan", "svc", "web", "action", "skip", "reason", "held")
	second.Info("run finished", "duration", 3*time.Second)
	lj.Close()

	// Gzip the backup as lumberjack's compress would.
	backups, _ := filepath.Glob(filepath.Join(dir, "autodeploy-*.log"))
	if len(backups) != 1 {
		t.Fatalf("backups = %v", backups)
	}
	raw, _ := os.ReadFile(backups[0])
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	os.WriteFile(backups[0]+".gz", gz.Bytes(), 0o600)
	os.Remove(backups[0])

	run, err := LastRun(path)
	if err != nil {
		t.Fatal(err)
	}
	if run.ID != "run-2" || run.Result != "failed" || run.Outcomes["api"] != "rolled-back" || run.Outcomes["web"] != "skipped" || run.Errors != 1 || run.Finished == nil {
		t.Fatalf("run = %+v", run)
	}
	tail, err := Tail(path, 6)
	if err != nil || len(tail) != 6 || !strings.Contains(tail[0], `msg="run started"`) || !strings.Contains(tail[5], `msg="run finished"`) {
		t.Fatalf("tail = %q, %v", tail, err)
	}
}

func TestLastRunNone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "autodeploy.log")
	if _, err := LastRun(path); err != ErrNoRun {
		t.Fatalf("missing file: %v", err)
	}
	l, err := Open(context.Background(), config.Log{File: path, MaxSizeMB: 1}, "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("held", "svc", "api")
	l.Close()
	if _, err := LastRun(path); err != ErrNoRun {
		t.Fatalf("log without a run: %v", err)
	}
}

func TestLastRunUnfinished(t *testing.T) {
	var buf bytes.Buffer
	r := New(&buf).With("run", "run-9")
	r.Info("run started")
	r.Info("rollout started", "svc", "api")
	path := filepath.Join(t.TempDir(), "autodeploy.log")
	os.WriteFile(path, buf.Bytes(), 0o600)
	run, err := LastRun(path)
	if err != nil || run.Result != "unfinished" || run.Finished != nil {
		t.Fatalf("run = %+v, %v", run, err)
	}
}

// A run stopped at its deadline says so (it was "unfinished", as if the
// process had died): issue 17, item 13.
func TestLastRunStoppedAtItsDeadline(t *testing.T) {
	var buf bytes.Buffer
	r := New(&buf).With("run", "run-10")
	r.Info("run started")
	r.Error("run stopped at its deadline: the lock is released; the next run verifies what was left unverified", "deadline", "1m50s")
	path := filepath.Join(t.TempDir(), "autodeploy.log")
	os.WriteFile(path, buf.Bytes(), 0o600)
	run, err := LastRun(path)
	if err != nil || run.Result != "deadline" || run.Finished == nil {
		t.Fatalf("run = %+v, %v", run, err)
	}
}

// writeLog writes lines to path, gzipped when path ends in .gz.
func writeLog(t *testing.T, path string, lines []string) []byte {
	t.Helper()
	data := []byte(strings.Join(lines, "\n") + "\n")
	if strings.HasSuffix(path, ".gz") {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(data)
		zw.Close()
		data = gz.Bytes()
	}
	if err := os.WriteFile(path, data, 0o640); err != nil {
		t.Fatal(err)
	}
	return data
}

// runLines returns the lines of a run of id that starts at minute min,
// plans n services and finishes unless the run goes on in a later file.
func runLines(id string, min, n int, finished bool) []string {
	var buf bytes.Buffer
	l := New(&buf).With("run", id)
	l.Info("run started", "services", n)
	for i := range n {
		l.Info("plan", "svc", fmt.Sprintf("svc-%d", i), "action", "up-to-date")
	}
	if finished {
		l.Info("run finished", "duration", time.Second)
	}
	return strings.Split(strings.TrimSpace(buf.String()), "\n")
}

// A damaged backup (a half-written .gz left by a crash, or an empty one)
// never hides the last run: what can be read is read, the rest of the log
// still counts.
func TestLastRunSurvivesDamagedBackup(t *testing.T) {
	tail := func(id string) []string {
		var buf bytes.Buffer
		l := New(&buf).With("run", id)
		l.Info("service done", "svc", "api", "outcome", "deployed")
		l.Info("run finished", "duration", time.Second)
		return strings.Split(strings.TrimSpace(buf.String()), "\n")
	}
	for _, tc := range []struct {
		name   string
		damage func(data []byte) []byte
	}{
		{"empty", func([]byte) []byte { return nil }},
		{"not gzip", func([]byte) []byte { return []byte("garbage") }},
		{"half written", func(d []byte) []byte { return d[:len(d)/2] }},
		{"bad checksum", func(d []byte) []byte { d = bytes.Clone(d); d[len(d)-5] ^= 0xff; return d }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "autodeploy.log")
			// run-2 starts in the older backup, goes on in the damaged
			// one and finishes in the current file.
			older := append(runLines("run-1", 0, 2, true), runLines("run-2", 10, 1, false)...)
			writeLog(t, filepath.Join(dir, "autodeploy-2026-01-01T00-00-00.000.log.gz"), older)
			damaged := filepath.Join(dir, "autodeploy-2026-01-01T00-10-00.000.log.gz")
			data := writeLog(t, damaged, runLines("run-2", 11, 200, false)[1:])
			os.WriteFile(damaged, tc.damage(data), 0o640)
			writeLog(t, path, tail("run-2"))

			run, err := LastRun(path)
			if err != nil {
				t.Fatal(err)
			}
			if run.ID != "run-2" || run.Finished == nil || run.Outcomes["api"] != "deployed" || run.Result != "ok" {
				t.Fatalf("run = %+v", run)
			}
			lines, err := Tail(path, 1000)
			if err != nil || len(lines) < len(older)+2 {
				t.Fatalf("Tail = %d lines, %v", len(lines), err)
			}
		})
	}
}

// Files lists the log and lumberjack-named backups only, newest first: not
// the lock, not a compression in progress, not a plain backup's .gz twin.
func TestFilesIgnoresOtherNames(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "autodeploy.log")
	for _, name := range []string{
		"autodeploy.log", "autodeploy.log.lock",
		"autodeploy-2026-01-01T00-00-00.000.log.gz",
		"autodeploy-2026-01-02T00-00-00.000.log",
		"autodeploy-2026-01-02T00-00-00.000.log.gz", // compressed, plain not yet removed
		"autodeploy-2026-01-03T00-00-00.000.log.gz.tmp",
		"autodeploy-old.log", "autodeploy-2026-01-04T00-00-00.000.txt", "other-2026-01-01T00-00-00.000.log",
	} {
		os.WriteFile(filepath.Join(dir, name), nil, 0o640)
	}
	got := Files(path)
	want := []string{path, filepath.Join(dir, "autodeploy-2026-01-02T00-00-00.000.log"), filepath.Join(dir, "autodeploy-2026-01-01T00-00-00.000.log.gz")}
	if !slices.Equal(got, want) {
		t.Fatalf("Files = %q\nwant %q", got, want)
	}
}

// A run that skipped a service needing a fix exited 7: status must not call
// it ok. One superseded by someone else's change did not fail.
func TestLastRunResult(t *testing.T) {
	for _, tt := range []struct {
		name string
		log  func(l *slog.Logger)
		want string
	}{
		{"problem skip", func(l *slog.Logger) {
			l.Info("plan", "svc", "ghost", "action", "skip", "reason", "Deployment apps/ghost not found")
			l.Warn("skipped", "svc", "ghost", "reason", "Deployment apps/ghost not found")
		}, "failed"},
		{"held", func(l *slog.Logger) {
			l.Info("plan", "svc", "api", "action", "skip", "reason", "held")
		}, "ok"},
		{"superseded", func(l *slog.Logger) {
			l.Info("service done", "svc", "api", "outcome", "superseded")
		}, "ok"},
		{"unverified", func(l *slog.Logger) {
			l.Info("service done", "svc", "api", "outcome", "unverified")
		}, "failed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := New(&buf).With("run", "r1")
			l.Info("run started")
			tt.log(l)
			l.Info("run finished")
			path := filepath.Join(t.TempDir(), "autodeploy.log")
			os.WriteFile(path, buf.Bytes(), 0o600)
			run, err := LastRun(path)
			if err != nil || run.Result != tt.want {
				t.Fatalf("run = %+v, %v; want result %s", run, err, tt.want)
			}
		})
	}
}

// The run's warnings are kept as text for status (the first few).
func TestLastRunWarningMessages(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf).With("run", "r1")
	l.Info("run started")
	for i := range 7 {
		l.Warn("reconcile", "kind", "ImageRepository", "object", fmt.Sprintf("flux-system/r%d", i), "problem", "no answer to the reconcile request")
	}
	l.Info("run finished")
	path := filepath.Join(t.TempDir(), "autodeploy.log")
	os.WriteFile(path, buf.Bytes(), 0o600)
	run, err := LastRun(path)
	if err != nil {
		t.Fatal(err)
	}
	if run.Warnings != 7 || len(run.WarningMessages) != maxWarningMessages ||
		run.WarningMessages[0] != "reconcile kind=ImageRepository object=flux-system/r0 problem=no answer to the reconcile request" {
		t.Fatalf("warnings %d, messages %q", run.Warnings, run.WarningMessages)
	}
}

// A named pipe named as a backup blocked status and history in their read
// of the log forever, SIGTERM unheard, and so did the log itself turned
// into one after the config was read (issue 18, fourth pass): what is not
// a regular file is not a backup, and the log is opened without blocking.
func TestReadingPastWhatIsNotAFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "autodeploy.log")
	if err := os.WriteFile(path, []byte(`time=2026-12-03T05:00:00.000Z level=INFO msg="log opened" run=a pid=1 cmd=hold`+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	fifo := hosttest.Mkfifo(t, filepath.Join(dir, "autodeploy-2026-12-01T00-00-00.000.log"))
	if files := Files(path); slices.Contains(files, fifo) {
		t.Errorf("Files = %v, lists the named pipe", files)
	}
	hosttest.Returns(t, "LastRun beside a named pipe", func() {
		if _, err := LastRun(path); !errors.Is(err, ErrNoRun) {
			t.Errorf("LastRun = %v, want ErrNoRun", err)
		}
	})
	hosttest.Returns(t, "Tail of a named pipe", func() {
		if _, err := Tail(fifo, 10); err == nil || !strings.Contains(err.Error(), "is a named pipe, not a regular file") {
			t.Errorf("Tail(named pipe) = %v, want it refused", err)
		}
	})
}
