package deploy

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/gitops"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestManualRollbackClearsMarks: a manual rollback leaves none of the
// marks of the rollout it undoes on the Deployment. A soak mark left there
// (issue 19) would date the next verification of the same image from the
// old one's, and status would call the revision rolled back to "soaked".
func TestManualRollbackClearsMarks(t *testing.T) {
	verified := fcNow.Add(-5 * time.Minute)
	tests := []struct {
		name string
		ann  map[string]string
	}{
		{"soaking", map[string]string{AnnVerified: "true", AnnDeployedImage: bbb, AnnPreviousRevision: "1",
			AnnSoak: mustJSON(SoakMark{Image: bbb, VerifiedAt: verified, Until: verified.Add(10 * time.Minute)})}},
		{"soaked", map[string]string{AnnVerified: "true", AnnDeployedImage: bbb,
			AnnSoak: mustJSON(SoakMark{Image: bbb, VerifiedAt: verified, Until: verified.Add(time.Minute), Passed: true})}},
		{"unverified", map[string]string{AnnVerified: "false", AnnDeployedImage: bbb, AnnPreviousRevision: "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeCluster(t, aaa, bbb, false)
			c.seed(bbb, behaviour{}, tt.ann)
			var log bytes.Buffer
			m := &Manager{Kube: c.kube, Dynamic: c.dyn, Log: runlog.New(&log), Now: func() time.Time { return fcNow }, By: "ops@host"}
			res, err := m.Rollback(t.Context(), svc(), RollbackOptions{Reason: "500s"})
			if err != nil {
				t.Fatalf("Rollback: %v\n%s", err, log.String())
			}
			if res.To != aaa {
				t.Fatalf("rolled back to %q, want %q", res.To, aaa)
			}
			ann := c.deployment().Annotations
			for _, k := range []string{AnnSoak, AnnVerified, AnnDeployedImage, AnnPreviousRevision} {
				if v, ok := ann[k]; ok {
					t.Errorf("%s left after the rollback: %q", k, v)
				}
			}
			if _, held := ParseHold(ann); !held {
				t.Errorf("not held after the rollback: %v", ann)
			}
		})
	}
}

// resume --forget-failed removes every exclusion autodeploy recorded for
// the service, whatever the Deployment shows now (issue 17: "resume
// clears all of a service's levers whatever the Deployment shows"): here
// no failed image is remembered any more and the Deployment is no longer
// applied from git, yet an exclusion of an earlier failure stays on the
// ImageRepository. A person's exclusion stays.
func TestResumeForgetFailedReleasesEveryExclusion(t *testing.T) {
	c := newFakeCluster(t, aaa, aaa, false)
	recorded := mustJSON([]gitops.Exclusion{{Pattern: "^sha-old$", Tag: "sha-old", Service: svc().Name, Reason: "failed earlier"}})
	repo := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": flux.ImageGroup + "/v1", "kind": "ImageRepository",
		"metadata": map[string]any{"name": fcName, "namespace": "flux-system", "annotations": map[string]any{gitops.AnnExclusions: recorded}},
		"spec":     map[string]any{"image": repo, "interval": "5m", "exclusionList": []any{"^sha-old$", "^someone-elses$"}},
	}}
	if _, err := c.dyn.Resource(fcRepos).Namespace("flux-system").Create(t.Context(), repo, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	m := &Manager{Kube: c.kube, Dynamic: c.dyn, Log: runlog.New(&log), Now: func() time.Time { return fcNow }, By: "ops@host"}
	res, err := m.Resume(t.Context(), svc(), true)
	if err != nil {
		t.Fatalf("Resume: %v\n%s", err, log.String())
	}
	if got := c.exclusionList(); !slices.Equal(got, []string{"^someone-elses$"}) {
		t.Errorf("exclusionList after resume --forget-failed: %q, want the person's alone (result %+v)", got, res)
	}
}
