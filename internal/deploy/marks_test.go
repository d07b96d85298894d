package deploy

import (
	"slices"
	"testing"
	"time"
)

// Which marks read as garbage: what each reader takes as absent, never a
// mark being cleared ("") nor a value autodeploy writes (issue 18, tenth pass).
func TestUnreadableMarks(t *testing.T) {
	for _, tt := range []struct {
		name string
		ann  map[string]string
		keys []string
	}{
		{"none", nil, nil},
		{"written by autodeploy", map[string]string{AnnVerified: "false", AnnPreviousRevision: "0", AnnSoak: mustJSON(SoakMark{Image: "r/a:1", Until: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}), AnnRetry: mustJSON(Retry{Image: "r/a:1"})}, nil},
		{"cleared", map[string]string{AnnVerified: "", AnnFailedImage: "", AnnSoakBefore: ""}, nil},
		{"garbled hold holds, said by its readers", map[string]string{AnnHold: "{"}, nil},
		{"each garbled", map[string]string{AnnFailedImage: "{}", AnnPreviousRevision: "x", AnnRetry: "null", AnnSoak: "[]", AnnSoakBefore: "{", AnnVerified: "yes"},
			[]string{AnnFailedImage, AnnPreviousRevision, AnnRetry, AnnSoak, AnnSoakBefore, AnnVerified}},
		{"negative revision", map[string]string{AnnPreviousRevision: "-1"}, []string{AnnPreviousRevision}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			marks, keys := UnreadableMarks(tt.ann)
			if !slices.Equal(keys, tt.keys) || len(marks) != len(keys) {
				t.Errorf("keys %q (marks %q), want %q", keys, marks, tt.keys)
			}
		})
	}
}
