package runlog

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/config"
)

// The log rotates at its size limit and no event is lost across files.
func TestRotationKeepsEveryEvent(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Log{File: filepath.Join(dir, "autodeploy.log"), MaxSizeMB: 1, MaxBackups: 0, MaxAgeDays: 0, Compress: false}
	l, err := Open(context.Background(), cfg, "r1", nil)
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
	_, err := Open(context.Background(), config.Log{File: path, MaxSizeMB: 1}, "r1", nil)
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
	l, err := Open(context.Background(), config.Log{File: path, MaxSizeMB: 1}, "r1", nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("x")
	l.Close()
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("mode = %v, %v; want 0640", st.Mode().Perm(), err)
	}
	var out strings.Builder
	l, err = Open(context.Background(), config.Log{File: config.LogToStdout}, "r2", &out)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("to stdout")
	l.Close()
	if !strings.Contains(out.String(), `msg="to stdout" run=r2`) {
		t.Fatalf("stdout = %q", out.String())
	}
}

// inMountNamespace runs the calling test again in a private mount
// namespace (unshare --mount, as root), where it may mount a tmpfs; it
// reports whether the caller is that second run. The first run skips with
// the reason when it cannot, else waits for the second and fails with it.
func inMountNamespace(t *testing.T) bool {
	t.Helper()
	const env = "RUNLOG_TEST_MOUNT_NS"
	if os.Getenv(env) == t.Name() {
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a private mount namespace (unshare --mount) to fill and remount a tmpfs")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare(1) for a private mount namespace: " + err.Error())
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", os.Args[0], "-test.run=^"+strings.Split(t.Name(), "/")[0]+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in a private mount namespace: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("the test did not run in the mount namespace:\n%s", out)
	}
	return false
}

// A log whose file system fills up, or turns read-only, during a run
// (issue 18, item 2): the run's later lines are lost, and the writer
// remembers it for the end of the run (Log.Lost), naming the file, the
// count and the cause; a line cut short by a full file system is removed
// rather than left half written. Reproduced on a real tmpfs of 12 KiB in
// a private mount namespace, as reported.
func TestWriteFailuresAreRemembered(t *testing.T) {
	if !inMountNamespace(t) {
		return
	}
	tests := []struct {
		name   string
		fail   func(t *testing.T, dir string) // after the first lines
		before int                            // lines written before fail
		cause  string
	}{
		{name: "file system full", before: 0, cause: "no space left on device"},
		{name: "turned read-only", before: 5, cause: "read-only file system", fail: func(t *testing.T, dir string) {
			// A read-only bind mount of the directory over itself: a
			// plain remount,ro is refused while the log's lock is open
			// for writing (EBUSY).
			for _, args := range [][]string{{"--bind", dir, dir}, {"-o", "remount,bind,ro", dir}} {
				if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
					t.Fatalf("mount %v: %v: %s", args, err, out)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", dir).CombinedOutput(); err != nil {
				t.Fatalf("mount tmpfs: %v: %s", err, out)
			}
			t.Cleanup(func() {
				for exec.Command("umount", dir).Run() == nil { // stacked mounts
				}
			})
			path := filepath.Join(dir, "autodeploy.log")
			l, err := Open(context.Background(), config.Log{File: path, MaxSizeMB: 1}, "r1", nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Lost(); err != nil {
				t.Fatalf("Lost before any failure = %v", err)
			}
			for i := range tt.before {
				l.Info("line", "seq", i, "pad", pad)
			}
			if tt.fail != nil {
				tt.fail(t, dir)
			}
			// 200 lines of ~150 bytes: 30 kB, more than the 12 KiB.
			for i := tt.before; i < 200; i++ {
				l.Info("line", "seq", i, "pad", pad)
			}
			l.Close()
			err = l.Lost()
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.cause) || !strings.Contains(err.Error(), "lines") {
				t.Fatalf("Lost = %v, want the file, the count of lines and %q", err, tt.cause)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(data) == 0 || data[len(data)-1] != '\n' {
				t.Fatalf("the log ends in a line cut short: %q", data[max(0, len(data)-80):])
			}
			for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
				if _, err := ParseLine(line); err != nil {
					t.Fatalf("line %q: %v", line, err)
				}
			}
		})
	}
}

// Writable, doctor's log check, refuses what Open refuses: on a full file
// system an empty file is still created, so doctor said "is writable"
// while run, hold and rollback refused with "no space left on device"
// (issue 18, review item 3). A real 8 KiB tmpfs, filled, in a private
// mount namespace.
func TestWritableAsOpen(t *testing.T) {
	if !inMountNamespace(t) {
		return
	}
	for _, tt := range []struct {
		name  string
		setup func(t *testing.T, dir, log string)
		cause string // "" when writable
	}{
		{name: "writable, log absent"},
		{name: "writable, log present", setup: func(t *testing.T, dir, log string) { os.WriteFile(log, []byte("x\n"), 0o640) }},
		{name: "full, log absent", setup: func(t *testing.T, dir, log string) { fill(t, dir) }, cause: "no space left on device"},
		{name: "full, log present", setup: func(t *testing.T, dir, log string) { os.WriteFile(log, nil, 0o640); fill(t, dir) }, cause: "no space left on device"},
		{name: "read-only", setup: func(t *testing.T, dir, log string) {
			for _, args := range [][]string{{"--bind", dir, dir}, {"-o", "remount,bind,ro", dir}} {
				if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
					t.Fatalf("mount %v: %v: %s", args, err, out)
				}
			}
		}, cause: "read-only file system"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", dir).CombinedOutput(); err != nil {
				t.Fatalf("mount tmpfs: %v: %s", err, out)
			}
			t.Cleanup(func() {
				for exec.Command("umount", dir).Run() == nil {
				}
			})
			log := filepath.Join(dir, "autodeploy.log")
			if tt.setup != nil {
				tt.setup(t, dir, log)
			}
			cfg := config.Log{File: log, MaxSizeMB: 1}
			werr := Writable(cfg)
			if tt.cause == "" {
				if werr != nil {
					t.Fatalf("Writable = %v, want nil", werr)
				}
			} else if werr == nil || !strings.Contains(werr.Error(), tt.cause) || !strings.Contains(werr.Error(), log) {
				t.Fatalf("Writable = %v, want the file and %q", werr, tt.cause)
			}
			l, oerr := Open(context.Background(), cfg, "r1", nil)
			if oerr == nil {
				l.Close()
			}
			if (werr == nil) != (oerr == nil) {
				t.Fatalf("Writable = %v but Open = %v", werr, oerr)
			}
			if ents, _ := os.ReadDir(dir); tt.cause != "" {
				for _, e := range ents {
					if strings.HasPrefix(e.Name(), ".autodeploy-") {
						t.Errorf("Writable left %s", e.Name())
					}
				}
			}
		})
	}
}

// fill writes to dir until its file system is full.
func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 512)
	for {
		if _, err := f.Write(buf); err != nil {
			return
		}
	}
}

// doctor said "✔ log ... is writable" for a log whose lock,
// <log.file>.lock, is a directory, where every run then refuses to deploy
// ("cannot open the lock of the log file"; issue 18, fourth pass):
// Writable opens the lock as Open does.
func TestWritableOpensTheLock(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Log{File: filepath.Join(dir, "autodeploy.log")}
	if err := os.Mkdir(cfg.File+".lock", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), cfg, "r-1", io.Discard); err == nil {
		t.Fatal("Open accepted a lock that is a directory")
	}
	if err := Writable(cfg); err == nil || !strings.Contains(err.Error(), cfg.File+".lock") {
		t.Errorf("Writable = %v, want it to fail naming the lock", err)
	}
	if _, err := os.Stat(cfg.File + ".lock"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(cfg.File + ".lock"); err != nil {
		t.Fatal(err)
	}
	if err := Writable(cfg); err != nil {
		t.Errorf("Writable without a lock yet = %v, want nil (Open creates it)", err)
	}
	if _, err := os.Stat(cfg.File + ".lock"); err == nil {
		t.Error("Writable created the lock: doctor changes nothing")
	}
}

// "1 lines could not be written": the count says its noun right (issue 18,
// fifth pass).
func TestLostErrorCount(t *testing.T) {
	for n, want := range map[int]string{1: "1 line could not be written", 2: "2 lines could not be written"} {
		e := &LostError{File: "/var/log/autodeploy.log", Lines: n, At: time.Unix(0, 0), Err: syscall.ENOSPC}
		if !strings.HasPrefix(e.Error(), want) {
			t.Errorf("LostError with %d: %q, want it to start %q", n, e.Error(), want)
		}
	}
}
