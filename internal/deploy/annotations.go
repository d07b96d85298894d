package deploy

import (
	"encoding/json"
	"time"
)

// Annotations autodeploy keeps on each Deployment it manages. They are the
// only state it has between runs, kept where `kubectl describe` shows it.
const (
	prefix = "autodeploy.dev/"
	// AnnDeployedImage is the image autodeploy last set.
	AnnDeployedImage = prefix + "deployed-image"
	// AnnVerified is "false" from the patch until the rollout and health
	// check passed, then "true". A run interrupted in between leaves
	// "false", and the next run verifies before anything else.
	AnnVerified = prefix + "verified"
	// AnnPreviousRevision is the revision that ran before autodeploy's
	// patch: where an automatic rollback goes.
	AnnPreviousRevision = prefix + "previous-revision"
	// AnnFailedImage remembers the last image that failed (FailedImage
	// JSON), so later runs do not try it again.
	AnnFailedImage = prefix + "failed-image"
	// AnnHold freezes a service (Hold JSON); `autodeploy resume` clears it.
	AnnHold = prefix + "hold"
)

// FailedImage is the value of AnnFailedImage.
type FailedImage struct {
	Image  string    `json:"image"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Hold is the value of AnnHold.
type Hold struct {
	By     string    `json:"by"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// From is the image rolled back from, when the hold came from a rollback.
	From string `json:"from,omitempty"`
	// Kustomization is namespace/name of a Flux Kustomization suspended with
	// the hold, to resume with it.
	Kustomization string `json:"kustomization,omitempty"`
}

// ParseFailedImage reads AnnFailedImage; ok is false when absent or garbled.
func ParseFailedImage(ann map[string]string) (FailedImage, bool) {
	var f FailedImage
	v, ok := ann[AnnFailedImage]
	if !ok || json.Unmarshal([]byte(v), &f) != nil || f.Image == "" {
		return FailedImage{}, false
	}
	return f, true
}

// ParseHold reads AnnHold. A garbled value still holds: when in doubt, do
// not deploy.
func ParseHold(ann map[string]string) (Hold, bool) {
	v, ok := ann[AnnHold]
	if !ok {
		return Hold{}, false
	}
	var h Hold
	if err := json.Unmarshal([]byte(v), &h); err != nil {
		h = Hold{Reason: "unreadable hold annotation: " + v}
	}
	return h, true
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain structs of strings and times are marshalled
	}
	return string(b)
}
