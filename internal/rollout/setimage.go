package rollout

import (
	"context"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// SetImage changes one container's image and sets annotations in a single
// JSON patch. The patch tests the container's name and current image at its
// index, so it can touch nothing else and fails (rather than clobbering)
// when someone changed the Deployment since it was read. A strategic merge
// patch would instead add a new container when the name did not match.
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
	return patch(ctx, c, d, ops, dryRun)
}

// Annotate sets (or, with an empty value, removes) annotations on d.
func Annotate(ctx context.Context, c kubernetes.Interface, d *appsv1.Deployment, ann map[string]string) (*appsv1.Deployment, error) {
	ops := AnnotationOps(d, ann)
	if len(ops) == 0 {
		return d, nil
	}
	return patch(ctx, c, d, ops, false)
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
