package runlog

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/config"
)

// The log rotates at its size limit and no event is lost across files.
func TestRotationKeepsEveryEvent(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Log{File: filepath.Join(dir, "autodeploy.log"), MaxSizeMB: 1, MaxBackups: 0, MaxAgeDays: 0, Compress: false}
	l, err := Open(cfg, "r1", nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 15000 // ~2.7 MB of lines: at least two rotations
	for i := range n {
		l.Info("rollout", "svc", "api-gateway", "seq", i, "image", "ghcr.io/team-mercurious/api-gateway:sha-1a2b3c4", "duration", 1500*time.Millisecond)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "autodeploy*.log"))
	if len(files) < 3 {
		t.Fatalf("files = %v, want the current file and at least two backups", files)
	}
	seen := make([]bool, n)
	opened := 0
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, `msg="log opened" run=r1 pid=`) {
				opened++
				continue
			}
			if !strings.HasPrefix(line, "time=") || !strings.Contains(line, " run=r1 ") || !strings.Contains(line, " duration=1.5s") {
				t.Fatalf("malformed line %q", line)
			}
			var seq int
			i := strings.Index(line, " seq=")
			if _, err := fmtSscan(line[i+5:], &seq); err != nil || seq < 0 || seq >= n || seen[seq] {
				t.Fatalf("bad or duplicate seq in %q", line)
			}
			seen[seq] = true
		}
		fh.Close()
	}
	for i, ok := range seen {
		if !ok {
			t.Fatalf("event %d lost", i)
		}
	}
	if opened != 1 {
		t.Fatalf("%d \"log opened\" lines, want Open's one", opened)
	}
}

func TestOpenRefusesUnwritableLog(t *testing.T) {
	dir := t.TempDir()
	// A regular file where the log directory should be: no process can
	// write there, root included (the tests may run as root).
	if err := os.WriteFile(filepath.Join(dir, "var"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "var", "autodeploy.log")
	_, err := Open(config.Log{File: path, MaxSizeMB: 1}, "r1", nil)
	if err == nil || !strings.Contains(err.Error(), "autodeploy.log") {
		t.Fatalf("Open = %v, want a refusal naming the file", err)
	}
}

func TestNewRunID(t *testing.T) {
	id := NewRunID(time.Date(2026, 11, 25, 10, 4, 5, 0, time.UTC))
	if !strings.HasPrefix(id, "20261125T100405-") || len(id) != len("20261125T100405-abcd") {
		t.Fatalf("id = %q", id)
	}
}

func fmtSscan(s string, v *int) (int, error) {
	end := strings.IndexByte(s, ' ')
	if end < 0 {
		end = len(s)
	}
	return fmt.Sscan(s[:end], v)
}

func TestOpenModeAndStdout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "autodeploy.log")
	l, err := Open(config.Log{File: path, MaxSizeMB: 1}, "r1", nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("x")
	l.Close()
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("mode = %v, %v; want 0640", st.Mode().Perm(), err)
	}
	var out strings.Builder
	l, err = Open(config.Log{File: config.LogToStdout}, "r2", &out)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("to stdout")
	l.Close()
	if !strings.Contains(out.String(), `msg="to stdout" run=r2`) {
		t.Fatalf("stdout = %q", out.String())
	}
}
