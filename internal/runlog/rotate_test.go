package runlog

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/hosttest"
)

// smallFiles makes one log.maxSizeMB one kilobyte for the test, so that a
// few hundred lines rotate many times.
func smallFiles(t *testing.T) {
	t.Helper()
	old := sizeUnit
	sizeUnit = 1024
	t.Cleanup(func() { sizeUnit = old })
}

// pad makes lines about 150 bytes long, like a real rollout line.
var pad = strings.Repeat("x", 80)

// helperEnv tells TestHelperProcess what to do, as fields separated by
// "|": "write|path|name|lines|bytes per maxSizeMB" or "fsize|path".
const helperEnv = "RUNLOG_TEST_HELPER"

// TestHelperProcess is not a test: other tests run the test binary again
// with helperEnv set, to get a separate OS process.
//
// write: open the log, wait until standard input is closed (the parent's
// "go", so that both writers write at the same time), write numbered lines
// and close the log, like a cron run and a hand-run rollback.
//
// fsize: limit the size of files this process writes to the size of the
// log (RLIMIT_FSIZE), then open the log. Like a full file system, and
// unlike /dev/full, the limit lets a write of 0 bytes succeed and fails a
// write of a line.
func TestHelperProcess(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("only run by other tests, in a process of their own")
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	f := strings.Split(spec, "|")
	switch f[0] {
	case "write":
		n, _ := strconv.Atoi(f[3])
		sizeUnit, _ = strconv.ParseInt(f[4], 10, 64)
		l, err := Open(context.Background(), config.Log{File: f[1], MaxSizeMB: 8, Compress: true}, "run-"+f[2], nil)
		if err != nil {
			fail(err)
		}
		if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
			fail(err)
		}
		for i := range n {
			l.Info("line", "proc", f[2], "seq", i, "pad", pad)
		}
		if err := l.Close(); err != nil {
			fail(err)
		}
	case "fsize":
		st, err := os.Stat(f[1])
		if err != nil {
			fail(err)
		}
		lim := syscall.Rlimit{Cur: uint64(st.Size()), Max: uint64(st.Size())}
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
			fail(err)
		}
		l, err := Open(context.Background(), config.Log{File: f[1], MaxSizeMB: 1}, "r1", nil)
		if err == nil {
			l.Close()
			fail(errors.New("Open succeeded"))
		}
		fmt.Println(err)
	}
	os.Exit(0)
}

// helper runs TestHelperProcess with spec, its output to out.
func helper(spec string, out io.Writer) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+spec)
	cmd.Stdout, cmd.Stderr = out, out
	return cmd
}

// Two processes writing and rotating the same log (compressed backups)
// lose no line and duplicate none; every backup is complete once both
// have closed the log.
func TestProcessesShareTheLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "autodeploy.log")
	const n = 1500 // ~220 KB each: about 50 rotations of 8 KB files
	procs := []string{"a", "b"}
	var cmds []*exec.Cmd
	var gos []io.Closer
	outs := make([]*bytes.Buffer, len(procs))
	for i, p := range procs {
		outs[i] = &bytes.Buffer{}
		cmd := helper(fmt.Sprintf("write|%s|%s|%d|%d", path, p, n, 1024), outs[i])
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, gos = append(cmds, cmd), append(gos, stdin)
	}
	for _, g := range gos {
		g.Close()
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer %s: %v\n%s", procs[i], err, outs[i])
		}
	}

	files := logFiles(t, dir)
	if len(files) < 10 {
		t.Fatalf("files = %v, want many rotations", files)
	}
	if got := Files(path); len(got) != len(files) {
		t.Errorf("Files lists %d files, the directory has %d: %v", len(got), len(files), got)
	}
	seen := map[string]int{}
	for _, f := range files {
		if f != path && !strings.HasSuffix(f, ".gz") {
			t.Errorf("backup %s left uncompressed after Close", f)
		}
		for _, line := range readStrict(t, f) {
			e, err := ParseLine(line)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if e.Msg == "line" {
				seen[e.Fields["proc"]+"/"+e.Fields["seq"]]++
			}
		}
	}
	for _, p := range procs {
		for i := range n {
			if c := seen[fmt.Sprintf("%s/%d", p, i)]; c != 1 {
				t.Fatalf("line %d of writer %s found %d times, want once", i, p, c)
			}
		}
	}
}

// logFiles lists the log files in dir as they are on disk, without Files:
// everything but the lock, which must not be anything else.
func logFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		switch name := e.Name(); {
		case name == "autodeploy.log.lock":
		case name == "autodeploy.log", strings.HasPrefix(name, "autodeploy-") && (strings.HasSuffix(name, ".log") || strings.HasSuffix(name, ".log.gz")):
			out = append(out, filepath.Join(dir, name))
		default:
			t.Errorf("unexpected file %s in the log directory", name)
		}
	}
	return out
}

// readStrict reads a plain or gzipped file and fails the test on any
// error, a truncated gzip stream included.
func readStrict(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		r = zr
	}
	var lines []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return lines
}

// A log kept open across another writer's rotation writes to the new file,
// not to the backup it had open.
func TestWriteFollowsAnotherWritersRotation(t *testing.T) {
	smallFiles(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "autodeploy.log")
	cfg := config.Log{File: path, MaxSizeMB: 1}
	a, err := Open(context.Background(), cfg, "run-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(context.Background(), cfg, "run-b", nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Info("before")
	for i := range 20 { // 3 KB: b rotates
		b.Info("filler", "seq", i, "pad", pad)
	}
	b.Close()
	a.Info("after")
	a.Close()
	if len(logFiles(t, dir)) < 3 {
		t.Fatalf("files = %v, want rotations", logFiles(t, dir))
	}
	current := readStrict(t, path)
	if len(current) == 0 || !strings.Contains(current[len(current)-1], `msg=after run=run-a`) {
		t.Fatalf("last line of the current file = %q, want a's line written after b's rotation", current)
	}
}

// Close returns once every backup is compressed: a process that exits right
// after it leaves no plain backup and no partial .gz.
func TestCloseWaitsForCompression(t *testing.T) {
	smallFiles(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "autodeploy.log")
	l, err := Open(context.Background(), config.Log{File: path, MaxSizeMB: 2, MaxBackups: 3, Compress: true}, "r1", nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := range n {
		l.Info("line", "seq", i, "pad", pad)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files := logFiles(t, dir)
	if len(files) != 4 {
		t.Fatalf("files = %v, want the current file and maxBackups (3) backups", files)
	}
	listed := Files(path) // newest first
	if len(listed) != len(files) {
		t.Fatalf("Files = %v, the directory has %v", listed, files)
	}
	last := -1
	for i := len(listed) - 1; i >= 0; i-- {
		f := listed[i]
		if f != path && !strings.HasSuffix(f, ".gz") {
			t.Fatalf("backup %s not compressed after Close", f)
		}
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %v, %v; want 0640", f, st.Mode().Perm(), err)
		}
		for _, line := range readStrict(t, f) {
			e, err := ParseLine(line)
			if err != nil || e.Msg != "line" {
				continue
			}
			seq, _ := strconv.Atoi(e.Fields["seq"])
			if last >= 0 && seq != last+1 {
				t.Fatalf("line %d follows line %d", seq, last)
			}
			last = seq
		}
	}
	if last != n-1 {
		t.Fatalf("last line = %d, want %d", last, n-1)
	}
}

// log.file naming a directory is refused; the directory is left alone
// (lumberjack used to rename it as a backup).
func TestOpenRefusesDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	if err := os.MkdirAll(filepath.Join(dir, "keep"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), config.Log{File: dir, MaxSizeMB: 1}, "r1", nil)
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "directory") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Open(directory) = %v, want a one-line refusal naming it", err)
	}
	if st, err := os.Stat(filepath.Join(dir, "keep")); err != nil || !st.IsDir() {
		t.Fatalf("the directory was moved: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(dir)); len(entries) != 1 {
		t.Fatalf("Open left files next to the directory: %v", entries)
	}
}

// log.file must be a regular file, or a symlink to one (issue 18, item 8):
// a FIFO blocked the first write until a reader came, forever under cron
// and deaf to SIGTERM; a device is not a log that rotates or that status
// can read back. Each is refused at Open, with the reason, and promptly
// (the old code never returned from the FIFO's open: the generous
// deadline turns that hang into a failure).
func TestOpenRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o640); err != nil {
		t.Fatal(err)
	}
	link := func(name, target string) string {
		p := filepath.Join(dir, name)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct{ name, file, want string }{
		{"a FIFO", fifo, "is a named pipe (FIFO)"},
		{"a symlink to a FIFO", link("to-fifo.log", fifo), "is a named pipe (FIFO)"},
		{"a character device", "/dev/full", "is a character device"},
		{"a symlink to a device", link("to-null.log", "/dev/null"), "is a character device"},
		{"a dangling symlink", link("dangling.log", filepath.Join(dir, "none", "x.log")), "a symlink to " + strconv.Quote(filepath.Join(dir, "none", "x.log")) + ", which does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				l, err := Open(context.Background(), config.Log{File: tt.file, MaxSizeMB: 1}, "r1", nil)
				if err == nil {
					l.Close()
				}
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("Open(%s) still blocked after 20s", tt.file)
			}
			if err == nil || !strings.Contains(err.Error(), tt.file) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Open(%s) = %v, want a one-line refusal naming it and saying %q", tt.file, err, tt.want)
			}
		})
	}
}

// A symlink to a file is a log: rotation renames the file it points to,
// keeps its backups beside it, and leaves the link pointing at the new
// file (issue 18, item 8: the link itself was renamed as the backup and
// a regular file created in its place, leaving the target orphaned).
// status finds every line through the link.
func TestRotationKeepsTheSymlink(t *testing.T) {
	smallFiles(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "data", "real.log")
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(target, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "etc", "autodeploy.log")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	l, err := Open(context.Background(), config.Log{File: path, MaxSizeMB: 2, Compress: true}, "r1", nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100 // about 15 kB: several rotations of 2 kB
	for i := range n {
		l.Info("line", "seq", i, "pad", pad)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.Readlink(path); err != nil || got != target {
		t.Fatalf("log.file after rotation: Readlink = %q, %v; want the symlink to %s", got, err, target)
	}
	backups, _ := filepath.Glob(filepath.Join(dir, "data", "real-*.log.gz"))
	if len(backups) < 2 {
		t.Fatalf("backups beside the target: %v, want several", backups)
	}
	if others, _ := filepath.Glob(filepath.Join(dir, "etc", "autodeploy-*")); len(others) > 0 {
		t.Fatalf("backups beside the link: %v", others)
	}
	var all []string
	for _, f := range Files(path) {
		lines, err := readLines(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		all = append(all, lines...)
	}
	seen := 0
	for _, line := range all {
		if strings.Contains(line, `msg=line`) {
			seen++
		}
	}
	if seen != n {
		t.Fatalf("%d lines through the link's Files, want %d", seen, n)
	}
}

// A log that can take 0 bytes but not a line, as on a full file system,
// refuses the run: Open writes a real first line.
func TestOpenRefusesLogThatTakesNoLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "autodeploy.log")
	if err := os.WriteFile(path, []byte("time=2026-01-01T00:00:00.000Z level=INFO msg=x\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := helper("fsize|"+path, &out).Run(); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if msg := out.String(); !strings.Contains(msg, path) || !strings.Contains(msg, "file too large") {
		t.Fatalf("Open = %q, want a refusal naming the file and the cause", msg)
	}
}

// A process holding <log.file>.lock and never letting go (one stopped, or
// blocked as a named pipe backup blocked the compression; flock needs no
// write access, so any user who may read the lock can take it) froze every
// later command in its first log line, SIGTERM unheard: timeout(1) sent
// it and waited for ever (issue 18, fourth pass). The wait is bounded: Open
// refuses, naming the lock, and a later line is counted lost.
func TestLogLockHeldByAnother(t *testing.T) {
	defer func(d time.Duration) { lockWait = d }(lockWait)
	lockWait = 50 * time.Millisecond // the bound, not a measure: any holder outlasts it here
	dir := t.TempDir()
	cfg := config.Log{File: filepath.Join(dir, "autodeploy.log"), MaxSizeMB: 1}
	holdLock := func() func() {
		f, err := os.OpenFile(cfg.File+".lock", os.O_RDONLY|os.O_CREATE, 0o640)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		return func() { f.Close() }
	}
	release := holdLock()
	hosttest.Returns(t, "Open of a log whose lock another holds", func() {
		if _, err := Open(context.Background(), cfg, "r-1", io.Discard); err == nil || !strings.Contains(err.Error(), cfg.File+".lock is held by another process") {
			t.Errorf("Open = %v, want it refused naming the lock", err)
		}
	})
	release()
	l, err := Open(context.Background(), cfg, "r-2", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	release = holdLock()
	defer release()
	hosttest.Returns(t, "a line of a log whose lock another holds", func() { l.Info("held elsewhere") })
	if err := l.Lost(); err == nil || !strings.Contains(err.Error(), "held by another process") {
		t.Errorf("Lost = %v, want the line lost to the held lock", err)
	}
}

// The wait for a log's lock another process holds (up to lockWait, a
// minute) did not hear SIGTERM or SIGINT: a hold or a run asked to stop
// went on waiting, the command's context unseen (issue 18, fifth pass).
// A done context ends the wait, Open refusing with the context's error (so
// the command exits as interrupted) or the line lost; a free lock is still
// taken once the context is done, so the lines a command writes as it
// stops are kept.
func TestLogLockWaitHearsTheContext(t *testing.T) {
	defer func(d time.Duration) { lockWait = d }(lockWait)
	lockWait = time.Hour // only the context can end the wait
	cfg := config.Log{File: filepath.Join(t.TempDir(), "autodeploy.log"), MaxSizeMB: 1}
	done, cancel := context.WithCancel(context.Background())
	cancel()

	l, err := Open(done, cfg, "r-free", io.Discard)
	if err != nil {
		t.Fatalf("Open with a free lock and a done context = %v, want the log opened", err)
	}
	l.Info("stopping")
	if err := l.Lost(); err != nil {
		t.Errorf("a line under a free lock and a done context was lost: %v", err)
	}

	f, err := os.OpenFile(cfg.File+".lock", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	hosttest.Returns(t, "Open of a log whose lock another holds, its context done", func() {
		if _, err := Open(done, cfg, "r-held", io.Discard); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), cfg.File+".lock") {
			t.Errorf("Open = %v, want it refused with the context's error, naming the lock", err)
		}
	})
	hosttest.Returns(t, "a line of a log whose lock another holds, its context done", func() { l.Info("held elsewhere") })
	if err := l.Lost(); !errors.Is(err, context.Canceled) {
		t.Errorf("Lost = %v, want the line lost to the done context", err)
	}
	l.Close()
}
