//go:build integration

package deploy_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
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

// Promotion under GitOps (issue 19): staging and production are both
// applied from git, each Deployment "api" in its own namespace, as a
// repository with one directory per environment has them (one
// Kustomization with no targetNamespace). Staging's image line names its
// policy; production's names the ImagePolicy autodeploy owns for it
// (autodeploy-production, in the Flux namespace, not in git). A good
// image verified in staging is promoted: git, the cluster and Flux agree
// afterwards, and Flux's next apply writes nothing. An image that fails in
// production only (its soak; staging has none) is rolled back there, the
// rollback sticks after Flux's next apply, git has the previous tag, and
// the image is never promoted again.
func TestPromotionUnderGitOps(t *testing.T) {
	e := kubetest.New(t)
	ns, prodNS := e.Namespace, kubetest.NewNamespace(t, "production")
	img1, img2, bad := reg+"api:sha-1111111", reg+"api:sha-2222222", reg+"api:late-crash-3333333"
	const owned = "autodeploy-production"
	f := newFixture(t, e, fluxsim.V1, []svcSpec{
		{name: "staging", image: img1, noDeploy: true, extra: "    deployment: api\n    soak: 0s\n"},
		// late-crash-* restarts ~5 s after Ready: within production's soak.
		{name: "production", image: img1, noDeploy: true, noPolicy: true, extra: "    namespace: " + prodNS + "\n    deployment: api\n    promote: {from: staging}\n    soak: 10s\n"},
	}, "")
	g := e.StartGitOps(fluxsim.GitOptions{Path: "./apps", ImageVersion: fluxsim.V1, ManifestNamespaces: true, Files: map[string]string{
		"apps/staging.yaml":    fluxsim.EnvironmentManifest(ns, "api", img1, ns+":staging", 1),
		"apps/production.yaml": fluxsim.EnvironmentManifest(prodNS, "api", img1, ns+":"+owned, 1),
	}})
	for _, n := range []string{ns, prodNS} {
		if _, err := rollout.Wait(t.Context(), e.Kube, n, "api", rollout.WaitOptions{}); err != nil {
			t.Fatalf("first apply of %s/api: %v", n, err)
		}
	}
	production := func() *appsv1.Deployment {
		t.Helper()
		d, err := e.Kube.AppsV1().Deployments(prodNS).Get(t.Context(), "api", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	gf := &gitops{fixture: f, g: g, events: newEvents(t)}
	ownedPolicy := func() *unstructured.Unstructured {
		t.Helper()
		u, err := e.Dynamic.Resource(fluxsim.V1.GVR("imagepolicies")).Namespace(ns).Get(t.Context(), owned, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	// agree: git's production manifest, the owned policy, the automation
	// and the Kustomization's applied revision all have img, and a
	// Kustomization interval then writes nothing.
	agree := func(img string) {
		t.Helper()
		gf.gitImage(t, "production", img)
		tag := img[strings.LastIndex(img, ":")+1:]
		if p := flux.ParsePolicy(ownedPolicy()); p.Latest != img || !p.Ready {
			t.Errorf("ImagePolicy %s selects %q (ready %v), want %s", owned, p.Latest, p.Ready, img)
		}
		au, err := e.Dynamic.Resource(fluxsim.V1.GVR("imageupdateautomations")).Namespace(ns).Get(t.Context(), fluxsim.AutomationName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, _, _ := unstructured.NestedString(au.Object, "status", "observedPolicies", owned, "tag"); got != tag {
			t.Errorf("the automation observed %s at %q, want %s", owned, got, tag)
		}
		gf.settle(t)
		if err := g.Fetch(t.Context()); err != nil {
			t.Fatal(err)
		}
		before, applies := production(), g.Applies()
		if err := g.ReconcileKustomization(t.Context()); err != nil {
			t.Fatal(err)
		}
		after := production()
		if kubetest.Image(after) != img || g.Applies() != applies || !equality.Semantic.DeepEqual(after.Spec.Template, before.Spec.Template) {
			t.Errorf("after Flux's apply production runs %s (applies %d -> %d), want %s untouched", kubetest.Image(after), applies, g.Applies(), img)
		}
		rev, err := g.Revision(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		k, err := e.Dynamic.Resource(flux.KustomizationGVR).Namespace(ns).Get(t.Context(), fluxsim.KustomizationName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if applied, _, _ := unstructured.NestedString(k.Object, "status", "lastAppliedRevision"); applied != rev {
			t.Errorf("Kustomization applied %q, the source has %q", applied, rev)
		}
	}

	// A good image: verified in staging, then promoted through the owned
	// policy, which the first promotion creates.
	f.refl.Push("staging", img2)
	res := gf.run(t)
	wantOutcome(t, res, "staging", deploy.OutcomeDeployed)
	wantOutcome(t, res, "production", deploy.OutcomeUpToDate) // planned before staging's deploy
	s := wantOutcome(t, gf.run(t), "production", deploy.OutcomeDeployed)
	if s.Target != img2 || s.PromotionPolicy != ns+"/"+owned {
		t.Fatalf("promotion: %+v", s.Decision)
	}
	if u := ownedPolicy(); u.GetLabels()["app.kubernetes.io/managed-by"] != "autodeploy" || u.GetAnnotations()["autodeploy.dev/promotion-of"] != "production" {
		t.Errorf("owned policy's record: labels %v, annotations %v", u.GetLabels(), u.GetAnnotations())
	}
	agree(img2)
	wantOutcome(t, gf.run(t), "production", deploy.OutcomeUpToDate)

	// An image that fails in production only: staging (no soak) keeps it,
	// production's soak catches the late crash and rolls back.
	f.refl.Push("staging", bad)
	wantOutcome(t, gf.run(t), "staging", deploy.OutcomeDeployed)
	s = wantOutcome(t, gf.run(t), "production", deploy.OutcomeRolledBack)
	if s.Target != bad {
		t.Fatalf("failed promotion: %+v", s.Decision)
	}
	if fi, ok := deploy.ParseFailedImage(production().Annotations); !ok || fi.Image != bad {
		t.Errorf("failed-image %+v %v, want %s", fi, ok, bad)
	}
	if l := gf.exclusionList(t, "staging"); slices.Contains(l, "^late-crash-3333333$") {
		t.Errorf("exclusionList of the shared ImageRepository %q: staging verified that image", l)
	}
	agree(img2) // the rollback sticks after Flux's next apply
	for range 2 {
		s = wantOutcome(t, gf.run(t), "production", deploy.OutcomeSkipped)
		if !strings.Contains(s.Reason, bad+" failed on") || kubetest.Image(production()) != img2 {
			t.Fatalf("after the failed promotion: %+v, runs %s", s.Decision, kubetest.Image(production()))
		}
	}
}
