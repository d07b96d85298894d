package version

import "testing"

func TestIsRelease(t *testing.T) {
	tests := []struct {
		v    string
		want bool
	}{
		{"v1.2.3", true},
		{"v0.1.0", true},
		{"v1.2.3-rc.1", true},
		{"dev", false},
		{"", false},
		{"95a2a9f", false},                            // git describe without a tag
		{"95a2a9f-dirty", false},                      // and with local changes
		{"v1.2.3-dirty", false},                       // a tag with local changes
		{"v1.2.3-4-g95a2a9f", false},                  // 4 commits after a tag
		{"v0.0.0-20261126002437-95a2a9f1b2c3", false}, // a Go pseudo-version
		{"1.2.3", false},
	}
	for _, tt := range tests {
		t.Run(tt.v, func(t *testing.T) {
			if got := IsRelease(tt.v); got != tt.want {
				t.Errorf("IsRelease(%q) = %v, want %v", tt.v, got, tt.want)
			}
		})
	}
}

func TestImage(t *testing.T) {
	defer func(v string) { Version = v }(Version)
	Version = "v1.2.3"
	if got, want := Image(), "ghcr.io/autodeploy-dev/autodeploy:v1.2.3"; got != want {
		t.Errorf("Image() = %q, want %q", got, want)
	}
	// No image is published for a development build: no default to name.
	for _, v := range []string{"dev", "95a2a9f-dirty"} {
		Version = v
		if got := Image(); got != "" {
			t.Errorf("Version %s: Image() = %q, want none", v, got)
		}
	}
}
