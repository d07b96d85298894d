package deploy

import (
	"errors"
	"fmt"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/health"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// verdict is what a run learnt of its own rollout by waiting for it and
// checking it: judge decides it, once, and execute acts on it in one switch.
type verdict int

const (
	// verdictVerified: the rollout completed and the health check passed.
	verdictVerified verdict = iota
	// verdictInterrupted: a signal, a lost lock or the run's deadline cut
	// the wait: left unverified for the next run.
	verdictInterrupted
	// verdictSuperseded: someone else changed the template during the
	// rollout; their change stands.
	verdictSuperseded
	// verdictDeleted: the Deployment was deleted: nothing to judge or to
	// roll back.
	verdictDeleted
	// verdictPaused: a person paused the rollout: their decision, not a
	// verdict on the image; left unverified.
	verdictPaused
	// verdictUnjudged: nothing was learnt about the image (the API could
	// not be watched or was refused, runTimeout was spent): left
	// unverified, never rolled back.
	verdictUnjudged
	// verdictFailed: the rollout failed; verdictOf says whose fault it is.
	verdictFailed
)

// judge turns the end of a rollout's wait and check (err, nil on success)
// into a verdict. interrupted: the run's context ended (a signal, the lock,
// the deadline).
func judge(interrupted bool, err error) verdict {
	var (
		sup   *rollout.SupersededError
		unobs *rollout.UnobservedError
	)
	switch {
	case interrupted:
		return verdictInterrupted
	case err == nil:
		return verdictVerified
	case errors.As(err, &sup):
		return verdictSuperseded
	case errors.Is(err, rollout.ErrDeleted):
		return verdictDeleted
	case errors.Is(err, rollout.ErrPausedWait):
		return verdictPaused
	case errors.As(err, &unobs), apierrors.IsForbidden(err), errors.Is(err, errBudget):
		return verdictUnjudged
	}
	return verdictFailed
}

// verdictOf says who the error that ended a rollout blames, with the
// cluster's (or the health check's) own words for it ("" when there are
// none): this is where a verdict's cause is decided, on evidence only. The
// image is blamed for a classified pod problem of its own
// (rollout.Classify, rollout's evidence at a deadline) and for a health
// check that answered wrong; everything else (a health check that never
// answered, an error nobody classified) blames no one, so that a good
// image is never remembered as failed (issue 17: a quota, a cordoned
// cluster, a registry outage or a missing credential did).
func verdictOf(err error) (cause rollout.Cause, evidence string) {
	var (
		fe *rollout.FailedError
		he *health.Error
	)
	switch {
	case errors.As(err, &fe):
		return fe.Cause, fe.Evidence
	case errors.As(err, &he) && he.Setup:
		return rollout.CauseSetup, he.Error()
	case errors.As(err, &he) && he.Answered:
		return rollout.CauseImage, he.Error()
	case errors.As(err, &he):
		return rollout.CauseUnknown, he.Error()
	}
	return rollout.CauseUnknown, ""
}

// preflight turns a deploy or verify whose health check cannot be sent
// (its credential is missing) into a problem before anything is patched:
// deploying first would fail a good image for autodeploy's own setup.
func preflight(dec Decision, s config.Service) Decision {
	if s.Health == nil || (dec.Action != Deploy && dec.Action != Verify) {
		return dec
	}
	err := health.Preflight(*s.Health)
	if err == nil {
		return dec
	}
	dec.Action, dec.Problem = Skip, true
	dec.Reason = fmt.Sprintf("%s is not deployed: %v", dec.Target, err)
	dec.Fix = config.SecretFix(err) + "; autodeploy doctor checks it"
	dec.Alert = "setup:" + err.Error()
	return dec
}
