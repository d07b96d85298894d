package rollout

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A change-cause is written printable: kubectl rollout history prints it as
// it is (a rollback's cause quotes the cluster's messages, promote's
// --reason a person's text). Other annotations are autodeploy's JSON,
// written as given.
func TestAnnotationOpsChangeCausePrintable(t *testing.T) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{}}}
	ops := AnnotationOps(d, map[string]string{ChangeCauseAnnotation: "rolled back: pod said \x1b]0;owned\a\nNEXT\tLINE é", "autodeploy.dev/x": "a\nb"})
	got := map[string]any{}
	for _, op := range ops {
		got[op.Path] = op.Value
	}
	if v := got["/metadata/annotations/kubernetes.io~1change-cause"]; v != `rolled back: pod said \x1b]0;owned\a\nNEXT\tLINE é` {
		t.Errorf("change-cause %q: want its control characters escaped", v)
	}
	if v := got["/metadata/annotations/autodeploy.dev~1x"]; v != "a\nb" {
		t.Errorf("another annotation %q: want it as given", v)
	}
}
