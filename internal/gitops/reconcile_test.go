package gitops

import (
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/autodeploy-dev/autodeploy/internal/flux"
)

func withLever(record bool) map[string]string {
	ann := map[string]string{}
	if record {
		DisableReconcile(ann, ReconcileRecord{By: "ops@host", Reason: "incident", At: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC), Kustomization: "flux-system/apps"})
	} else {
		ann[flux.KustomizeReconcileAnnotation] = flux.ReconcileDisabled
	}
	return ann
}

func recordOnly() map[string]string {
	ann := withLever(true)
	delete(ann, flux.KustomizeReconcileAnnotation)
	return ann
}

func rs(name string, rev string, ann map[string]string) *appsv1.ReplicaSet {
	a := map[string]string{"deployment.kubernetes.io/revision": rev}
	for k, v := range ann {
		a[k] = v
	}
	return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: name, Annotations: a}}
}

// Who releases which reconcile lever (issue 17, item 7): a run releases
// what no hold explains any more; resume and forget release all of
// autodeploy's, wherever a copy sits; a lever without a record is someone
// else's: reported, never removed.
func TestReleaseReconcile(t *testing.T) {
	tests := []struct {
		name       string
		dep        map[string]string
		rss        []*appsv1.ReplicaSet
		held, all  bool
		legacy     bool
		wantDep    bool
		wantRSs    []string
		wantForeig bool
	}{
		{name: "held: the lever is the hold's, a run leaves it", dep: withLever(true), rss: []*appsv1.ReplicaSet{rs("a", "2", withLever(true))}, held: true},
		{name: "held, resume: the Deployment's and every copy", dep: withLever(true), rss: []*appsv1.ReplicaSet{rs("a", "2", withLever(true)), rs("b", "1", nil)}, held: true, all: true, wantDep: true, wantRSs: []string{"a"}},
		{name: "hold annotation deleted by hand: a run releases it", dep: withLever(true), wantDep: true},
		{name: "record without its lever: the record goes", dep: recordOnly(), wantDep: true},
		{name: "a copy on a ReplicaSet while the Deployment has none: a run strips it", dep: map[string]string{}, rss: []*appsv1.ReplicaSet{rs("a", "2", withLever(true))}, wantRSs: []string{"a"}},
		{name: "someone else's lever: reported, left", dep: withLever(false), rss: []*appsv1.ReplicaSet{rs("a", "2", withLever(false))}, wantForeig: true},
		{name: "someone else's lever under a hold: reported, left", dep: withLever(false), held: true, all: true, wantForeig: true},
		{name: "legacy hold (2.0): its lever is autodeploy's, resume strips the copies too", dep: withLever(false), rss: []*appsv1.ReplicaSet{rs("a", "2", withLever(false))}, held: true, all: true, legacy: true, wantDep: true, wantRSs: []string{"a"}},
		{name: "nothing set", dep: map[string]string{}, rss: []*appsv1.ReplicaSet{rs("a", "1", nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "api", Annotations: tt.dep}}
			got := ReleaseReconcile(d, tt.rss, tt.held, tt.all, tt.legacy)
			if got.Deployment != tt.wantDep || !slices.Equal(got.ReplicaSets, tt.wantRSs) || got.Foreign != tt.wantForeig {
				t.Errorf("got %+v, want Deployment=%v ReplicaSets=%v Foreign=%v", got, tt.wantDep, tt.wantRSs, tt.wantForeig)
			}
		})
	}
}

// status lists every lever with the command that clears it.
func TestLeversNameTheirClearingCommand(t *testing.T) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "api", Annotations: withLever(false)}}
	repo := flux.Ref{Namespace: "flux-system", Name: "api"}
	excl := []Exclusion{{Tag: "sha-bad", Service: "api", Reason: "automatic rollback of api"}, {Tag: "sha-other", Service: "worker"}}
	got := Levers("api", d, []*appsv1.ReplicaSet{rs("a", "3", withLever(true))}, false, false, &repo, excl, "flux-system/apps")
	want := map[string]string{
		"Deployment prod/api":             "kubectl annotate deployment/api -n prod kustomize.toolkit.fluxcd.io/reconcile-",
		"ImageRepository flux-system/api": "autodeploy resume api --forget-failed",
		"Kustomization flux-system/apps":  "autodeploy resume api",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d levers, want %d (the ReplicaSet copy adds nothing while the Deployment has the lever; worker's exclusion is not api's): %+v", len(got), len(want), got)
	}
	for _, l := range got {
		if !strings.HasSuffix(l.Clear, want[l.Object]) {
			t.Errorf("%s: clear = %q, want it to end with %q", l.Object, l.Clear, want[l.Object])
		}
	}
	// Without the Deployment's lever, the ReplicaSet copy is what an undo revives.
	d.Annotations = nil
	got = Levers("api", d, []*appsv1.ReplicaSet{rs("a", "3", withLever(true))}, false, false, nil, nil, "")
	if len(got) != 1 || got[0].Object != "ReplicaSet prod/a" || !got[0].Ours || !strings.Contains(got[0].Detail, "revision 3") {
		t.Errorf("got %+v, want the copy on revision 3, autodeploy's", got)
	}
}

// ResumeSuspended takes back the 1.x lever: spec.suspend false, written as
// autodeploy; a Kustomization deleted since answers NotFound (resume and
// forget then drop the record).
func TestResumeSuspended(t *testing.T) {
	ks := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
		"metadata": map[string]any{"name": "apps", "namespace": "flux-system"},
		"spec":     map[string]any{"suspend": true, "path": "./apps"},
	}}
	dc := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{flux.KustomizationGVR: "KustomizationList"}, ks)
	if err := ResumeSuspended(t.Context(), dc, "flux-system/apps"); err != nil {
		t.Fatal(err)
	}
	u, err := dc.Resource(flux.KustomizationGVR).Namespace("flux-system").Get(t.Context(), "apps", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if suspended, _, _ := unstructured.NestedBool(u.Object, "spec", "suspend"); suspended {
		t.Errorf("still suspended: %v", u.Object["spec"])
	}
	if err := ResumeSuspended(t.Context(), dc, "flux-system/gone"); !apierrors.IsNotFound(err) {
		t.Errorf("a Kustomization deleted since: %v, want NotFound", err)
	}
}
