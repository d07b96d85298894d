package deploy

import (
	"errors"
	"fmt"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/health"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

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
	dec.Fix = "set the variable in the environment runs have (cron, the systemd unit, the CronJob's Secret) or make the file readable; autodeploy doctor checks it"
	dec.Alert = "setup:" + err.Error()
	return dec
}
