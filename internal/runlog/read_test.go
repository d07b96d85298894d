package runlog

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/autodeploy-dev/autodeploy/internal/config"
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
	l, err := Open(config.Log{File: path, MaxSizeMB: 1}, "x", nil)
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
