//go:build integration

package deploy_test

import (
	"fmt"
	"testing"

	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
)

// Issue 17 item 11: with Flux 2.6 (ImagePolicy v1beta2, no policy
// reconcile request) 1 or 2 of every 10 pushes were deployed one cron
// period late. The controller re-evaluates a policy on every write of its
// repository, the progress write before the scan included, so the
// policy is written once with the old tags before the scan's tags are in
// (fluxsim plays that order). Every push must be deployed by the run whose
// rescan found it: 10 in a row, 10 of 10.
func TestFlux26EveryPushDeployedByItsRun(t *testing.T) {
	e := kubetest.ForFlux(t, "2.6")
	f := newFixture(t, e, fluxsim.Flux26, []svcSpec{{name: "api", image: reg + "api:sha-0000000"}}, "")
	const pushes = 10
	deployed := 0
	for i := 1; i <= pushes; i++ {
		// Fixed-width hex: each push sorts after the one before, as the
		// policy's alphabetical order ranks them.
		img := fmt.Sprintf("%sapi:sha-%07x", reg, i)
		f.refl.Push("api", img)
		s := outcome(t, f.run(t, deploy.Options{}), "api")
		if s.Outcome == deploy.OutcomeDeployed && s.Target == img {
			deployed++
			continue
		}
		t.Errorf("push %d (%s): the run that rescanned it did %s %s (%s)", i, img, s.Outcome, s.Target, s.Reason)
	}
	t.Logf("deployed by the run whose rescan found it: %d/%d", deployed, pushes)
}

// Both services pushed before one run: that run deploys both, each policy
// judged against its own repository's scan.
func TestFlux26BothServicesOneRun(t *testing.T) {
	e := kubetest.ForFlux(t, "2.6")
	f := newFixture(t, e, fluxsim.Flux26, []svcSpec{
		{name: "api", image: reg + "api:sha-1111111"},
		{name: "web", image: reg + "web:sha-1111111"},
	}, "")
	for round := 2; round <= 4; round++ {
		tag := fmt.Sprintf("sha-%d%d%d%d%d%d%d", round, round, round, round, round, round, round)
		f.refl.Push("api", reg+"api:"+tag)
		f.refl.Push("web", reg+"web:"+tag)
		res := f.run(t, deploy.Options{})
		for _, svc := range []string{"api", "web"} {
			if s := outcome(t, res, svc); s.Outcome != deploy.OutcomeDeployed || s.Target != reg+svc+":"+tag {
				t.Errorf("round %d, %s: %s %s (%s), want deployed %s", round, svc, s.Outcome, s.Target, s.Reason, tag)
			}
		}
	}
}
