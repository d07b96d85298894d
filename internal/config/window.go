package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// MaxWindowDuration bounds a deploy window's duration: a week, the longest
// span a weekly cron can open without overlapping itself.
const MaxWindowDuration = 7 * 24 * time.Hour

// DeployWindow is a span of time in which rollouts may start: each time
// Cron fires (in Location), for Duration. A window is open at t when
// cron.Next(t - Duration) <= t, as Argo CD judges its sync windows.
type DeployWindow struct {
	Cron     string
	Duration time.Duration
	// TimeZone is the IANA name the cron is read in; "UTC" by default.
	TimeZone string
	Location *time.Location
	Line     int

	schedule cron.Schedule
}

type rawWindow struct {
	Cron     opt[string]        `yaml:"cron"`
	Duration opt[time.Duration] `yaml:"duration"`
	TimeZone opt[string]        `yaml:"timeZone"`
	Line     int                `yaml:"-"`
}

// windows resolves a deployWindows list; need is what a rollout it gates
// takes at most, rolloutTimeout plus soak (a window shorter than that never
// lets one start), owner who has it, for messages.
func (d *decoder) windows(raw []rawWindow, path string, need time.Duration, owner string) []DeployWindow {
	var out []DeployWindow
	for i, rw := range raw {
		if rw.Line == 0 {
			continue // not a mapping, already reported
		}
		at := fmt.Sprintf("%s[%d]", path, i)
		w := DeployWindow{Cron: rw.Cron.or(""), Duration: rw.Duration.or(0), TimeZone: rw.TimeZone.or("UTC"), Line: rw.Line}
		for _, k := range []struct {
			set  bool
			name string
		}{{rw.Cron.Set, "cron"}, {rw.Duration.Set, "duration"}} {
			if !k.set {
				d.add(rw.Line, at, fmt.Sprintf("missing required key %q", k.name))
			}
		}
		if rw.Cron.ok() {
			if zone, _ := CutTimeZone(w.Cron); zone != "" {
				d.add(rw.Cron.Line, rw.Cron.Path, fmt.Sprintf("%s: give the zone in timeZone, not in cron", quote(w.Cron)))
			} else if s, err := parseSchedule(w.Cron); err != nil {
				d.add(rw.Cron.Line, rw.Cron.Path, fmt.Sprintf("invalid cron schedule %s: %v (use 5 fields such as \"0 9 * * 1-5\")", quote(w.Cron), err))
			} else if everyDelay(s) > 0 {
				// Open at t when Next(t - duration) <= t: with @every,
				// t - duration + delay, never (delay > duration) or
				// always (issue 18, sixth pass).
				d.add(rw.Cron.Line, rw.Cron.Path, fmt.Sprintf("%s opens at no time of day (@every counts from whenever it is asked: the window would be never or always open): use 5 fields such as \"0 9 * * 1-5\", or a descriptor such as @daily", quote(w.Cron)))
			} else {
				w.schedule = s
			}
		}
		switch o := rw.Duration; {
		case !o.ok():
		case o.Val <= 0:
			d.add(o.Line, o.Path, fmt.Sprintf("must be greater than zero, got %s", o.Val))
		case o.Val < minWindowDuration:
			d.add(o.Line, o.Path, fmt.Sprintf("must be at least %s (%s), got %s", minWindowDuration, whyMinWindowDuration, o.Val))
		case o.Val > MaxWindowDuration:
			d.add(o.Line, o.Path, fmt.Sprintf("must be at most %s, got %s", MaxWindowDuration, o.Val))
		case need > 0 && o.Val < need:
			d.add(o.Line, o.Path, fmt.Sprintf("%s is shorter than the %s a rollout of %s takes at most (rolloutTimeout plus soak): no rollout could start in this window (lengthen duration, or lower rolloutTimeout or soak)", o.Val, need, owner))
		}
		loc, err := time.LoadLocation(w.TimeZone)
		switch {
		case err != nil || w.TimeZone == "" || w.TimeZone == "Local":
			// "Local" is this host's zone: a config read elsewhere (a
			// CronJob's pod is UTC) would judge another window.
			d.add(rw.TimeZone.Line, rw.TimeZone.Path, fmt.Sprintf("unknown time zone %s (use an IANA name such as Europe/Paris or UTC)", quote(w.TimeZone)))
		default:
			w.Location = loc
			if w.schedule != nil {
				w.schedule = wallClock{s: w.schedule, loc: loc}
			}
		}
		out = append(out, w)
	}
	return out
}

// sched is the window's parsed cron (parsed again for a window built by
// hand), nil when it does not parse.
func (w DeployWindow) sched() cron.Schedule {
	if w.schedule != nil {
		return w.schedule
	}
	s, err := parseSchedule(w.Cron)
	if err != nil {
		return nil
	}
	return wallClock{s: s, loc: w.loc()}
}

// wallClock reads a window's cron on the wall clock of loc, so that an
// occurrence in the hour a spring-forward change skips is not lost:
// robfig's cron, in the zone, finds no 02:30 on 2026-03-29 in
// Europe/Paris and opened a daily 02:30 window next on the 30th (a weekly
// Sunday one a week later: EU changes are on Sundays). Such an occurrence
// starts when the clock jumps, as Debian's cron runs a job of the skipped
// hour (TestWindowsAcrossDST). In the hour a fall-back change repeats,
// both readings are occurrences, as with robfig's cron.
type wallClock struct {
	s   cron.Schedule
	loc *time.Location
}

// Next is the first occurrence strictly after t.
func (c wallClock) Next(t time.Time) time.Time {
	lt := t.In(c.loc)
	wall := time.Date(lt.Year(), lt.Month(), lt.Day(), lt.Hour(), lt.Minute(), lt.Second(), lt.Nanosecond(), time.UTC)
	// After a fall-back change the wall clock reads times it read before
	// (02:45 CEST, then 02:30 CET): the walk starts that much earlier,
	// and passes over the readings that are not after t, a minute at most
	// each (5-field crons).
	_, before := t.Add(-24 * time.Hour).In(c.loc).Zone()
	_, after := t.Add(24 * time.Hour).In(c.loc).Zone()
	back := time.Duration(max(before-after, 0)) * time.Second
	wall = wall.Add(-back)
	for range 8 + int(back/time.Minute) {
		w := c.s.Next(wall)
		if w.IsZero() {
			return w
		}
		if at, ok := c.instant(w, t); ok {
			return at
		}
		wall = w
	}
	return c.s.Next(t)
}

// instant is the first instant after t whose wall clock in c.loc reads w
// (a time in UTC standing for the wall clock): of the one or two readings
// around a change, or the end of the gap when w falls in a skipped hour.
func (c wallClock) instant(w, t time.Time) (time.Time, bool) {
	// Zones change their offset at most once within a day either side.
	_, before := w.Add(-24 * time.Hour).In(c.loc).Zone()
	_, after := w.Add(24 * time.Hour).In(c.loc).Zone()
	first, second := w.Add(-time.Duration(max(before, after))*time.Second), w.Add(-time.Duration(min(before, after))*time.Second)
	valid := false
	for _, at := range []time.Time{first, second} {
		if lt := at.In(c.loc); lt.Hour() == w.Hour() && lt.Minute() == w.Minute() && lt.Day() == w.Day() {
			valid = true
			if at.After(t) {
				return at, true
			}
		}
	}
	if valid {
		return time.Time{}, false
	}
	// A wall time that never happens: the clock jumps over it, at the
	// end of the zone in effect before it.
	_, jump := first.In(c.loc).ZoneBounds()
	if jump.IsZero() || !jump.After(t) {
		return time.Time{}, false
	}
	return jump, true
}

func (w DeployWindow) loc() *time.Location {
	if w.Location != nil {
		return w.Location
	}
	if l, err := time.LoadLocation(w.TimeZone); err == nil {
		return l
	}
	return time.UTC
}

// Open returns the end of the window's occurrence open at now, and
// whether one is open. When occurrences overlap (a cron firing more often
// than duration), the end is that of the last of them started by now,
// looked for among at most maxOverlap occurrences.
func (w DeployWindow) Open(now time.Time) (end time.Time, open bool) {
	s := w.sched()
	if s == nil || w.Duration <= 0 {
		return time.Time{}, false
	}
	// cron.Next is strictly after its argument: an occurrence is open on
	// [start, start+duration), the brief's "cron.Next(now - duration) <=
	// now".
	t := s.Next(now.In(w.loc()).Add(-w.Duration))
	for i := 0; i < maxOverlap && !t.IsZero() && !t.After(now); i++ {
		end, open = t.Add(w.Duration), true
		t = s.Next(t)
	}
	return end, open
}

// maxOverlap bounds Open's walk ("* * * * *" for 168h overlaps 10080 times).
const maxOverlap = 100

// fits reports whether a rollout lasting need, started at now, ends inside
// one of the window's occurrences: one started by now and at or after
// now + need - duration.
func (w DeployWindow) fits(now time.Time, need time.Duration) bool {
	s := w.sched()
	if s == nil || w.Duration <= 0 || need > w.Duration {
		return false
	}
	t := s.Next(now.In(w.loc()).Add(need - w.Duration - time.Nanosecond))
	return !t.IsZero() && !t.After(now)
}

// Next returns the next time the window opens strictly after now (zero if
// never).
func (w DeployWindow) Next(now time.Time) time.Time {
	s := w.sched()
	if s == nil {
		return time.Time{}
	}
	return s.Next(now.In(w.loc()))
}

// String is the window as the config spells it.
func (w DeployWindow) String() string {
	return fmt.Sprintf("%s for %s (%s)", w.Cron, w.Duration, w.TimeZone)
}

// WindowVerdict says whether a rollout may start now under a service's
// windows.
type WindowVerdict struct {
	// Allowed: no windows, or one is open for at least the rollout's time.
	Allowed bool
	// Open: a window is open now (possibly too near its end); Closes is
	// when the open window that lasts longest closes, Closing that window.
	Open    bool
	Closes  time.Time
	Closing DeployWindow
	// Next is when the next window opens (zero when there are no windows
	// or none ever opens); Window is that window.
	Next   time.Time
	Window DeployWindow
}

// CanStart judges whether a rollout lasting need may start at now: it must
// end inside an open window. With no windows, it always may.
func CanStart(windows []DeployWindow, now time.Time, need time.Duration) WindowVerdict {
	v := WindowVerdict{Allowed: len(windows) == 0}
	for _, w := range windows {
		if end, open := w.Open(now); open {
			v.Open = true
			if end.After(v.Closes) {
				v.Closes, v.Closing = end, w
			}
		}
		if w.fits(now, need) {
			v.Allowed = true
		}
		if n := w.Next(now); !n.IsZero() && (v.Next.IsZero() || n.Before(v.Next)) {
			v.Next, v.Window = n, w
		}
	}
	return v
}

// FormatWindowTime names a window's time in its zone: "Mon 09:00
// Europe/Paris" within the coming week, with the date beyond.
func FormatWindowTime(t, now time.Time, w DeployWindow) string {
	lt := t.In(w.loc())
	layout := "Mon 15:04"
	if t.Sub(now) >= 6*24*time.Hour {
		layout = "Mon 2 Jan 2006 15:04"
	}
	return strings.TrimSpace(lt.Format(layout) + " " + w.TimeZone)
}

// Invalid says why w cannot be judged ("" when it can): its cron does not
// parse or its time zone does not load. Load refuses both; a window built
// another way (or a zone database that lacks the name) meets them here.
func (w DeployWindow) Invalid() string {
	if _, err := parseSchedule(w.Cron); err != nil {
		return fmt.Sprintf("invalid cron schedule %s: %v (use 5 fields such as \"0 9 * * 1-5\")", quote(w.Cron), err)
	}
	if _, err := time.LoadLocation(w.TimeZone); err != nil || w.TimeZone == "" || w.TimeZone == "Local" {
		return fmt.Sprintf("time zone %s does not load (use an IANA name such as Europe/Paris or UTC)", quote(w.TimeZone))
	}
	return ""
}

// CannotHold says why no rollout that takes need could ever start in w
// ("" when one can): its cron matches no date after now ("0 9 30 2 *"),
// or it is shorter than need. Load refuses a service's own window shorter
// than the service's rolloutTimeout plus soak, and a defaults' one shorter
// than the defaults'; a service with a longer soak or rolloutTimeout of
// its own under the defaults' windows is not refused, and never deploys.
func (w DeployWindow) CannotHold(now time.Time, need time.Duration) string {
	if w.Next(now).IsZero() {
		return fmt.Sprintf("%s never opens: its cron matches no date", w)
	}
	if w.Duration < need {
		return fmt.Sprintf("%s is shorter than the %s a rollout takes at most (rolloutTimeout plus soak): no rollout can start in it", w, need)
	}
	return ""
}
