package fluxsim

import (
	"slices"
	"testing"
)

// A policy's choice: the scan drops excluded tags for every policy; each
// policy's filterTags then passes its own (a promotion's ^tag$ selects
// exactly that tag, newer pushes or not).
func TestSelectImageAppliesFilterTags(t *testing.T) {
	r := &Reflector{images: map[string][]string{"api": {
		"r/api:sha-1111111", "r/api:sha-2222222", "r/api:late-crash-3333333", "r/api:sha-4444444",
	}}}
	for _, tt := range []struct {
		name, pattern string
		exclusions    []string
		want          string
		kept          []string
	}{
		{"no filter: the newest pushed", "", nil, "r/api:sha-4444444", []string{"sha-1111111", "sha-2222222", "late-crash-3333333", "sha-4444444"}},
		{"the stand-in's pattern passes KWOK tags", PolicyPattern, []string{"^sha-4444444$"}, "r/api:late-crash-3333333", nil},
		{"the seed's sha pattern skips late-crash", "^sha-[a-f0-9]+$", []string{"^sha-4444444$"}, "r/api:sha-2222222", []string{"sha-1111111", "sha-2222222", "late-crash-3333333"}},
		{"a promotion's exact tag", `^sha-2222222$`, nil, "r/api:sha-2222222", nil},
		{"an exact tag the exclusionList drops: nothing", `^sha-2222222$`, []string{"^sha-2222222$"}, "", nil},
		{"a tag never pushed: nothing", `^sha-9999999$`, nil, "", nil},
		{"an invalid pattern passes nothing", `^(sha$`, nil, "", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, kept := r.selectImage("api", tt.exclusions, tt.pattern)
			if got != tt.want {
				t.Errorf("selected %q, want %q", got, tt.want)
			}
			if tt.kept != nil && !slices.Equal(kept, tt.kept) {
				t.Errorf("kept %q, want %q", kept, tt.kept)
			}
		})
	}
}
