package ui

import (
	"testing"
	"time"
)

func TestAge(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{0, "0s"},
		{59 * time.Second, "59s"},
		{time.Minute, "1m"},
		{59*time.Minute + 59*time.Second, "59m"},
		{time.Hour, "1h"},
		{2*time.Hour - 30*time.Second, "1h59m"},
		{9*time.Hour + 5*time.Minute, "9h5m"},
		{10*time.Hour + 5*time.Minute, "10h"},
		{47 * time.Hour, "1d"},
		{400 * 24 * time.Hour, "400d"},
	}
	for _, tt := range tests {
		if got := Age(tt.d); got != tt.want {
			t.Errorf("Age(%s) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
