package deploy

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// TestOurs is the table of whose rollout a Deployment shows, in the style of
// kubectl's rollout status viewer tests: one Deployment per row, the
// answer expected.
func TestOurs(t *testing.T) {
	marked := func(img string) func(*appsv1.Deployment) {
		return func(d *appsv1.Deployment) {
			if d.Annotations == nil {
				d.Annotations = map[string]string{}
			}
			d.Annotations[AnnDeployedImage] = img
		}
	}
	tests := []struct {
		name   string
		mut    []func(*appsv1.Deployment)
		ours   bool
		by     string
		writer string
	}{
		{name: "autodeploy patched it, its mark names the image", mut: []func(*appsv1.Deployment){marked(repo + ":sha-bbb"), managedBy(rollout.FieldManager)}, ours: true, writer: rollout.FieldManager},
		{name: "mark matches, managedFields stripped", mut: []func(*appsv1.Deployment){marked(repo + ":sha-bbb")}, ours: true},
		{name: "never deployed by autodeploy, no managedFields", ours: false},
		{name: "Flux applied git's image over autodeploy's", mut: []func(*appsv1.Deployment){marked(repo + ":sha-ccc"), managedBy(flux.KustomizeManager)}, by: flux.KustomizeManager, writer: flux.KustomizeManager},
		{name: "Flux applied the image autodeploy deployed (mark matches, other writer)", mut: []func(*appsv1.Deployment){marked(repo + ":sha-bbb"), managedBy(flux.KustomizeManager)}, by: flux.KustomizeManager, writer: flux.KustomizeManager},
		{name: "kubectl rollout undo copied the old mark back", mut: []func(*appsv1.Deployment){marked(repo + ":sha-bbb"), managedBy("kubectl-rollout")}, by: "kubectl-rollout", writer: "kubectl-rollout"},
		{name: "autodeploy wrote the image, the mark names another (interrupted)", mut: []func(*appsv1.Deployment){marked(repo + ":sha-ccc"), managedBy(rollout.FieldManager)}, writer: rollout.FieldManager},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dep(repo+":sha-bbb", 2, tt.mut...)
			o := Ours(d, "api-gateway")
			if o.Ours() != tt.ours || o.By() != tt.by || o.Writer != tt.writer {
				t.Fatalf("Ours = %+v: ours %v by %q, want ours %v by %q writer %q", o, o.Ours(), o.By(), tt.ours, tt.by, tt.writer)
			}
		})
	}
}
