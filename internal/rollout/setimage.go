package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// SetImage changes one container's image and sets annotations in a single
// JSON patch, on the Deployment exactly as d was read: the patch carries
// d's resourceVersion, which the API server takes as a precondition, so a
// change by anyone since the read (a hold, kubectl set image, Flux's apply)
// makes it fail with 409 Conflict (apierrors.IsConflict) instead of being
// overwritten; the caller reads again and plans again. The container's name
// and image are tested too, so the patch can never touch another container.
// A strategic merge patch would instead add a container when the name did
// not match.
func SetImage(ctx context.Context, c kubernetes.Interface, d *appsv1.Deployment, container, image string, ann map[string]string, dryRun bool) (*appsv1.Deployment, error) {
	idx := -1
	for i, ct := range d.Spec.Template.Spec.Containers {
		if ct.Name == container {
			idx = i
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("deployment %s/%s has no container %q", d.Namespace, d.Name, container)
	}
	base := fmt.Sprintf("/spec/template/spec/containers/%d", idx)
	ops := []PatchOp{
		{Op: "test", Path: base + "/name", Value: container},
		{Op: "test", Path: base + "/image", Value: d.Spec.Template.Spec.Containers[idx].Image},
		{Op: "replace", Path: base + "/image", Value: image},
	}
	ops = append(ops, AnnotationOps(d, ann)...)
	return patch(ctx, c, d, withPrecondition(d, ops), dryRun)
}

// RestoreTemplate puts tmpl back as d's pod template, with annotations, in
// one patch that carries d's resourceVersion as a precondition (see
// SetImage). It is how a failed rollout returns to exactly the template
// that ran before it, whatever the ReplicaSet history keeps
// (revisionHistoryLimit: 0 keeps none).
func RestoreTemplate(ctx context.Context, c kubernetes.Interface, d *appsv1.Deployment, tmpl *corev1.PodTemplateSpec, ann map[string]string) (*appsv1.Deployment, error) {
	ops := []PatchOp{{Op: "replace", Path: "/spec/template", Value: tmpl}}
	ops = append(ops, AnnotationOps(d, ann)...)
	return patch(ctx, c, d, withPrecondition(d, ops), false)
}

// Annotate sets (or, with an empty value, removes) annotations on d.
func Annotate(ctx context.Context, c kubernetes.Interface, d *appsv1.Deployment, ann map[string]string) (*appsv1.Deployment, error) {
	ops := AnnotationOps(d, ann)
	if len(ops) == 0 {
		return d, nil
	}
	return patch(ctx, c, d, ops, false)
}

// AnnotateIfUnchanged is Annotate with d's resourceVersion as a
// precondition: it fails with a Conflict if the Deployment changed since d
// was read.
func AnnotateIfUnchanged(ctx context.Context, c kubernetes.Interface, d *appsv1.Deployment, ann map[string]string) (*appsv1.Deployment, error) {
	ops := AnnotationOps(d, ann)
	if len(ops) == 0 {
		return d, nil
	}
	return patch(ctx, c, d, withPrecondition(d, ops), false)
}

// WaitObserved waits until the deployment controller has synced d's
// generation (status.observedGeneration), which for a Deployment counts
// annotation changes too: the ReplicaSet of d's template then exists and
// carries d's annotations. It returns the Deployment as last read (d on an
// error before the first read).
func WaitObserved(ctx context.Context, c kubernetes.Interface, d *appsv1.Deployment) (*appsv1.Deployment, error) {
	last := d
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		got, err := c.AppsV1().Deployments(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		last = got
		return got.Status.ObservedGeneration >= d.Generation, nil
	})
	return last, err
}

// withPrecondition adds d's resourceVersion to a patch. The API server
// rejects an update whose object names a resourceVersion other than the
// stored one (409 Conflict, "the object has been modified"); a patch that
// sets it is therefore conditional on nothing having changed.
func withPrecondition(d *appsv1.Deployment, ops []PatchOp) []PatchOp {
	if d.ResourceVersion == "" {
		return ops
	}
	return append([]PatchOp{{Op: "replace", Path: "/metadata/resourceVersion", Value: d.ResourceVersion}}, ops...)
}

func patch(ctx context.Context, c kubernetes.Interface, d *appsv1.Deployment, ops []PatchOp, dryRun bool) (*appsv1.Deployment, error) {
	body, err := json.Marshal(ops)
	if err != nil {
		return nil, err
	}
	opts := metav1.PatchOptions{FieldManager: FieldManager}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	out, err := c.AppsV1().Deployments(d.Namespace).Patch(ctx, d.Name, types.JSONPatchType, body, opts)
	if err != nil {
		return nil, fmt.Errorf("patch deployment %s/%s: %w", d.Namespace, d.Name, err)
	}
	return out, nil
}

// AnnotateReplicaSets sets (or, with an empty value, removes) annotations
// on every ReplicaSet d owns. `kubectl rollout undo` replaces the
// Deployment's annotations with those of the ReplicaSet it restores (the
// deployment controller copies the Deployment's onto its new ReplicaSet
// at the time): a mark that must survive an undo, such as a hold, has to be
// on the ReplicaSets too, and a mark cleared must be cleared there too.
//
// With names, only the ReplicaSets of those names.
func AnnotateReplicaSets(ctx context.Context, c kubernetes.Interface, d *appsv1.Deployment, ann map[string]string, names ...string) error {
	owned, err := ListOwned(ctx, c, d)
	if err != nil {
		return err
	}
	set := map[string]any{}
	for k, v := range ann {
		if v == "" {
			set[k] = nil // a merge patch removes a key set to null
		} else {
			set[k] = v
		}
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": set}})
	if err != nil {
		return err
	}
	for _, rs := range owned {
		if len(names) > 0 && !slices.Contains(names, rs.Name) {
			continue
		}
		if _, err := c.AppsV1().ReplicaSets(rs.Namespace).Patch(ctx, rs.Name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
			return fmt.Errorf("annotate ReplicaSet %s/%s: %w", rs.Namespace, rs.Name, err)
		}
	}
	return nil
}
