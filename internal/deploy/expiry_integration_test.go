//go:build integration

package deploy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
)

// A hold placed with an end (hold --until) keeps the new image away until
// then; the first run after the end (the Runner's clock two hours on)
// removes the hold, from the Deployment and its ReplicaSets, and deploys.
func TestRunReleasesExpiredHoldAndDeploys(t *testing.T) {
	e := kubetest.New(t)
	f := newFixture(t, e, fluxsim.V1, []svcSpec{{name: "api", image: reg + "api:sha-1111111"}}, "")
	svc, _ := f.cfg.Service("api")
	m := &deploy.Manager{Kube: e.Kube, Dynamic: e.Dynamic, Log: runlog.Discard(), Now: time.Now, By: "alice@bastion"}
	if _, err := m.HoldUntil(context.Background(), svc, "release freeze", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	f.refl.Push("api", reg+"api:sha-2222222")

	s := wantOutcome(t, f.run(t, deploy.Options{}), "api", deploy.OutcomeSkipped)
	if !s.Held || !strings.Contains(s.Reason, "until ") {
		t.Fatalf("before the end: %+v", s.Decision)
	}

	r := f.runner()
	r.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	res, err := r.Run(context.Background(), "later", deploy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, res, "api", deploy.OutcomeDeployed)
	d := e.GetDeployment("api")
	if _, held := deploy.ParseHold(d.Annotations); held {
		t.Errorf("the expired hold is still on the Deployment: %v", d.Annotations)
	}
	if img := kubetest.Image(d); img != reg+"api:sha-2222222" {
		t.Errorf("image = %s", img)
	}
	rss, err := rollout.ListOwned(context.Background(), e.Kube, d)
	if err != nil {
		t.Fatal(err)
	}
	for _, rs := range rss {
		if _, held := deploy.ParseHold(rs.Annotations); held {
			t.Errorf("ReplicaSet %s keeps the expired hold (an undo would bring it back)", rs.Name)
		}
	}
	f.mu.Lock()
	log := f.log.String()
	f.mu.Unlock()
	if !strings.Contains(log, `msg="hold expired" svc=api heldBy=alice@bastion`) {
		t.Errorf("log does not say the hold expired:\n%s", log)
	}
}

// A deploy window closed at the Runner's clock keeps the new image away
// (skipped, not a problem); --ignore-windows deploys it.
func TestRunDeployWindowAndIgnoreWindows(t *testing.T) {
	e := kubetest.New(t)
	// Opens at the top of every hour for one minute; the Runner's clock is
	// set to half past, so it is closed.
	f := newFixture(t, e, fluxsim.V1, []svcSpec{{name: "api", image: reg + "api:sha-1111111",
		extra: "    rolloutTimeout: 60s\n    deployWindows: [{cron: \"0 * * * *\", duration: 1m}]\n"}}, "")
	f.refl.Push("api", reg+"api:sha-2222222")
	halfPast := func() time.Time {
		n := time.Now().UTC()
		return n.Truncate(time.Hour).Add(30 * time.Minute).Add(time.Duration(n.Second()) * time.Second)
	}
	r := f.runner()
	r.Now = halfPast
	res, err := r.Run(context.Background(), "closed", deploy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := wantOutcome(t, res, "api", deploy.OutcomeSkipped)
	if s.Problem || !s.OutsideWindow || !strings.Contains(s.Reason, "outside its deploy window, next opens") {
		t.Fatalf("closed window: %+v", s.Decision)
	}
	if img := kubetest.Image(e.GetDeployment("api")); img != reg+"api:sha-1111111" {
		t.Fatalf("deployed outside the window: %s", img)
	}
	r = f.runner()
	r.Now = halfPast
	res, err = r.Run(context.Background(), "emergency", deploy.Options{IgnoreWindows: true})
	if err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, res, "api", deploy.OutcomeDeployed)
	f.mu.Lock()
	log := f.log.String()
	f.mu.Unlock()
	if !strings.Contains(log, "deploy windows ignored (--ignore-windows)") {
		t.Errorf("log does not say the windows were ignored:\n%s", log)
	}
}
