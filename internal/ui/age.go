package ui

import (
	"fmt"
	"time"
)

// Age is kubectl's compact duration, cut (not rounded) to its unit: 45s,
// 3m, 2h5m, 10h, 4d; a negative one is 0s. status and the plan's reasons
// both count with it, so that one hold's end reads the same in each (the
// plan rounded: "in 2h0m" beside status' "in 1h59m").
func Age(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		h := int(d.Hours())
		if m := int(d.Minutes()) % 60; m != 0 && h < 10 {
			return fmt.Sprintf("%dh%dm", h, m)
		}
		return fmt.Sprintf("%dh", h)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
