package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/health"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// The verdict table of the README, row by row: only evidence against the
// image blames it (issue 17).
func TestVerdictOf(t *testing.T) {
	healthErr := func(h config.Health) error {
		return health.Check(context.Background(), h, "x:1", "1")
	}
	noAnswer := healthErr(config.Health{URL: config.Secret{Value: "http://127.0.0.1:1/"}, ExpectStatus: 200, Timeout: 50 * time.Millisecond, Interval: 10 * time.Millisecond})
	noToken := health.Preflight(config.Health{URL: config.Secret{Value: "http://x/"}, Authorization: config.Secret{Env: "AUTODEPLOY_TEST_UNSET_BLAME_TOKEN"}})
	tests := []struct {
		name string
		err  error
		want rollout.Cause
	}{
		{"a classified pull error", &rollout.FailedError{Cause: rollout.CauseImage}, rollout.CauseImage},
		{"a quota, wrapped by the run's timeout", fmt.Errorf("rollout did not finish within 1m; last status: x; %w", &rollout.FailedError{Cause: rollout.CauseCluster, Timeout: true}), rollout.CauseCluster},
		{"a timeout without pod evidence", fmt.Errorf("rollout did not finish: %w", &rollout.FailedError{Cause: rollout.CauseUnknown, Timeout: true}), rollout.CauseUnknown},
		{"a health check that never answered", noAnswer, rollout.CauseUnknown},
		{"a health credential that cannot be read", noToken, rollout.CauseSetup},
		{"an error nobody classified", errors.New("an API error nobody classified"), rollout.CauseUnknown},
	}
	for _, tt := range tests {
		if got, _ := verdictOf(tt.err); got != tt.want {
			t.Errorf("%s: verdictOf(%v) = %s, want %s", tt.name, tt.err, got, tt.want)
		}
	}
	// The cluster's own words travel with the verdict, through wrapping.
	quota := fmt.Errorf("rollout did not finish: %w", &rollout.FailedError{Cause: rollout.CauseCluster, Evidence: "exceeded quota: pods=3"})
	if _, ev := verdictOf(quota); ev != "exceeded quota: pods=3" {
		t.Errorf("evidence = %q", ev)
	}
}

// A deploy or verify whose health check cannot be sent becomes a problem
// before the patch; anything else passes through.
func TestPreflight(t *testing.T) {
	s := svc()
	s.Health = &config.Health{URL: config.Secret{Value: "http://x/"}, Authorization: config.Secret{Env: "AUTODEPLOY_TEST_UNSET_PREFLIGHT_TOKEN"}}
	for _, a := range []Action{Deploy, Verify} {
		dec := preflight(Decision{Action: a, Target: repo + ":sha-bbb"}, s)
		// The fix is the variable's, not a file's (issue 18, seventh pass).
		if dec.Action != Skip || !dec.Problem || !strings.HasPrefix(dec.Fix, "set AUTODEPLOY_TEST_UNSET_PREFLIGHT_TOKEN in the environment runs have") || strings.Contains(dec.Fix, "file") || dec.Alert == "" || !strings.Contains(dec.Reason, "AUTODEPLOY_TEST_UNSET_PREFLIGHT_TOKEN") {
			t.Errorf("%s: %+v", a, dec)
		}
	}
	if dec := preflight(Decision{Action: UpToDate}, s); dec.Action != UpToDate {
		t.Errorf("up to date became %s", dec.Action)
	}
	s.Health = nil
	if dec := preflight(Decision{Action: Deploy}, s); dec.Action != Deploy {
		t.Errorf("no health check: %s", dec.Action)
	}
}

// Which end of a wait is a verdict on the image: only verdictFailed goes
// on to verdictOf and the rollback.
func TestJudge(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, "api", errors.New("rbac"))
	for _, tt := range []struct {
		name        string
		interrupted bool
		err         error
		want        verdict
	}{
		{"passed", false, nil, verdictVerified},
		{"interrupted, whatever the error", true, &rollout.FailedError{Cause: rollout.CauseImage}, verdictInterrupted},
		{"superseded", false, fmt.Errorf("wait: %w", &rollout.SupersededError{By: "kubectl-set"}), verdictSuperseded},
		{"deleted", false, fmt.Errorf("wait: %w", rollout.ErrDeleted), verdictDeleted},
		{"paused", false, rollout.ErrPausedWait, verdictPaused},
		{"unobserved", false, &rollout.UnobservedError{}, verdictUnjudged},
		{"refused by RBAC", false, forbidden, verdictUnjudged},
		{"runTimeout spent", false, fmt.Errorf("%w (runTimeout 15m)", errBudget), verdictUnjudged},
		{"a pod problem", false, &rollout.FailedError{Cause: rollout.CauseImage}, verdictFailed},
		{"a health check", false, errors.New("health check: 500"), verdictFailed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := judge(tt.interrupted, tt.err); got != tt.want {
				t.Errorf("judge(%v, %v) = %d, want %d", tt.interrupted, tt.err, got, tt.want)
			}
		})
	}
}
