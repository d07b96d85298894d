package deploy

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/autodeploy-dev/autodeploy/internal/image"
)

// Every mark autodeploy writes, in one place. They are the only state it
// has between runs, kept where `kubectl describe` shows it (the levers on
// Flux and their records are internal/gitops's: see its doc.go).
//
//	key                        on                  format          set by                                cleared by                                       on the ReplicaSets
//	deployed-image             Deployment          image ref       the deploy patch                      superseded, rollback, forget (kept once verified) copied by the controller; stripped from a
//	verified                   Deployment          "false"/"true"  the deploy patch / markVerified       superseded, rollback, forget                      superseding revision's (superseded)
//	previous-revision          Deployment          revision        the deploy patch                      markVerified (soaked), superseded, rollback, forget same
//	soak                       Deployment          SoakMark        markVerified (every verification)     deploy, superseded, rollback, forget              same
//	failed-image               Deployment          FailedImage     rollback (automatic, manual)          resume --forget-failed, forget                   copied by the manual rollback (undo keeps it)
//	retry                      Deployment          Retry           a rollback for a cause not the image  markVerified, resume --forget-failed, forget     no
//	hold                       Deployment          Hold            hold, manual rollback                 resume, forget                                   copied (undo keeps the hold)
//	promotion                  Deployment          Promotion       the deploy patch of a promoted service the next deploy patch, forget                     copied by the controller (history shows it)
//	alerted                    Deployment          problem key     alert (a problem notified)            alert once the problem is gone, forget          no
//	kubernetes.io/change-cause Deployment          text            deploy, rollback                      superseded (rewritten for the other writer)      copied by the controller (history shows it)
//	reconcile-disabled         Deployment          ReconcileRecord manual rollback (gitops)              resume, a run once not held, forget              copied with its lever
//	exclusions                 ImageRepository     []Exclusion     rollback (gitops)                     a run (release), resume --forget-failed, forget  -
//	promotion-of (annotation)  ImagePolicy         service name    PointPolicy: the owned ImagePolicy    forget (deletes the policy)                      -
//	app.kubernetes.io/managed-by=autodeploy (label, with promotion-of: the owned policy's record; gitops.OwnedLabels)
//
// `autodeploy forget <service>` removes every one of them for a service.
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
	// AnnSoak dates a verification and its soak (SoakMark JSON), written
	// with verified=true; Passed at once without a soak, else once the
	// soak ended with no evidence against the image. previous-revision
	// stays until then: a soak that fails rolls back there. A promotion
	// reads it on its source.
	AnnSoak = prefix + "soak"
	// AnnSoakBefore keeps, from a deploy's patch until the new image's
	// soak passed, the passed soak mark of the image it replaced: an
	// automatic rollback back to that image restores it with
	// verified=true. Without it a staging service rolled back from a bad
	// build to its good one ran an image "not verified there" for good,
	// and its production could not be promoted to it until another build
	// passed (found by TestPromoteByHandSaysWhatItDid).
	AnnSoakBefore = prefix + "soak-before"
	// AnnFailedImage remembers the last image that failed (FailedImage
	// JSON), so later runs do not try it again.
	AnnFailedImage = prefix + "failed-image"
	// AnnHold freezes a service (Hold JSON); `autodeploy resume` clears it.
	AnnHold = prefix + "hold"
	// AnnRetry remembers an image whose rollout failed for another cause
	// than the image (the registry, its credentials, a missing Secret, the
	// cluster, autodeploy's setup, unknown: Retry JSON): runs try it again
	// after a growing interval. A deploy that succeeds, or
	// `autodeploy resume --forget-failed`, clears it.
	AnnRetry = prefix + "retry"
	// AnnPromotion records a promotion (Promotion JSON) in the deploy
	// patch of a promoted service: the deployment controller copies it to
	// the ReplicaSet it creates, where `history` reads it per revision.
	AnnPromotion = prefix + "promotion"
	// AnnAlerted is the key of the problem last notified (Decision.Alert),
	// so that people hear of a problem once, not every two minutes.
	AnnAlerted = prefix + "alerted"
)

// Retry is the value of AnnRetry.
type Retry struct {
	Image  string `json:"image"`
	Cause  string `json:"cause"`
	Reason string `json:"reason"`
	// Evidence is the cluster's own words for the cause ("exceeded quota:
	// pods=3", "0/2 nodes are available: ..."), shown by status.
	Evidence string    `json:"evidence,omitempty"`
	Attempts int       `json:"attempts"`
	After    time.Time `json:"after"`
}

// RetryBase and RetryMax bound the interval between tries of an image that
// failed for a passing cause: 2 minutes (the next cron run, as the seed's
// "retry automatique au prochain cycle" expects), doubling with each
// failure, at most an hour.
const (
	RetryBase = 2 * time.Minute
	RetryMax  = time.Hour
)

// NextRetry is the mark after one more failed try of img, given the
// Deployment's annotations (the attempts of the same image add up).
func NextRetry(ann map[string]string, img, cause, reason string, now time.Time) Retry {
	n := 1
	if old, ok := ParseRetry(ann); ok && old.Image == img {
		n = old.Attempts + 1
	}
	wait := RetryBase
	for i := 1; i < n && wait < RetryMax; i++ {
		wait *= 2
	}
	wait = min(wait, RetryMax)
	// A little less than the interval, so that a cron run landing a few
	// seconds early is not pushed to the next period.
	return Retry{Image: img, Cause: cause, Reason: reason, Attempts: n, After: now.Add(wait - 10*time.Second)}
}

// ParseRetry reads AnnRetry; ok is false when absent or garbled.
func ParseRetry(ann map[string]string) (Retry, bool) {
	var r Retry
	v, ok := ann[AnnRetry]
	if !ok || json.Unmarshal([]byte(v), &r) != nil || r.Image == "" {
		return Retry{}, false
	}
	return r, true
}

// SoakMark is the value of AnnSoak.
type SoakMark struct {
	Image string `json:"image"`
	// VerifiedAt is when the rollout and health check passed: evidence
	// counts from then.
	VerifiedAt time.Time `json:"verifiedAt"`
	Until      time.Time `json:"until"`
	Passed     bool      `json:"passed,omitempty"`
}

// ParseSoak reads AnnSoak.
func ParseSoak(ann map[string]string) (SoakMark, bool) {
	var m SoakMark
	v, ok := ann[AnnSoak]
	if !ok || json.Unmarshal([]byte(v), &m) != nil || m.Image == "" || m.Until.IsZero() {
		return SoakMark{}, false
	}
	return m, true
}

// Promotion is the value of AnnPromotion: whence the image came, and for
// `autodeploy promote`, who asked and why.
type Promotion struct {
	From   string    `json:"from"`
	Image  string    `json:"image"`
	At     time.Time `json:"at"`
	By     string    `json:"by,omitempty"`
	Reason string    `json:"reason,omitempty"`
}

// ParsePromotion reads AnnPromotion of a revision running img: the
// Deployment's annotations are copied to every new ReplicaSet, so a record
// naming another image (a later kubectl set image) is not this revision's.
func ParsePromotion(ann map[string]string, img string) (Promotion, bool) {
	var p Promotion
	v, ok := ann[AnnPromotion]
	if !ok || json.Unmarshal([]byte(v), &p) != nil || p.From == "" || !image.SameString(p.Image, img) {
		return Promotion{}, false
	}
	return p, true
}

// FailedImage is the value of AnnFailedImage.
type FailedImage struct {
	Image  string    `json:"image"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// RollbackError, when set, says the automatic rollback could not be
	// applied: the Deployment still runs Image. Runs do not try again (the
	// same error would come back every two minutes); `status` shows it.
	RollbackError string `json:"rollbackError,omitempty"`
}

// Hold is the value of AnnHold.
type Hold struct {
	By     string    `json:"by"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// From is the image rolled back from, when the hold came from a rollback.
	From string `json:"from,omitempty"`
	// Kustomization is namespace/name of a Flux Kustomization suspended with
	// the hold, to resume with it (holds of earlier versions, whose
	// rollback --suspend-flux suspended the whole Kustomization).
	Kustomization string `json:"kustomization,omitempty"`
	// ReconcileDisabled: the rollback set kustomize-controller's
	// per-object reconcile: disabled annotation on the Deployment, and
	// resume removes it.
	ReconcileDisabled bool `json:"reconcileDisabled,omitempty"`
	// Until, when set (hold --for, --until), is when the hold expires: from
	// then on runs plan as if it were released, and the next run removes
	// it. Zero holds until resume.
	Until time.Time `json:"until,omitzero"`
}

// ByWhom is " by <By>", or "" for a hold naming no one (a garbled
// annotation, another writer's record): "held by : ..." said nothing
// (issue 18, tenth pass).
func (h Hold) ByWhom() string {
	if h.By == "" {
		return ""
	}
	return " by " + h.By
}

// Expired reports whether the hold has an end and now has reached it.
func (h Hold) Expired(now time.Time) bool {
	return !h.Until.IsZero() && !now.Before(h.Until)
}

// heldAt reads AnnHold as it stands at now: a hold whose end has passed
// holds no more (expired reports it).
func heldAt(ann map[string]string, now time.Time) (h Hold, held, expired bool) {
	h, held = ParseHold(ann)
	if held && h.Expired(now) {
		return h, false, true
	}
	return h, held, false
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

// When is the failure's date as the plan says it: "on 2026-11-25 10:00",
// or that none is recorded (a record written by another hand said
// "failed on 0001-01-01 00:00"; issue 18, sixth pass).
func (f FailedImage) When() string {
	if f.At.IsZero() {
		return "at a time not recorded"
	}
	return "on " + f.At.UTC().Format("2006-01-02 15:04")
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

// UnreadableMarks names each of autodeploy's marks in ann that is set but
// cannot be read, as key="value" (Go escapes), with the keys. The readers
// above take such a mark as absent: a failed-image
// record garbled by hand lets runs try that image again and a garbled
// verified mark reads as verified, while `status` said "healthy" and
// nothing of it (issue 18, tenth pass). An empty value is a mark being
// cleared, not garbage. A garbled hold is not among them: it still holds,
// and every reader of it says "unreadable hold annotation".
func UnreadableMarks(ann map[string]string) (marks, keys []string) {
	checks := []struct {
		key string
		ok  func(string) bool
	}{
		{AnnFailedImage, func(v string) bool { _, ok := ParseFailedImage(map[string]string{AnnFailedImage: v}); return ok }},
		{AnnPreviousRevision, func(v string) bool { n, err := strconv.ParseInt(v, 10, 64); return err == nil && n >= 0 }},
		{AnnRetry, func(v string) bool { _, ok := ParseRetry(map[string]string{AnnRetry: v}); return ok }},
		{AnnSoak, func(v string) bool { _, ok := ParseSoak(map[string]string{AnnSoak: v}); return ok }},
		{AnnSoakBefore, func(v string) bool { _, ok := ParseSoak(map[string]string{AnnSoak: v}); return ok }},
		{AnnVerified, func(v string) bool { return v == "true" || v == "false" }},
	}
	for _, c := range checks {
		if v := ann[c.key]; v != "" && !c.ok(v) {
			marks = append(marks, fmt.Sprintf("%s=%s", c.key, truncate(strconv.Quote(v), 80)))
			keys = append(keys, c.key)
		}
	}
	return marks, keys
}

// UnreadableMarksNote is what status and doctor say of d's unreadable
// marks (UnreadableMarks), and the command that removes them; "" when none.
func UnreadableMarksNote(d *appsv1.Deployment) (detail, fix string) {
	marks, keys := UnreadableMarks(d.Annotations)
	if len(marks) == 0 {
		return "", ""
	}
	return fmt.Sprintf("autodeploy's marks unreadable: %s: runs take them as absent (a failed image may be tried again)", strings.Join(marks, ", ")),
		fmt.Sprintf("kubectl annotate deployment %s -n %s %s-", d.Name, d.Namespace, strings.Join(keys, "- "))
}
