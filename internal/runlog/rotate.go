package runlog

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/config"
)

// Backups are named as lumberjack named them, so that files rotated by
// earlier versions and by this one form one history:
// <name>-<UTC time>.<ext>, then .gz once compressed.
const (
	backupTimeFormat = "2006-01-02T15-04-05.000"
	gzSuffix         = ".gz"
	// tmpSuffix marks a .gz being written; it is renamed into place only
	// when complete, so a killed process leaves no partial .gz behind.
	tmpSuffix = ".tmp"
)

// lockSuffix names the file flock'd around each write and rotation.
// A sidecar rather than the log itself: the log is renamed by rotation,
// and two processes locking two different files exclude nothing.
const lockSuffix = ".lock"

// lockPath returns the lock that writers of the log at path take around
// each write. config rejects a lockFile (the runs' lock) of this name: a
// run holding it would wait for itself at its first log line.
func lockPath(path string) string { return path + lockSuffix }

// rotatingFile appends to the log and rotates it. Several processes may
// hold one open at once: each write runs under an flock of the sidecar
// lock file, opens the log by name (so a rotation done by another process
// is seen at the next write, never written past), appends, closes, and
// rotates and compresses the backups before it releases the lock.
type rotatingFile struct {
	path       string
	maxBytes   int64
	maxBackups int           // 0 keeps all
	maxAge     time.Duration // 0 keeps all
	compress   bool
	now        func() time.Time
	// ctx ends a wait for the lock (lockExclusive): the command's.
	ctx context.Context

	// mu serialises this process's goroutines: an flock excludes other
	// open files, not other users of the same one.
	mu      sync.Mutex
	lock    *os.File // nil once closed
	millErr error
}

func openRotating(ctx context.Context, cfg config.Log) (*rotatingFile, error) {
	mb := cfg.MaxSizeMB
	if mb <= 0 {
		mb = config.DefaultLogMaxSizeMB // a Log built by hand, not by config.Load
	}
	w := &rotatingFile{
		path:       cfg.File,
		maxBytes:   int64(mb) * sizeUnit,
		maxBackups: cfg.MaxBackups,
		maxAge:     time.Duration(cfg.MaxAgeDays) * 24 * time.Hour,
		compress:   cfg.Compress,
		now:        time.Now,
		ctx:        ctx,
	}
	lock, err := openLock(lockPath(cfg.File), cfg.File)
	if err != nil {
		return nil, err
	}
	w.lock = lock
	// Finish what a killed process may have left: a backup not yet
	// compressed, a partial .gz.tmp, backups past the limits.
	if err := w.locked(func() error { w.mill(); return nil }); err != nil {
		lock.Close()
		return nil, err
	}
	return w, nil
}

// openLock opens (creating as needed) the lock file. A new lock gets the
// owner of the log, so that a rollback run with sudo does not lock the
// cron user out. A process that may only read the lock still takes it:
// flock needs no write access on a local file system (it does over NFS,
// where it becomes a POSIX lock, hence read-write when possible).
func openLock(path, log string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err == nil {
		if st, err := os.Stat(log); err == nil {
			chownLike(f, st)
		}
		return f, nil
	}
	if errors.Is(err, fs.ErrExist) {
		if f, err = os.OpenFile(path, os.O_RDWR, 0); errors.Is(err, fs.ErrPermission) {
			f, err = os.Open(path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cannot open the lock of the log file: %w (fix its permissions, or remove it: it holds no data)", err)
	}
	return f, nil
}

// lockOpens says whether openLock would open the lock at path, without
// creating it: nil when it is not there yet.
func lockOpens(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	f, err := openLock(path, "")
	if err != nil {
		return err
	}
	return f.Close()
}

// locked runs fn holding the lock of the log, against this process's
// goroutines and against other processes.
func (w *rotatingFile) locked(fn func() error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lock == nil {
		return fmt.Errorf("log file %s: %w", w.path, os.ErrClosed)
	}
	if err := lockExclusive(w.ctx, w.lock); err != nil {
		return err
	}
	defer flock(w.lock, syscall.LOCK_UN)
	return fn()
}

// lockWait bounds the wait for the log's lock. A writer holds it for a
// line, or for a rotation and its compression (a tenth of a second for
// the default 10 MB); a process that never lets go (stopped, or stuck:
// a named pipe among the backups blocked the compression) froze every
// later command in a blocking flock, SIGTERM unheard, and anyone who may
// read the lock file may take it (issue 18, fourth pass). Tests lower it.
var lockWait = time.Minute

// lockExclusive takes the flock on f, waiting at most lockWait: flock(2)
// has no timeout, so it is asked without blocking until then, or until ctx
// is done.
func lockExclusive(ctx context.Context, f *os.File) error {
	deadline := time.Now().Add(lockWait)
	for {
		err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, syscall.EWOULDBLOCK):
			return fmt.Errorf("cannot lock %s: %w", f.Name(), err)
		case !time.Now().Before(deadline):
			return fmt.Errorf("%s is held by another process for more than %s: the line is not written (see who holds it: fuser %s)", f.Name(), lockWait, f.Name())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s is held by another process: the line is not written, as the command stops (see who holds it: fuser %s): %w", f.Name(), f.Name(), context.Cause(ctx))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// Write appends p, one log line, to the log, rotating first when p would
// take the file past its size; p is never split across files. The backups
// are compressed and pruned before Write returns.
func (w *rotatingFile) Write(p []byte) (n int, err error) {
	err = w.locked(func() error {
		var rotated bool
		n, rotated, err = w.append(p)
		if rotated {
			w.mill()
		}
		return err
	})
	return n, err
}

func (w *rotatingFile) append(p []byte) (n int, rotated bool, err error) {
	// Opening by name on every write is what makes another process's
	// rotation safe: a descriptor kept open would follow the renamed file.
	// A directory fails here (EISDIR) rather than being renamed.
	// O_NONBLOCK, which does nothing to a regular file, makes the open of
	// a FIFO put there since Open fail (ENXIO) instead of waiting for a
	// reader, deaf to signals.
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NONBLOCK, 0o640)
	if err != nil {
		if why := config.LogFileProblem(w.path); why != "" {
			err = fmt.Errorf("log.file %s %s", strconv.Quote(w.path), why)
		}
		return 0, false, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return 0, false, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		why := config.LogFileProblem(w.path)
		if why == "" {
			why = "is not a regular file"
		}
		return 0, false, fmt.Errorf("log.file %s %s", strconv.Quote(w.path), why)
	}
	size := st.Size()
	if size > 0 && size+int64(len(p)) > w.maxBytes {
		f.Close()
		if f, err = w.rotate(st); err != nil {
			return 0, false, err
		}
		rotated, size = true, 0
	}
	n, err = f.Write(p)
	if err != nil && n > 0 && f.Truncate(size) == nil {
		// A full file system takes the part of a line that fits its last
		// block and fails the rest (a 12 KiB tmpfs ended in "time="):
		// cut back to the last whole line, as the lock keeps any other
		// writer from appending meanwhile.
		n = 0
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, rotated, err
}

// rotate renames the log to a backup and creates a new one with the old
// one's mode and owner, and returns it open. A log.file that is a symlink
// stays one: the file it points to is renamed and created again (target).
func (w *rotatingFile) rotate(st fs.FileInfo) (*os.File, error) {
	file := target(w.path)
	backups, _, err := scanBackups(file)
	if err != nil {
		return nil, fmt.Errorf("cannot rotate %s: %w", file, err)
	}
	// Names must be unique and sort in the order of the rotations, also
	// when two rotations fall in the same millisecond or the clock steps
	// back: renaming onto an existing backup would destroy it.
	t := w.now().UTC().Truncate(time.Millisecond)
	if len(backups) > 0 && !backups[0].time.Before(t) {
		t = backups[0].time.Add(time.Millisecond)
	}
	dir, prefix, ext := backupParts(file)
	name := filepath.Join(dir, prefix+t.Format(backupTimeFormat)+ext)
	if err := os.Rename(file, name); err != nil {
		return nil, fmt.Errorf("cannot rotate %s: %w", file, err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, st.Mode().Perm())
	if err != nil {
		return nil, err
	}
	_ = f.Chmod(st.Mode().Perm()) // whatever the umask of this process
	chownLike(f, st)
	return f, nil
}

// chownLike gives f the owner of st, when this process may: as root, so
// that a file created by `sudo autodeploy rollback` stays writable by the
// user cron runs as.
func chownLike(f *os.File, st fs.FileInfo) {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		_ = f.Chown(int(s.Uid), int(s.Gid))
	}
}

// mill removes the backups past maxBackups or maxAge and compresses the
// others, like lumberjack, but synchronously under the lock: lumberjack
// compressed in a goroutine that an exiting process cut short (leaving a
// partial .gz) and that raced with other processes' rotations. Failures
// do not fail the write that triggered them (the line is written); Close
// reports the first.
func (w *rotatingFile) mill() {
	backups, temps, err := scanBackups(w.path)
	if err != nil {
		w.noteMillErr(err)
		return
	}
	for _, t := range temps {
		// Under the lock no compression is in progress: this one's
		// process died, and its plain backup is still there.
		w.noteMillErr(os.Remove(t))
	}
	var cutoff time.Time
	if w.maxAge > 0 {
		cutoff = w.now().Add(-w.maxAge)
	}
	for i, b := range backups {
		if (w.maxBackups > 0 && i >= w.maxBackups) || b.time.Before(cutoff) {
			for _, p := range b.paths() {
				w.noteMillErr(os.Remove(p))
			}
			continue
		}
		if w.compress && !b.gz {
			w.noteMillErr(compressFile(b.path))
		}
	}
}

func (w *rotatingFile) noteMillErr(err error) {
	if err != nil && !errors.Is(err, fs.ErrNotExist) && w.millErr == nil {
		w.millErr = fmt.Errorf("log backups of %s: %w", w.path, err)
	}
}

// compressFile writes src.gz through a temporary file renamed into place
// once complete and on disk, then removes src. An existing src.gz (from a
// compression interrupted before src was removed) is replaced: the plain
// file is the one known to be whole.
func compressFile(src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	tmp := src + gzSuffix + tmpSuffix
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	_ = out.Chmod(st.Mode().Perm())
	chownLike(out, st)
	zw := gzip.NewWriter(out)
	_, err = io.Copy(zw, in)
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		// On disk before the rename, or a crash could leave an empty
		// .gz in place of the backup once src is gone.
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, src+gzSuffix)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cannot compress %s: %w", src, err)
	}
	return os.Remove(src)
}

// Close releases the lock file. It never has to wait for a compression:
// each one ends before the Write that started it returns.
func (w *rotatingFile) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lock == nil {
		return nil
	}
	err := w.lock.Close()
	w.lock = nil
	if w.millErr != nil {
		return w.millErr
	}
	return err
}

// backup is one rotated file.
type backup struct {
	path string // the plain file when there is one, else the .gz
	time time.Time
	gz   bool
	// twin is the .gz of a plain backup whose compression was interrupted
	// before the plain file was removed; it may be partial.
	twin string
}

func (b backup) paths() []string {
	if b.twin != "" {
		return []string{b.path, b.twin}
	}
	return []string{b.path}
}

// backupParts splits the log's path as lumberjack names its backups:
// /var/log/x/autodeploy.log -> "/var/log/x", "autodeploy-", ".log".
func backupParts(path string) (dir, prefix, ext string) {
	name := filepath.Base(path)
	ext = filepath.Ext(name)
	return filepath.Dir(path), strings.TrimSuffix(name, ext) + "-", ext
}

// target is the file the log's path names: for a symlink, the file it
// points to. Its backups are beside it and named after it, so that
// rotation renames that file and keeps the link; renaming the link, as
// before, made it a backup and left a regular file in its place, and its
// target orphaned (issue 18, item 8). config and Open refuse a link to
// anything but a regular file.
func target(path string) string {
	if p, err := filepath.EvalSymlinks(path); err == nil {
		return p
	}
	return path
}

// scanBackups lists the backups of the log at path, newest first, and the
// temporary files of compressions. Other names (the lock, files a person
// put there) are ignored.
func scanBackups(path string) (backups []backup, temps []string, err error) {
	dir, prefix, ext := backupParts(target(path))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	byTime := map[time.Time]*backup{}
	for _, e := range entries {
		name := e.Name()
		if base, ok := strings.CutSuffix(name, gzSuffix+tmpSuffix); ok {
			if _, ok := backupTime(base, prefix, ext); ok {
				temps = append(temps, filepath.Join(dir, name))
			}
			continue
		}
		base, gz := strings.CutSuffix(name, gzSuffix)
		t, ok := backupTime(base, prefix, ext)
		if !ok || !e.Type().IsRegular() {
			// Rotation makes regular files only: a named pipe of that
			// name blocked status in its read (issue 18, fourth pass).
			continue
		}
		p := filepath.Join(dir, name)
		switch b := byTime[t]; {
		case b == nil:
			byTime[t] = &backup{path: p, time: t, gz: gz}
		case gz:
			b.twin = p
		default:
			*b = backup{path: p, time: t, twin: b.path}
		}
	}
	for _, b := range byTime {
		backups = append(backups, *b)
	}
	slices.SortFunc(backups, func(a, b backup) int { return b.time.Compare(a.time) })
	return backups, temps, nil
}

// backupTime returns the time in a backup's name without its .gz.
func backupTime(name, prefix, ext string) (time.Time, bool) {
	ts, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return time.Time{}, false
	}
	if ts, ok = strings.CutSuffix(ts, ext); !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(backupTimeFormat, ts)
	return t, err == nil
}
