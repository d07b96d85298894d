package config

import (
	"strings"
	"testing"
	"time"
)

func TestCanStart(t *testing.T) {
	paris := DeployWindow{Cron: "0 9 * * 1-5", Duration: 8 * time.Hour, TimeZone: "Europe/Paris"}
	daily := DeployWindow{Cron: "0 9 * * *", Duration: 8 * time.Hour, TimeZone: "Europe/Paris"}
	night := DeployWindow{Cron: "0 22 * * *", Duration: 4 * time.Hour, TimeZone: "UTC"}
	sunday := DeployWindow{Cron: "0 9 * * 7", Duration: time.Hour, TimeZone: "UTC"}
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name    string
		windows []DeployWindow
		now     string
		need    time.Duration
		allowed bool
		open    bool
		next    string // formatted as FormatWindowTime does
	}{
		{name: "no windows", now: "2026-12-02T03:00:00Z", need: 5 * time.Minute, allowed: true},
		// Wednesday 2026-12-02, 10:00 in Paris (CET, UTC+1).
		{name: "inside a weekday window", windows: []DeployWindow{paris}, now: "2026-12-02T09:00:00Z", need: 5 * time.Minute, allowed: true, open: true, next: "Thu 09:00 Europe/Paris"},
		{name: "at the opening minute", windows: []DeployWindow{paris}, now: "2026-12-02T08:00:00Z", need: 5 * time.Minute, allowed: true, open: true, next: "Thu 09:00 Europe/Paris"},
		{name: "before the opening", windows: []DeployWindow{paris}, now: "2026-12-02T07:59:00Z", need: 5 * time.Minute, next: "Wed 09:00 Europe/Paris"},
		// 16:57 in Paris: open, but a 5m rollout would end after 17:00.
		{name: "too near the end", windows: []DeployWindow{paris}, now: "2026-12-02T15:57:00Z", need: 5 * time.Minute, open: true, next: "Thu 09:00 Europe/Paris"},
		{name: "ends exactly at the close", windows: []DeployWindow{paris}, now: "2026-12-02T15:55:00Z", need: 5 * time.Minute, allowed: true, open: true, next: "Thu 09:00 Europe/Paris"},
		{name: "after the close", windows: []DeployWindow{paris}, now: "2026-12-02T16:00:00Z", need: 5 * time.Minute, next: "Thu 09:00 Europe/Paris"},
		// Saturday 2026-12-05: the next weekday window is Monday.
		{name: "weekend", windows: []DeployWindow{paris}, now: "2026-12-05T10:00:00Z", need: 5 * time.Minute, next: "Mon 09:00 Europe/Paris"},
		// 2026-03-29: Paris goes from CET (UTC+1) to CEST (UTC+2) at 02:00.
		// The window opens at 09:00 local, which is 07:00 UTC that day and
		// 08:00 UTC the day before.
		{name: "DST day: 09:30 CEST is inside", windows: []DeployWindow{daily}, now: "2026-03-29T07:30:00Z", need: 5 * time.Minute, allowed: true, open: true, next: "Mon 09:00 Europe/Paris"},
		{name: "DST day: 08:30 CEST is before", windows: []DeployWindow{daily}, now: "2026-03-29T06:30:00Z", need: 5 * time.Minute, next: "Sun 09:00 Europe/Paris"},
		{name: "DST day: closes at 17:00 CEST (15:00 UTC)", windows: []DeployWindow{daily}, now: "2026-03-29T14:58:00Z", need: 5 * time.Minute, open: true, next: "Mon 09:00 Europe/Paris"},
		{name: "day before DST: 08:30 CET is before", windows: []DeployWindow{daily}, now: "2026-03-28T07:30:00Z", need: 5 * time.Minute, next: "Sat 09:00 Europe/Paris"},
		{name: "day before DST: closes at 17:00 CET (16:00 UTC)", windows: []DeployWindow{daily}, now: "2026-03-28T15:50:00Z", need: 5 * time.Minute, allowed: true, open: true, next: "Sun 09:00 Europe/Paris"},
		// 22:00-02:00 UTC crosses midnight.
		{name: "crossing midnight: after midnight", windows: []DeployWindow{night}, now: "2026-12-03T01:00:00Z", need: 5 * time.Minute, allowed: true, open: true, next: "Thu 22:00 UTC"},
		{name: "crossing midnight: before midnight", windows: []DeployWindow{night}, now: "2026-12-02T23:30:00Z", need: time.Hour, allowed: true, open: true, next: "Thu 22:00 UTC"},
		{name: "crossing midnight: too near 02:00", windows: []DeployWindow{night}, now: "2026-12-03T01:58:00Z", need: 5 * time.Minute, open: true, next: "Thu 22:00 UTC"},
		{name: "crossing midnight: closed at noon", windows: []DeployWindow{night}, now: "2026-12-03T12:00:00Z", need: 5 * time.Minute, next: "Thu 22:00 UTC"},
		{name: "Sunday as 7", windows: []DeployWindow{sunday}, now: "2026-11-29T09:30:00Z", need: 5 * time.Minute, allowed: true, open: true, next: "Sun 6 Dec 2026 09:00 UTC"},
		{name: "either of two windows", windows: []DeployWindow{paris, night}, now: "2026-12-02T23:00:00Z", need: 5 * time.Minute, allowed: true, open: true, next: "Thu 09:00 Europe/Paris"},
		{name: "the earliest next of two", windows: []DeployWindow{paris, night}, now: "2026-12-02T18:00:00Z", need: 5 * time.Minute, next: "Wed 22:00 UTC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := at(tt.now)
			v := CanStart(tt.windows, now, tt.need)
			if v.Allowed != tt.allowed || v.Open != tt.open {
				t.Errorf("CanStart = allowed %v open %v, want allowed %v open %v", v.Allowed, v.Open, tt.allowed, tt.open)
			}
			next := ""
			if !v.Next.IsZero() {
				next = FormatWindowTime(v.Next, now, v.Window)
			}
			if next != tt.next {
				t.Errorf("next opens %q, want %q", next, tt.next)
			}
		})
	}
}

// Occurrences that overlap (every minute, open for a week) are judged
// without walking each of them.
func TestCanStartOverlapping(t *testing.T) {
	w := DeployWindow{Cron: "* * * * *", Duration: MaxWindowDuration, TimeZone: "UTC"}
	now := time.Date(2026, 12, 2, 10, 0, 30, 0, time.UTC)
	start := time.Now()
	for range 500 {
		if v := CanStart([]DeployWindow{w}, now, 5*time.Minute); !v.Allowed || !v.Open {
			t.Fatalf("CanStart = %+v", v)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("500 verdicts took %s", d)
	}
}

// TestWindowsAcrossDST: deploy windows in Europe/Paris on the days its
// clocks change. 2026-03-29: at 01:00 UTC, 02:00 CET becomes 03:00 CEST
// (02:00-02:59 never happens); 2026-10-25: at 01:00 UTC, 03:00 CEST
// becomes 02:00 CET (02:00-02:59 happens twice). A duration is elapsed
// time, as Argo CD counts it: a night window of 8h closes at 07:00 CEST
// after a spring-forward night, at 05:00 CET after a fall-back one.
func TestWindowsAcrossDST(t *testing.T) {
	paris := func(cron string, d time.Duration) DeployWindow {
		return DeployWindow{Cron: cron, Duration: d, TimeZone: "Europe/Paris"}
	}
	day, night, skipped := paris("0 9 * * *", 8*time.Hour), paris("0 22 * * *", 8*time.Hour), paris("30 2 * * *", time.Hour)
	tests := []struct {
		name   string
		w      DeployWindow
		now    string
		open   bool
		closes string // UTC, when open
		next   string // as FormatWindowTime says it
	}{
		// Spring forward.
		{name: "spring: 08:30 CEST is before the day window", w: day, now: "2026-03-29T06:30:00Z", next: "Sun 09:00 Europe/Paris"},
		{name: "spring: the day window opens at 09:00 CEST", w: day, now: "2026-03-29T07:00:00Z", open: true, closes: "2026-03-29T15:00:00Z", next: "Mon 09:00 Europe/Paris"},
		{name: "spring: the night window lasts 8h of elapsed time", w: night, now: "2026-03-29T04:59:00Z", open: true, closes: "2026-03-29T05:00:00Z", next: "Sun 22:00 Europe/Paris"},
		{name: "spring: the night window closed at 07:00 CEST", w: night, now: "2026-03-29T05:00:00Z", next: "Sun 22:00 Europe/Paris"},
		// 02:30 does not exist on 2026-03-29: the window opens when the
		// clock jumps, at 03:00 CEST (as Debian's cron runs a job of the
		// skipped hour), for its duration; it is not lost for the day.
		{name: "spring: before a window of the skipped hour", w: skipped, now: "2026-03-29T00:30:00Z", next: "Sun 03:00 Europe/Paris"},
		{name: "spring: a window of the skipped hour opens at the jump", w: skipped, now: "2026-03-29T01:00:00Z", open: true, closes: "2026-03-29T02:00:00Z", next: "Mon 02:30 Europe/Paris"},
		{name: "spring: a window of the skipped hour, open at 03:15 CEST", w: skipped, now: "2026-03-29T01:15:00Z", open: true, closes: "2026-03-29T02:00:00Z", next: "Mon 02:30 Europe/Paris"},
		{name: "spring: a window of the skipped hour, closed at 04:00 CEST", w: skipped, now: "2026-03-29T02:00:00Z", next: "Mon 02:30 Europe/Paris"},
		{name: "spring: the day after, 02:30 CEST again", w: skipped, now: "2026-03-30T00:45:00Z", open: true, closes: "2026-03-30T01:30:00Z", next: "Tue 02:30 Europe/Paris"},
		// Fall back.
		{name: "fall: 08:30 CET is before the day window", w: day, now: "2026-10-25T07:30:00Z", next: "Sun 09:00 Europe/Paris"},
		{name: "fall: the day window closes at 17:00 CET", w: day, now: "2026-10-25T15:59:00Z", open: true, closes: "2026-10-25T16:00:00Z", next: "Mon 09:00 Europe/Paris"},
		{name: "fall: the night window lasts 8h of elapsed time", w: night, now: "2026-10-25T03:59:00Z", open: true, closes: "2026-10-25T04:00:00Z", next: "Sun 22:00 Europe/Paris"},
		{name: "fall: the night window closed at 05:00 CET", w: night, now: "2026-10-25T04:00:00Z", next: "Sun 22:00 Europe/Paris"},
		// 02:30 happens twice: each is an occurrence (robfig's reading,
		// Kubernetes CronJobs' and Argo CD's), so the window is open
		// for the whole of 02:30-03:30 on the wall clock, two hours.
		{name: "fall: 02:45 CEST, the first 02:30", w: skipped, now: "2026-10-25T00:45:00Z", open: true, closes: "2026-10-25T01:30:00Z", next: "Sun 02:30 Europe/Paris"},
		{name: "fall: 02:15 CET, still the first", w: skipped, now: "2026-10-25T01:15:00Z", open: true, closes: "2026-10-25T01:30:00Z", next: "Sun 02:30 Europe/Paris"},
		{name: "fall: 03:15 CET, the second 02:30", w: skipped, now: "2026-10-25T02:15:00Z", open: true, closes: "2026-10-25T02:30:00Z", next: "Mon 02:30 Europe/Paris"},
		{name: "fall: closed at 03:30 CET", w: skipped, now: "2026-10-25T02:30:00Z", next: "Mon 02:30 Europe/Paris"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now, err := time.Parse(time.RFC3339, tt.now)
			if err != nil {
				t.Fatal(err)
			}
			w := tt.w
			end, open := w.Open(now)
			closes := ""
			if open {
				closes = end.UTC().Format(time.RFC3339)
			}
			if open != tt.open || closes != tt.closes {
				t.Errorf("Open = %v, closes %q; want %v, %q", open, closes, tt.open, tt.closes)
			}
			if v := CanStart([]DeployWindow{w}, now, time.Minute); v.Allowed != (tt.open && end.Sub(now) >= time.Minute) {
				t.Errorf("CanStart(1m) allowed %v with the window open %v until %s", v.Allowed, open, closes)
			}
			if got := FormatWindowTime(w.Next(now), now, w); got != tt.next {
				t.Errorf("next opens %q, want %q", got, tt.next)
			}
		})
	}
}

// A day of week past 7 was refused as "end of range (8) above maximum
// (6)", robfig's bound after 7 became 0, while the README (and cron) take
// 0-7 (issue 18, fifth pass): the bound said is the one the config takes.
func TestDayOfWeekBound(t *testing.T) {
	for _, spec := range []string{"0 9 * * 8", "0 9 * * 1-8", "0 9 * * 9/2"} {
		_, err := parseSchedule(spec)
		if err == nil || strings.Contains(err.Error(), "maximum (6)") || !strings.Contains(err.Error(), "day of week is 0-7") {
			t.Errorf("parseSchedule(%q) = %v, want it refused with the 0-7 bound", spec, err)
		}
	}
	for _, spec := range []string{"0 9 * * 7", "0 9 * * 5-7", "0 9 * * 0", "0 9 * * */10"} {
		if _, err := parseSchedule(spec); err != nil {
			t.Errorf("parseSchedule(%q) = %v", spec, err)
		}
	}
}
