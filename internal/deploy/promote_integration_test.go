//go:build integration

package deploy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
	"github.com/autodeploy-dev/autodeploy/internal/notify"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// Issue 19, promotion: staging -> production on the local cluster.

// A good image: staging deploys and soaks it; the next run promotes it to
// production, after the soak; a late-crash-* image fails its soak in
// staging, is rolled back there and never reaches production.
func TestPromotionAfterTheSourcesSoak(t *testing.T) {
	e := kubetest.New(t)
	f := newFixture(t, e, fluxsim.V1, []svcSpec{
		{name: "staging", image: reg + "api:sha-1111111", extra: "    soak: 8s\n"}, // late-crash-* restarts ~5 s after Ready
		{name: "production", image: reg + "api:sha-1111111", noPolicy: true, extra: "    promote: {from: staging}\n"},
	}, "")
	f.refl.Push("staging", reg+"api:sha-2222222")
	res := f.run(t, deploy.Options{})
	wantOutcome(t, res, "staging", deploy.OutcomeDeployed)
	// Planned before staging's deploy: it ran what production runs.
	wantOutcome(t, res, "production", deploy.OutcomeUpToDate)
	if m, ok := deploy.ParseSoak(e.GetDeployment("staging").Annotations); !ok || !m.Passed {
		t.Fatalf("staging's soak: %+v %v", m, ok)
	}
	s := wantOutcome(t, f.run(t, deploy.Options{}), "production", deploy.OutcomeDeployed)
	if s.Target != reg+"api:sha-2222222" || !strings.Contains(s.Reason, "promoted from staging") {
		t.Errorf("promotion: %+v", s.Decision)
	}
	if c := e.GetDeployment("production").Annotations[rollout.ChangeCauseAnnotation]; !strings.Contains(c, "(promoted from staging)") {
		t.Errorf("change-cause %q", c)
	}
	wantOutcome(t, f.run(t, deploy.Options{}), "production", deploy.OutcomeUpToDate)

	// A late crash in staging: rolled back there, never promoted.
	f.refl.Push("staging", reg+"api:late-crash-3333333")
	res = f.run(t, deploy.Options{})
	wantOutcome(t, res, "staging", deploy.OutcomeRolledBack)
	wantOutcome(t, f.run(t, deploy.Options{}), "production", deploy.OutcomeUpToDate)
	if img := kubetest.Image(e.GetDeployment("production")); img != reg+"api:sha-2222222" {
		t.Fatalf("production runs %s", img)
	}
}

// promote.after counts from the verification in the source, on the clock
// the run is given.
func TestPromotionWaitsForAfter(t *testing.T) {
	e := kubetest.New(t)
	f := newFixture(t, e, fluxsim.V1, []svcSpec{
		{name: "staging", image: reg + "api:sha-1111111"},
		{name: "production", image: reg + "api:sha-1111111", noPolicy: true, extra: "    promote: {from: staging, after: 1h}\n"},
	}, "")
	f.refl.Push("staging", reg+"api:sha-2222222")
	wantOutcome(t, f.run(t, deploy.Options{}), "staging", deploy.OutcomeDeployed)
	s := wantOutcome(t, f.run(t, deploy.Options{}), "production", deploy.OutcomeSkipped)
	if !strings.Contains(s.Reason, "is promoted from staging at") || !strings.Contains(s.Reason, "promote.after 1h0m0s") {
		t.Errorf("before after: %+v", s.Decision)
	}
	r := f.runner()
	r.Now = func() time.Time { return time.Now().Add(time.Hour) }
	res, err := r.Run(t.Context(), "test", deploy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, res, "production", deploy.OutcomeDeployed)
}

// autodeploy promote: now, without waiting for promote.after; who and why
// reach the change-cause's reason and the notification.
func TestPromoteNow(t *testing.T) {
	e := kubetest.New(t)
	f := newFixture(t, e, fluxsim.V1, []svcSpec{
		{name: "staging", image: reg + "api:sha-1111111"},
		{name: "production", image: reg + "api:sha-1111111", noPolicy: true, extra: "    promote: {from: staging, after: 1h}\n"},
	}, "")
	f.refl.Push("staging", reg+"api:sha-2222222")
	wantOutcome(t, f.run(t, deploy.Options{}), "staging", deploy.OutcomeDeployed)
	r := f.runner()
	ev := newEvents(t)
	r.Notify = notify.New([]config.Notify{{Type: config.NotifyWebhook, Name: "test", URL: config.Secret{Value: ev.url}, MinLevel: "info", Timeout: 10 * time.Second}}, r.Log)
	res, err := r.Run(t.Context(), "promote", deploy.Options{Services: []string{"production"},
		Promote: &deploy.PromoteNow{Service: "production", By: "alice@bastion", Reason: "customer fix"}})
	if err != nil {
		t.Fatal(err)
	}
	s := wantOutcome(t, res, "production", deploy.OutcomeDeployed)
	if s.Target != reg+"api:sha-2222222" || !strings.Contains(s.Reason, "by alice@bastion (autodeploy promote): customer fix") {
		t.Errorf("promote: %+v", s.Decision)
	}
	if k := ev.kinds(); len(k) != 1 || k[0] != notify.Promoted || ev.got[0].Source == "" || ev.got[0].By != "alice@bastion" || !strings.Contains(ev.got[0].Reason, "customer fix") {
		t.Errorf("notifications %v %+v", k, ev.got)
	}
	// The deployment controller copies the promotion record to the new
	// revision's ReplicaSet, where history reads it.
	d := e.GetDeployment("production")
	rss, err := rollout.ListOwned(t.Context(), e.Kube, d)
	if err != nil {
		t.Fatal(err)
	}
	cur := rollout.Current(d, rss)
	if cur == nil {
		t.Fatalf("no current ReplicaSet among %d", len(rss))
	}
	if p, ok := deploy.ParsePromotion(cur.Annotations, reg+"api:sha-2222222"); !ok || p.From != "staging" || p.By != "alice@bastion" || p.Reason != "customer fix" {
		t.Errorf("the current ReplicaSet's promotion record: %+v, %v (%v)", p, ok, cur.Annotations)
	}
}
