package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// parseSchedule parses spec as robfig's standard parser does, with Sunday
// as 7 too (StandardSpec). It wraps cron.ParseStandard, which panics on
// some malformed time zone prefixes such as "TZ=UTC" with nothing after it.
func parseSchedule(spec string) (s cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("malformed schedule")
		}
	}()
	if err := CronSyntax(spec); err != nil {
		return nil, err
	}
	s, err = cron.ParseStandard(StandardSpec(spec))
	if err != nil {
		// robfig's bound for the day of week is 6, once 7 became 0
		// (StandardSpec): "above maximum (6)" for 8 refused a 7 the
		// config takes.
		_, rest := CutTimeZone(spec)
		if f := strings.Fields(rest); len(f) == 5 {
			for _, item := range strings.Split(f[4], ",") {
				base, _, _ := strings.Cut(item, "/") // a step may be larger
				for _, n := range digits.FindAllString(base, -1) {
					if v, _ := strconv.Atoi(n); v > 7 {
						return nil, fmt.Errorf("%q: the day of week is 0-7 (0 and 7 are Sunday) or a name such as MON", f[4])
					}
				}
			}
		}
	}
	return s, err
}

var digits = regexp.MustCompile(`[0-9]+`)

// everyDelay is the delay of robfig's @every (a delay from whenever it is
// asked, anchored to no time of day), 0 for any other schedule.
func everyDelay(s cron.Schedule) time.Duration {
	if e, ok := s.(cron.ConstantDelaySchedule); ok {
		return e.Delay
	}
	return 0
}

// cronItem is the shape of one item of a field's list that both robfig's
// parser and Debian's cron read: "*" (or robfig's "?"), a number or name,
// or a range of them, with an optional "/step". robfig reads more: a sign
// ("+5", strconv.Atoi) and empty items ("1,,2", "1,"), which Debian's cron
// refuses, ignoring the whole file (seen by the release test,
// testdata/cron/schedules.txt).
var cronItem = regexp.MustCompile(`^(\*|\?|[A-Za-z0-9]+(-[A-Za-z0-9]+)?)(/[0-9]+)?$`)

// CronSyntax refuses what robfig's parser would take but no cron would:
// an empty list item, a sign, any character but letters, digits, "*",
// "?", "-", "/" and ",". Field counts and bounds are the parser's.
func CronSyntax(spec string) error {
	_, rest := CutTimeZone(spec)
	f := strings.Fields(rest)
	if len(f) != 5 {
		return nil
	}
	for _, field := range f {
		for _, item := range strings.Split(field, ",") {
			switch {
			case item == "":
				return fmt.Errorf("%q has an empty item in its list (cron ignores the whole file for it)", field)
			case !cronItem.MatchString(item):
				return fmt.Errorf("%q: cron takes a number, a name, a range or \"*\", each with an optional /step, and no sign (it ignores the whole file otherwise)", item)
			}
		}
	}
	return nil
}

// CutTimeZone splits robfig's time zone prefix (TZ=Zone or CRON_TZ=Zone,
// then the schedule) from spec; zone is "" and rest is spec without one.
func CutTimeZone(spec string) (zone, rest string) {
	f := strings.Fields(spec)
	if len(f) > 1 {
		for _, p := range []string{"TZ=", "CRON_TZ="} {
			if z, ok := strings.CutPrefix(f[0], p); ok {
				return z, strings.Join(f[1:], " ")
			}
		}
	}
	return "", spec
}

// StandardSpec rewrites a schedule's day of week for robfig's standard
// parser, which Kubernetes' CronJob uses too: cron and systemd take 7 for
// Sunday (crontab(5): "0-7 (0 or 7 is Sunday, or use names)"), robfig stops
// at 6. "7" becomes "0", "a-7" becomes "a-6,0" (with its step, 0 only when
// the step reaches 7). Anything else is left for the parser to judge.
func StandardSpec(spec string) string {
	zone, rest := CutTimeZone(spec)
	f := strings.Fields(rest)
	if len(f) != 5 {
		return spec
	}
	items := strings.Split(f[4], ",")
	for i, item := range items {
		items[i] = sundayAsZero(item)
	}
	f[4] = strings.Join(items, ",")
	if zone != "" {
		return strings.Fields(spec)[0] + " " + strings.Join(f, " ")
	}
	return strings.Join(f, " ")
}

// sundayAsZero rewrites one item of a day-of-week list (see StandardSpec).
func sundayAsZero(item string) string {
	base, stepText, stepped := strings.Cut(item, "/")
	step := 1
	if stepped {
		n, err := strconv.Atoi(stepText)
		if err != nil || n <= 0 {
			return item
		}
		step = n
	}
	lo, hi, ranged := strings.Cut(base, "-")
	if !ranged {
		hi = lo
	}
	a, errA := strconv.Atoi(lo)
	b, errB := strconv.Atoi(hi)
	switch {
	case errA != nil || errB != nil || b != 7 || a > b:
		return item // not a 7, or the parser's to refuse
	case !ranged && stepped:
		return item // "7/2": robfig reads it as 7-6/2, which is refused
	case a == 7:
		return "0"
	}
	out := strconv.Itoa(a) + "-6"
	if stepped {
		out += "/" + stepText
	}
	if (b-a)%step == 0 {
		out += ",0"
	}
	return out
}
