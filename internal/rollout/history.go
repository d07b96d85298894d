package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// RevisionAnnotation is where the deployment controller numbers revisions.
const RevisionAnnotation = "deployment.kubernetes.io/revision"

// ChangeCauseAnnotation is the annotation `kubectl rollout history` shows.
const ChangeCauseAnnotation = "kubernetes.io/change-cause"

// Revision reads obj's revision annotation; 0 when absent or malformed.
func Revision(obj metav1.Object) int64 {
	v, err := strconv.ParseInt(obj.GetAnnotations()[RevisionAnnotation], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// RevisionHistoryAnnotation lists the earlier revisions of a ReplicaSet
// that a rollback brought back.
const RevisionHistoryAnnotation = "deployment.kubernetes.io/revision-history"

// FirstRevision is the revision at which a ReplicaSet was first rolled
// out: the lowest of its revision and revision history.
func FirstRevision(rs *appsv1.ReplicaSet) int64 {
	first := Revision(rs)
	for _, v := range strings.Split(rs.Annotations[RevisionHistoryAnnotation], ",") {
		if r, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && r > 0 && (first == 0 || r < first) {
			first = r
		}
	}
	return first
}

// Owned returns the ReplicaSets in rss that d controls, newest revision
// first. Selecting by controller reference rather than by label alone is
// what keeps an adopted or foreign ReplicaSet out of the history.
func Owned(d *appsv1.Deployment, rss []appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for i := range rss {
		if ref := metav1.GetControllerOf(&rss[i]); ref != nil && ref.UID == d.UID {
			out = append(out, &rss[i])
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return Revision(out[i]) > Revision(out[j]) })
	return out
}

// ListOwned lists d's ReplicaSets with one LIST call by its selector.
func ListOwned(ctx context.Context, c kubernetes.Interface, d *appsv1.Deployment) ([]*appsv1.ReplicaSet, error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("deployment %s/%s has an invalid selector: %w", d.Namespace, d.Name, err)
	}
	list, err := c.AppsV1().ReplicaSets(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	return Owned(d, list.Items), nil
}

// Current returns the ReplicaSet whose template equals d's, ignoring the
// pod-template-hash label, as the deployment controller decides it
// (FindNewReplicaSet in k8s.io/kubernetes/pkg/controller/deployment/util):
// the oldest such ReplicaSet by creation time, then by name, because a
// hash collision can leave two with equal templates and the controller
// keeps scaling the first it created.
func Current(d *appsv1.Deployment, owned []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	var cur *appsv1.ReplicaSet
	for _, rs := range owned {
		if EqualIgnoreHash(&rs.Spec.Template, &d.Spec.Template) && (cur == nil || olderThan(rs, cur)) {
			cur = rs
		}
	}
	return cur
}

func olderThan(a, b *appsv1.ReplicaSet) bool {
	ta, tb := a.CreationTimestamp, b.CreationTimestamp
	if !ta.Equal(&tb) {
		return ta.Before(&tb)
	}
	return a.Name < b.Name
}

// TemplateWriter names the field manager that last wrote d's pod template
// for the named container, from managedFields: the owner of the
// container's image field if it is not autodeploy, else the latest writer
// of any template field other than autodeploy. "" when nothing tells
// (managedFields stripped, or only autodeploy wrote).
func TemplateWriter(d *appsv1.Deployment, container string) string {
	imagePath := imageField(container)
	var best string
	var bestTime *metav1.Time
	for _, mf := range d.ManagedFields {
		if mf.Subresource != "" || mf.Manager == FieldManager || mf.FieldsV1 == nil {
			continue
		}
		var fields map[string]any
		if json.Unmarshal(mf.FieldsV1.Raw, &fields) != nil || !hasPath(fields, "f:spec", "f:template") {
			continue
		}
		if hasPath(fields, imagePath...) {
			return mf.Manager
		}
		if best == "" || (mf.Time != nil && (bestTime == nil || bestTime.Before(mf.Time))) {
			best, bestTime = mf.Manager, mf.Time
		}
	}
	return best
}

// ImageOwner names the field manager that owns the container's image in
// d's template (managedFields): whoever last set it, autodeploy included;
// "" when managedFields do not tell. Ownership is shared when a server-side
// apply sets the value another manager set (kustomize-controller applying
// the tag autodeploy deployed): then autodeploy, when it is one of them, is
// the owner, since the value is the one it set.
func ImageOwner(d *appsv1.Deployment, container string) string {
	imagePath := imageField(container)
	owner := ""
	for _, mf := range d.ManagedFields {
		if mf.Subresource != "" || mf.FieldsV1 == nil {
			continue
		}
		var fields map[string]any
		if json.Unmarshal(mf.FieldsV1.Raw, &fields) == nil && hasPath(fields, imagePath...) {
			if mf.Manager == FieldManager {
				return mf.Manager
			}
			if owner == "" {
				owner = mf.Manager
			}
		}
	}
	return owner
}

// imageField is the path of a container's image in managedFields.
func imageField(container string) []string {
	key, _ := json.Marshal(map[string]string{"name": container})
	return []string{"f:spec", "f:template", "f:spec", "f:containers", "k:" + string(key), "f:image"}
}

// hasPath reports whether a managedFields set (FieldsV1 JSON) holds path.
func hasPath(fields map[string]any, path ...string) bool {
	for _, p := range path {
		next, ok := fields[p].(map[string]any)
		if !ok {
			return false
		}
		fields = next
	}
	return true
}

// EqualIgnoreHash compares two pod templates without the pod-template-hash
// label, which the controller adds to ReplicaSets but never to the
// Deployment's own template.
func EqualIgnoreHash(a, b *corev1.PodTemplateSpec) bool {
	// Shallow copies with filtered labels: a deep copy of both templates
	// cost most of a 500-service plan (BenchmarkPlan500).
	a1, b1 := *a, *b
	a1.Labels, b1.Labels = withoutHash(a.Labels), withoutHash(b.Labels)
	return apiequality.Semantic.DeepEqual(&a1, &b1)
}

func withoutHash(labels map[string]string) map[string]string {
	if _, ok := labels[appsv1.DefaultDeploymentUniqueLabelKey]; !ok {
		return labels
	}
	out := make(map[string]string, len(labels))
	for k, v := range labels {
		if k != appsv1.DefaultDeploymentUniqueLabelKey {
			out[k] = v
		}
	}
	return out
}

// ContainerImage returns the image of the named container in tmpl.
func ContainerImage(tmpl *corev1.PodTemplateSpec, container string) (string, bool) {
	for _, c := range tmpl.Spec.Containers {
		if c.Name == container {
			return c.Image, true
		}
	}
	return "", false
}
