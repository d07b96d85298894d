package runlog

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/config"
)

// Entry is one parsed log line.
type Entry struct {
	Time   time.Time
	Level  string
	Msg    string
	Run    string
	Fields map[string]string
	Raw    string
}

// ParseLine parses one logfmt line as New writes it: key=value pairs, values
// quoted with Go's rules when they need it (slog's TextHandler uses
// strconv.Quote, so strconv.Unquote is its exact inverse).
func ParseLine(line string) (Entry, error) {
	e := Entry{Fields: map[string]string{}, Raw: line}
	s := line
	for len(s) > 0 {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			break
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || strings.ContainsAny(s[:eq], " \"") {
			return e, fmt.Errorf("not logfmt: %q", truncate(line, 80))
		}
		key := s[:eq]
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			end := closingQuote(s)
			if end < 0 {
				return e, fmt.Errorf("unterminated quote in %q", truncate(line, 80))
			}
			v, err := strconv.Unquote(s[:end+1])
			if err != nil {
				return e, fmt.Errorf("bad quoting in %q: %w", truncate(line, 80), err)
			}
			val, s = v, s[end+1:]
		} else {
			sp := strings.IndexByte(s, ' ')
			if sp < 0 {
				sp = len(s)
			}
			val, s = s[:sp], s[sp:]
		}
		switch key {
		case "time":
			t, err := time.Parse(timeFormat, val)
			if err != nil {
				return e, fmt.Errorf("bad time %q", val)
			}
			e.Time = t
		case "level":
			e.Level = val
		case "msg":
			e.Msg = val
		case "run":
			e.Run = val
		default:
			e.Fields[key] = val
		}
	}
	if e.Time.IsZero() || e.Msg == "" {
		return e, fmt.Errorf("not an autodeploy log line: %q", truncate(line, 80))
	}
	return e, nil
}

// closingQuote returns the index of the quote that ends the quoted string at
// the start of s, skipping escaped characters.
func closingQuote(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Files returns the log file and its rotated backups, newest first. Only
// names as lumberjack and this package give backups are listed, so the
// lock, a compression in progress (.gz.tmp) and files a person left there
// are not read. A backup found both plain and gzipped (a compression
// interrupted before the plain file was removed) is listed once, plain:
// that one is whole.
func Files(path string) []string {
	var out []string
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	}
	backups, _, _ := scanBackups(path)
	for _, b := range backups {
		out = append(out, b.path)
	}
	return out
}

// readLines returns the lines of a log file, gunzipping a .gz. On an
// error it returns the whole lines read before it as well: a .gz that a
// crash cut short still holds its beginning. A line the error cut is
// dropped.
func readLines(path string) ([]string, error) {
	// Not os.Open: a named pipe there blocked status forever (issue 18,
	// fourth pass).
	f, err := config.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, gzSuffix) {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		defer gz.Close()
		r = gz
	}
	var lines []string
	br := bufio.NewReaderSize(r, 64*1024)
	for {
		line, err := br.ReadString('\n')
		switch {
		case err == nil:
			lines = append(lines, strings.TrimSuffix(line[:len(line)-1], "\r"))
		case errors.Is(err, io.EOF):
			if line != "" { // no final newline: a line being written, or by hand
				lines = append(lines, strings.TrimSuffix(line, "\r"))
			}
			return lines, nil
		default:
			return lines, fmt.Errorf("%s: %w", path, err)
		}
	}
}

// readFiles reads the files of the log at path, newest first, until stop
// says enough, and returns their lines in order. An error reading the log
// itself is returned; a damaged or unreadable backup gives what it can and
// the older files are read as if it were whole, so that one bad backup
// cannot hide the runs around it.
func readFiles(path string, stop func(newest []string, all int) bool) ([]string, error) {
	var lines []string
	for _, f := range Files(path) {
		ls, err := readLines(f)
		if err != nil && f == path {
			return nil, err
		}
		lines = append(ls, lines...)
		if stop(ls, len(lines)) {
			break
		}
	}
	return lines, nil
}

// Run is what the log says about one `autodeploy run`.
type Run struct {
	ID       string            `json:"id"`
	Started  time.Time         `json:"started"`
	Finished *time.Time        `json:"finished,omitempty"`
	Duration time.Duration     `json:"durationNanos,omitempty"`
	Result   string            `json:"result"`   // ok, failed, interrupted, deadline (stopped at config's runDeadline), unfinished
	Outcomes map[string]string `json:"outcomes"` // service -> outcome
	Warnings int               `json:"warnings"`
	Errors   int               `json:"errors"`
	// WarningMessages are the first warnings, as one line each (a rescan
	// that got no answer, a scan that failed).
	WarningMessages []string `json:"warningMessages,omitempty"`
}

// maxWarningMessages bounds Run.WarningMessages.
const maxWarningMessages = 5

// ErrNoRun means no run was found in the log (a new installation, or
// rotated away).
var ErrNoRun = errors.New("no run in the log yet")

// LastRun finds the last `autodeploy run` in the log at path, reading the
// newest backup too when the run began before the last rotation.
func LastRun(path string) (*Run, error) {
	lines, err := readFiles(path, func(newest []string, _ int) bool { return hasRunStart(newest) })
	if err != nil {
		return nil, err
	}
	var run *Run
	for _, l := range lines {
		e, err := ParseLine(l)
		if err != nil {
			continue // a line cut by a crash, or written by hand
		}
		if e.Msg == "run started" {
			run = &Run{ID: e.Run, Started: e.Time, Result: "unfinished", Outcomes: map[string]string{}}
			continue
		}
		if run == nil || e.Run != run.ID {
			continue
		}
		switch e.Level {
		case "WARN":
			run.Warnings++
			if len(run.WarningMessages) < maxWarningMessages {
				run.WarningMessages = append(run.WarningMessages, warningText(e))
			}
		case "ERROR":
			run.Errors++
		}
		svc := e.Fields["svc"]
		switch e.Msg {
		case "plan":
			// Deploys and verifies end with "service done"; the rest end here.
			switch e.Fields["action"] {
			case "up-to-date":
				run.Outcomes[svc] = "up-to-date"
			case "skip":
				run.Outcomes[svc] = "skipped"
			}
		case "skipped":
			// Logged only for a skip that needs fixing (a missing object, an
			// invalid image): the run exits 7, so it is not "ok".
			run.Outcomes[svc] = "skipped-problem"
		case "service done":
			run.Outcomes[svc] = e.Fields["outcome"]
		case "not run":
			run.Outcomes[svc] = "not-run"
		case "run finished", "run failed":
			run.finish(e.Time, map[string]string{"run finished": "ok", "run failed": "failed"}[e.Msg])
		default:
			switch {
			case strings.HasPrefix(e.Msg, "run interrupted"):
				run.finish(e.Time, "interrupted")
			case strings.HasPrefix(e.Msg, "run stopped at its deadline"):
				run.finish(e.Time, "deadline")
			}
		}
	}
	if run == nil {
		return nil, ErrNoRun
	}
	if run.Result == "ok" {
		for _, o := range run.Outcomes {
			// superseded: someone else's change, not a failure of the run.
			if o != "up-to-date" && o != "deployed" && o != "verified" && o != "skipped" && o != "superseded" {
				run.Result = "failed"
			}
		}
	}
	return run, nil
}

func (r *Run) finish(t time.Time, result string) {
	r.Finished = &t
	r.Duration = t.Sub(r.Started)
	r.Result = result
}

func hasRunStart(lines []string) bool {
	for _, l := range lines {
		if strings.Contains(l, `msg="run started"`) {
			return true
		}
	}
	return false
}

// Tail returns the last n lines of the log, across a rotation if needed.
func Tail(path string, n int) ([]string, error) {
	lines, err := readFiles(path, func(_ []string, all int) bool { return all >= n })
	if err != nil {
		return nil, err
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, nil
}

// warningText is a warning line as a person reads it: the message, then
// what it is about and why.
func warningText(e Entry) string {
	t := e.Msg
	for _, k := range []string{"svc", "kind", "object", "problem", "reason", "error"} {
		if v := e.Fields[k]; v != "" {
			t += " " + k + "=" + v
		}
	}
	return t
}
