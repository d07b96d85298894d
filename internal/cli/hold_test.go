package cli

import (
	"strings"
	"testing"
	"time"
)

func TestHoldEnd(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 2, 20, 30, 0, 0, time.UTC) // 21:30 in Paris
	tests := []struct {
		name    string
		o       HoldOptions
		forSet  bool
		want    time.Time
		errPart string
	}{
		{name: "no end", want: time.Time{}},
		{name: "for 2h", o: HoldOptions{For: 2 * time.Hour}, forSet: true, want: now.Add(2 * time.Hour)},
		{name: "for zero", o: HoldOptions{For: 0}, forSet: true, errPart: "--for must be greater than zero (such as 2h or 30m)"},
		{name: "for negative", o: HoldOptions{For: -time.Hour}, forSet: true, errPart: "--for must be greater than zero"},
		// A hold that ends before any run could see it holds nothing
		// (issue 18, third pass: --for 1ns was accepted).
		{name: "for 1ns", o: HoldOptions{For: time.Nanosecond}, forSet: true, errPart: "--for must be at least 1m0s (a shorter hold ends before a run sees it), got 1ns"},
		{name: "for 1m", o: HoldOptions{For: time.Minute}, forSet: true, want: now.Add(time.Minute)},
		{name: "RFC3339", o: HoldOptions{Until: "2026-12-03T18:00:00+01:00"}, want: time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC)},
		{name: "local date and time", o: HoldOptions{Until: "2026-12-03 18:00"}, want: time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC)},
		{name: "local time later today", o: HoldOptions{Until: "23:00"}, want: time.Date(2026, 12, 2, 22, 0, 0, 0, time.UTC)},
		{name: "local time already passed is tomorrow", o: HoldOptions{Until: "09:00"}, want: time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)},
		{name: "in the past", o: HoldOptions{Until: "2026-12-01 18:00"}, errPart: "--until 2026-12-01 18:00 is in the past (now 2026-12-02 21:30 Europe/Paris): give a later time, or --for"},
		{name: "unreadable", o: HoldOptions{Until: "tomorrow"}, errPart: `invalid --until "tomorrow": use RFC 3339 (2026-12-03T18:00:00+01:00), or "2026-12-03 18:00" or "18:00" in the local time zone`},
		{name: "both", o: HoldOptions{For: time.Hour, Until: "23:00"}, forSet: true, errPart: "give --for or --until, not both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := holdEnd(tt.o.For, tt.forSet, tt.o.Until, now, paris)
			if tt.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errPart) {
					t.Fatalf("holdEnd = %v, %v; want an error with %q", got, err, tt.errPart)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) {
				t.Errorf("holdEnd = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
