package gitops

import (
	"strings"
	"testing"

	"github.com/autodeploy-dev/autodeploy/internal/image"
)

const testRepo = "ghcr.io/acme/api"

// Which failed images a rollback may exclude in the ImageRepository.
func TestExcludable(t *testing.T) {
	digest := "@sha256:" + strings.Repeat("a", 64)
	for _, tt := range []struct {
		img, why string
	}{
		{testRepo + ":sha-bad", ""},
		{testRepo + digest, "no tag"},
		// digestReflectionPolicy: the tag is mutable, later builds reuse it.
		{testRepo + ":main" + digest, "pinned by digest"},
	} {
		ref, err := image.Parse(tt.img)
		if got := Excludable(ref, err); tt.why == "" && got != "" || !strings.Contains(got, tt.why) {
			t.Errorf("Excludable(%s) = %q, want %q", tt.img, got, tt.why)
		}
	}
}
