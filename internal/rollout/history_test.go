package rollout

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

func ownedRS(d *appsv1.Deployment, name, image string, rev string, created time.Time) *appsv1.ReplicaSet {
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: d.Namespace, CreationTimestamp: metav1.NewTime(created),
		Labels:          map[string]string{"app": "api", appsv1.DefaultDeploymentUniqueLabelKey: name},
		Annotations:     map[string]string{},
		OwnerReferences: []metav1.OwnerReference{{UID: d.UID, Controller: ptr(true), Kind: "Deployment", Name: d.Name}}},
		Spec: appsv1.ReplicaSetSpec{Template: *d.Spec.Template.DeepCopy()}}
	if rev != "" {
		rs.Annotations[RevisionAnnotation] = rev
	}
	rs.Spec.Template.Spec.Containers[0].Image = image
	rs.Spec.Template.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = name
	return rs
}

// Two ReplicaSets with the template (a hash collision): the controller
// keeps the oldest (FindNewReplicaSet sorts by creation time).
func TestCurrentIsTheOldestEqualTemplate(t *testing.T) {
	d, _, _ := rolloutObjects(true)
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	older := ownedRS(d, "api-a", "ghcr.io/x/api:v2", "2", t0)
	newer := ownedRS(d, "api-b", "ghcr.io/x/api:v2", "3", t0.Add(time.Hour))
	if got := Current(d, []*appsv1.ReplicaSet{newer, older}); got != older {
		t.Fatalf("Current = %s, want api-a (the oldest)", got.Name)
	}
}

// kubectl rollout undo without --to-revision takes the second-highest
// revision among the ReplicaSets, whatever the Deployment's annotation.
func TestUndoPicksKubectlsRevision(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		depRev  string
		rss     [][2]string // image, revision
		to      int64
		want    string // image restored, or "" for an error
		wantErr error
		errText string // part of the error's text
	}{
		{name: "previous", depRev: "3", rss: [][2]string{{"v1", "1"}, {"v2", "2"}, {"v3", "3"}}, want: "v2"},
		{name: "no revision annotation on the Deployment", depRev: "", rss: [][2]string{{"v1", "1"}, {"v2", "2"}, {"v3", "3"}}, want: "v2"},
		{name: "to revision", depRev: "3", rss: [][2]string{{"v1", "1"}, {"v2", "2"}, {"v3", "3"}}, to: 1, want: "v1"},
		{name: "revisionHistoryLimit 0", depRev: "3", rss: [][2]string{{"v3", "3"}}, wantErr: ErrNoHistory},
		{name: "ReplicaSet without revision is ignored", depRev: "2", rss: [][2]string{{"v0", ""}, {"v2", "2"}}, wantErr: ErrNoHistory},
		// The revision asked for is not kept: the error says which are
		// (issue 18, sixth pass: it named no fix).
		{name: "to a revision not kept", depRev: "3", rss: [][2]string{{"v1", "1"}, {"v2", "2"}, {"v3", "3"}}, to: 9,
			errText: "unable to find the specified revision 9 of deployment apps/api: it keeps revisions 1, 2, 3 (autodeploy history lists them)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _, _ := rolloutObjects(true)
			d.Spec.Template.Spec.Containers[0].Image = "ghcr.io/x/api:v3"
			d.Annotations = map[string]string{}
			if tt.depRev != "" {
				d.Annotations[RevisionAnnotation] = tt.depRev
			}
			objs := []runtime.Object{d}
			for i, r := range tt.rss {
				objs = append(objs, ownedRS(d, "api-"+r[0], "ghcr.io/x/api:"+r[0], r[1], t0.Add(time.Duration(i)*time.Minute)))
			}
			c := fake.NewSimpleClientset(objs...)
			res, err := Undo(context.Background(), c, d, UndoOptions{ToRevision: tt.to})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Undo = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if tt.errText != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("Undo = %v, want an error with %q", err, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := c.AppsV1().Deployments("apps").Get(context.Background(), "api", metav1.GetOptions{})
			if img, _ := ContainerImage(&got.Spec.Template, "api"); img != "ghcr.io/x/api:"+tt.want {
				t.Errorf("image after undo = %s, want %s (target revision %d)", img, tt.want, res.ToRevision)
			}
		})
	}
}

func TestTemplateWriter(t *testing.T) {
	now := metav1.Now()
	later := metav1.NewTime(now.Add(time.Minute))
	d, _, _ := rolloutObjects(true)
	d.ManagedFields = []metav1.ManagedFieldsEntry{
		{Manager: "kustomize-controller", Operation: "Apply", Time: &now, FieldsV1: fieldsV1(`{"f:spec":{"f:template":{"f:metadata":{"f:labels":{"f:app":{}}}}}}`)},
		{Manager: "autodeploy", Operation: "Update", Time: &later, FieldsV1: fieldsV1(`{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"api\"}":{"f:image":{}}}}}}}`)},
		{Manager: "kubectl-edit", Operation: "Update", Time: &later, FieldsV1: fieldsV1(`{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"api\"}":{"f:env":{}}}}}}}`)},
	}
	if got := TemplateWriter(d, "api"); got != "kubectl-edit" {
		t.Errorf("TemplateWriter = %q, want kubectl-edit (the latest template writer other than autodeploy)", got)
	}
	d.ManagedFields = append(d.ManagedFields, metav1.ManagedFieldsEntry{Manager: "kubectl-set", Operation: "Update", Time: &now,
		FieldsV1: fieldsV1(`{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"api\"}":{"f:image":{}}}}}}}`)})
	if got := TemplateWriter(d, "api"); got != "kubectl-set" {
		t.Errorf("TemplateWriter = %q, want kubectl-set (owner of the image field)", got)
	}
}

// A server-side apply of the value autodeploy set shares the field
// (kustomize-controller applying the tag git got from the automation):
// autodeploy is then the image's owner, whatever the order of managedFields.
func TestImageOwnerShared(t *testing.T) {
	d, _, _ := rolloutObjects(true)
	image := fieldsV1(`{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"api\"}":{"f:image":{}}}}}}}`)
	d.ManagedFields = []metav1.ManagedFieldsEntry{
		{Manager: "kustomize-controller", Operation: "Apply", FieldsV1: image},
		{Manager: FieldManager, Operation: "Update", FieldsV1: image},
	}
	if got := ImageOwner(d, "api"); got != FieldManager {
		t.Errorf("ImageOwner = %q, want %s", got, FieldManager)
	}
	d.ManagedFields = d.ManagedFields[:1]
	if got := ImageOwner(d, "api"); got != "kustomize-controller" {
		t.Errorf("ImageOwner = %q, want kustomize-controller alone", got)
	}
}
