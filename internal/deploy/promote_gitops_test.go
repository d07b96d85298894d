package deploy

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	k8stesting "k8s.io/client-go/testing"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/gitops"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
)

// The promotion lever in a run (issue 19): production (the fake
// cluster's Deployment, applied from git) is promoted from staging, which
// runs bbb verified and soaked. The owned ImagePolicy is pointed at the
// target before the Deployment's patch, and back at the image before when
// the rollout fails; the shared ImageRepository is never excluded from.
func TestRunPromotionUnderGitOps(t *testing.T) {
	const owned = "autodeploy-" + fcName
	ownedPolicy := func(labels, ann map[string]string, pattern string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": flux.ImageGroup + "/v1", "kind": "ImagePolicy",
			"metadata": map[string]any{"name": owned, "namespace": "flux-system"},
			"spec": map[string]any{"imageRepositoryRef": map[string]any{"name": fcName},
				"filterTags": map[string]any{"pattern": pattern}, "policy": map[string]any{"alphabetical": map[string]any{"order": "asc"}}},
		}}
		u.SetLabels(labels)
		u.SetAnnotations(ann)
		return u
	}
	record := map[string]string{gitops.LabelManagedBy: gitops.ManagedByAutodeploy}
	crash := behaviour{pod: waitingIn("CrashLoopBackOff", "back-off 10s restarting failed container="+fcName)}
	for _, tt := range []struct {
		name     string
		existing *unstructured.Unstructured
		behave   *behaviour
		outcome  Outcome
		applied  []string
		pattern  string // the owned policy's filterTags.pattern after the run
		failed   bool
		errHas   string
	}{
		{name: "first promotion: the owned policy is created before the patch", outcome: OutcomeDeployed, applied: []string{bbb}, pattern: `^sha-bbb$`},
		{name: "the owned policy, autodeploy's, is pointed at the target", existing: ownedPolicy(record, map[string]string{gitops.AnnPromotionOf: fcName}, `^sha-aaa$`),
			outcome: OutcomeDeployed, applied: []string{bbb}, pattern: `^sha-bbb$`},
		{name: "a failed promotion points the owned policy back: git follows the rollback", behave: &crash,
			outcome: OutcomeRolledBack, applied: []string{bbb, aaa}, pattern: `^sha-aaa$`, failed: true, errHas: "CrashLoopBackOff"},
		{name: "someone else's policy at the owned name: nothing is deployed or written", existing: ownedPolicy(nil, nil, `^v.*$`),
			outcome: OutcomeSkipped, pattern: `^v.*$`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeCluster(t, aaa, bbb, true)
			c.gitOpsSources("sha-aaa")
			if tt.existing != nil {
				c.must(c.dyn.Tracker().Add(tt.existing))
			}
			if tt.behave != nil {
				c.behave[bbb] = *tt.behave
			}
			// staging runs bbb, verified and soaked at 10:00 (fcNow).
			src := dep(bbb, 2, soakMark("sha-bbb", true))
			src.Namespace, src.UID = "staging", types.UID("staging-uid")
			src.Annotations[AnnSoak] = mustJSON(SoakMark{Image: bbb, VerifiedAt: fcNow.Add(-time.Hour), Until: fcNow.Add(-time.Hour), Passed: true})
			c.must(c.kube.Tracker().Add(src))
			// The automation writes what the owned policy selects, as it
			// is pointed (image-automation-controller: every policy of its
			// namespace), so that git follows at once.
			automate := func(a k8stesting.Action) (bool, runtime.Object, error) {
				_, obj, err := k8stesting.ObjectReaction(c.dyn.Tracker())(a)
				if err != nil {
					return true, obj, err
				}
				u := obj.(*unstructured.Unstructured)
				p, _, _ := unstructured.NestedString(u.Object, "spec", "filterTags", "pattern")
				if tag := strings.TrimSuffix(strings.TrimPrefix(p, "^"), "$"); gitops.OwnedBy(u, fcName) {
					aobj, err := c.dyn.Tracker().Get(fcAutomations, "flux-system", "flux-system")
					c.must(err)
					au := aobj.(*unstructured.Unstructured)
					c.must(unstructured.SetNestedField(au.Object, map[string]any{owned: map[string]any{"name": repo, "tag": tag}}, "status", "observedPolicies"))
					c.must(c.dyn.Tracker().Update(fcAutomations, au, "flux-system"))
				}
				return true, obj, nil
			}
			c.dyn.PrependReactor("create", "imagepolicies", automate)
			c.dyn.PrependReactor("patch", "imagepolicies", automate)
			// Before the Deployment's patch, the owned policy selects the
			// target's tag.
			var atPatch []string
			c.kube.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
				if u, err := c.dyn.Resource(fcPolicies).Namespace("flux-system").Get(t.Context(), owned, metav1.GetOptions{}); err == nil {
					p, _, _ := unstructured.NestedString(u.Object, "spec", "filterTags", "pattern")
					atPatch = append(atPatch, p)
				} else {
					atPatch = append(atPatch, "")
				}
				return false, nil, nil
			})
			staging := config.Service{Name: "staging", Namespace: "staging", Deployment: fcName, PolicyNamespace: "flux-system", PolicyName: fcName, RolloutTimeout: time.Minute, AutoRollback: true}
			prod := svc()
			prod.PolicyNamespace, prod.PolicyName = "", ""
			prod.Promote = &config.Promote{From: "staging", PolicyNamespace: "flux-system", PolicyName: owned, RootPolicyNamespace: "flux-system", RootPolicyName: fcName}
			var log bytes.Buffer
			r := c.runner(prod, nil, &log)
			r.Config.Services = []config.Service{staging, prod}
			res, err := r.Run(t.Context(), "test", Options{NoReconcile: true, Services: []string{prod.Name}})
			defer func() {
				if t.Failed() {
					t.Logf("run log:\n%s", log.String())
				}
			}()
			if err != nil {
				t.Fatal(err)
			}
			var sr *ServiceResult
			for i := range res.Services {
				if res.Services[i].Service == prod.Name {
					sr = &res.Services[i]
				}
			}
			if sr == nil {
				t.Fatalf("no result for %s: %+v", prod.Name, res.Services)
			}
			if sr.Outcome != tt.outcome || !strings.Contains(sr.Error, tt.errHas) {
				t.Fatalf("outcome %s (%s; %s), want %s", sr.Outcome, sr.Error, sr.Reason, tt.outcome)
			}
			if got := c.appliedImages(); !slices.Equal(got, tt.applied) {
				t.Errorf("rolled out %q, want %q", got, tt.applied)
			}
			if len(tt.applied) > 0 && (len(atPatch) == 0 || atPatch[0] != `^sha-bbb$`) {
				t.Errorf("the owned policy's pattern at the deploy's patch: %q, want ^sha-bbb$ first", atPatch)
			}
			u, err := c.dyn.Resource(fcPolicies).Namespace("flux-system").Get(t.Context(), owned, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if p, _, _ := unstructured.NestedString(u.Object, "spec", "filterTags", "pattern"); p != tt.pattern {
				t.Errorf("owned policy's pattern %q, want %q", p, tt.pattern)
			}
			if tt.existing == nil && !gitops.OwnedBy(u, prod.Name) {
				t.Errorf("created without its record: %v %v", u.GetLabels(), u.GetAnnotations())
			}
			if excl := c.exclusionList(); len(excl) > 0 {
				t.Errorf("exclusionList %q: the shared ImageRepository keeps the tag staging verified", excl)
			}
			f, failed := ParseFailedImage(c.deployment().Annotations)
			if failed != tt.failed || (failed && f.Image != bbb) {
				t.Errorf("failed-image %+v (%v), want %v", f, failed, tt.failed)
			}
			if tt.outcome == OutcomeSkipped && !strings.Contains(sr.Reason, "is not autodeploy's") {
				t.Errorf("reason %q", sr.Reason)
			}
		})
	}
}

// forget deletes the ImagePolicies autodeploy created for the service's
// promotions, found by their record, and nothing else: another service's
// owned policy and one without the record stay.
func TestForgetDeletesTheOwnedPolicy(t *testing.T) {
	for _, dryRun := range []bool{false, true} {
		c := newFakeCluster(t, aaa, bbb, true)
		mk := func(name string, labels, ann map[string]string) {
			u := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": flux.ImageGroup + "/v1", "kind": "ImagePolicy",
				"metadata": map[string]any{"name": name, "namespace": "flux-system"},
				"spec":     map[string]any{"imageRepositoryRef": map[string]any{"name": fcName}},
			}}
			u.SetLabels(labels)
			u.SetAnnotations(ann)
			c.must(c.dyn.Tracker().Add(u))
		}
		record := map[string]string{gitops.LabelManagedBy: gitops.ManagedByAutodeploy}
		mk("autodeploy-"+fcName, record, map[string]string{gitops.AnnPromotionOf: fcName})
		mk("renamed-owned", record, map[string]string{gitops.AnnPromotionOf: fcName}) // promote.imagePolicy renamed since
		mk("autodeploy-canary", record, map[string]string{gitops.AnnPromotionOf: "canary"})
		mk("theirs", nil, map[string]string{gitops.AnnPromotionOf: fcName})
		staging := config.Service{Name: "staging", Namespace: "staging", Deployment: fcName, PolicyNamespace: "flux-system", PolicyName: fcName}
		prod := svc()
		prod.PolicyNamespace, prod.PolicyName = "", ""
		prod.Promote = &config.Promote{From: "staging", PolicyNamespace: "flux-system", PolicyName: "autodeploy-" + fcName, RootPolicyNamespace: "flux-system", RootPolicyName: fcName}
		m := &Manager{Kube: c.kube, Dynamic: c.dyn, Log: runlog.New(&bytes.Buffer{}), Now: func() time.Time { return fcNow }, By: "alice@ops"}
		res, err := m.Forget(t.Context(), &config.Config{Services: []config.Service{staging, prod}}, prod.Name, dryRun)
		if err != nil {
			t.Fatalf("dry run %v: Forget: %v", dryRun, err)
		}
		var removed []string
		for _, r := range res.Removed {
			if strings.HasPrefix(r.Object, "imagepolicy.") {
				removed = append(removed, r.Object)
			}
		}
		slices.Sort(removed)
		if want := []string{"imagepolicy.image.toolkit.fluxcd.io/autodeploy-" + fcName, "imagepolicy.image.toolkit.fluxcd.io/renamed-owned"}; !slices.Equal(removed, want) {
			t.Errorf("dry run %v: removed %q, want %q", dryRun, removed, want)
		}
		for name, wantLeft := range map[string]bool{"autodeploy-" + fcName: dryRun, "renamed-owned": dryRun, "autodeploy-canary": true, "theirs": true, fcName: true} {
			_, err := c.dyn.Resource(fcPolicies).Namespace("flux-system").Get(t.Context(), name, metav1.GetOptions{})
			if left := err == nil; left != wantLeft {
				t.Errorf("dry run %v: ImagePolicy %s left %v, want %v", dryRun, name, left, wantLeft)
			}
		}
	}
}
