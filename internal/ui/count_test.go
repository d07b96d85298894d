package ui

import "testing"

func TestCount(t *testing.T) {
	tests := []struct {
		n         int
		one, many string
		want      string
	}{
		{0, "line", "lines", "0 lines"},
		{1, "line", "lines", "1 line"},
		{2, "line", "lines", "2 lines"},
		{1, "ImagePolicy", "ImagePolicies", "1 ImagePolicy"},
		{3, "ImagePolicy", "ImagePolicies", "3 ImagePolicies"},
		{-1, "byte", "bytes", "-1 bytes"},
	}
	for _, tt := range tests {
		if got := Count(tt.n, tt.one, tt.many); got != tt.want {
			t.Errorf("Count(%d, %q, %q) = %q, want %q", tt.n, tt.one, tt.many, got, tt.want)
		}
	}
}
