package gitops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"

	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/image"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// Promotion under GitOps. image-automation-controller writes into a
// setter marker (# {"$imagepolicy": "<ns>:<name>"}) whatever the
// ImagePolicy it names selects (fluxcd.io/flux/guides/image-update/
// #configure-image-update-for-custom-resources), and nothing else: a tag
// that no policy selects never reaches git. So a promoted service whose
// Deployment Flux applies from git gets one ImagePolicy of its own, owned
// by autodeploy (created and written by it, never in git), whose
// filterTags select exactly the promoted tag over the root policy's
// ImageRepository (fluxcd.io/flux/components/image/imagepolicies/
// #filter-tags: a Go regexp). The target's image line names it; the
// automation, which lists the policies of its own namespace, writes the
// promoted tag, and Flux's apply agrees with the cluster. A failed
// promotion points the same policy back at the tag before: no
// exclusionList on the shared ImageRepository (the source verified that
// image; excluding it would take it from the source too).

// The owned policy's record: both, on the ImagePolicy itself.
const (
	// LabelManagedBy is the recommended label for the tool that manages
	// an object (kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByAutodeploy is its value on objects autodeploy owns.
	ManagedByAutodeploy = "autodeploy"
	// AnnPromotionOf names the promoted service the policy belongs to.
	AnnPromotionOf = "autodeploy.dev/promotion-of"
)

// OwnedLabels are the labels of an ImagePolicy autodeploy owns: what an
// ImageUpdateAutomation's spec.policySelector must match for git to
// follow a promotion.
func OwnedLabels() labels.Set { return labels.Set{LabelManagedBy: ManagedByAutodeploy} }

// PromotionLever is the ImagePolicy autodeploy owns for the promotion of
// service, as a lever status lists (nil u, or someone else's policy:
// none). It stays while the service is promoted under GitOps: forget
// deletes it.
func PromotionLever(service string, owned flux.Ref, u *unstructured.Unstructured) (Lever, bool) {
	if u == nil || !OwnedBy(u, service) {
		return Lever{}, false
	}
	detail := "selects exactly the promoted tag for git's image line of the target"
	if pattern, _, _ := unstructured.NestedString(u.Object, "spec", "filterTags", "pattern"); pattern != "" {
		detail += " (filterTags " + pattern + ")"
	}
	return Lever{Kind: LeverPromotion, Object: "ImagePolicy " + owned.String(), Ours: true, Detail: detail,
		Clear: "autodeploy forget " + service + " (once it is no longer promoted; git's marker must name another policy first)"}, true
}

// ErrForeignPolicy: the ImagePolicy autodeploy would own exists without
// autodeploy's record for the service (someone else's, or another
// service's): it is never written.
var ErrForeignPolicy = errors.New("is not autodeploy's")

// OwnedBy says whether u carries autodeploy's record for service.
func OwnedBy(u *unstructured.Unstructured, service string) bool {
	return u.GetLabels()[LabelManagedBy] == ManagedByAutodeploy && u.GetAnnotations()[AnnPromotionOf] == service
}

// ForeignPolicyFix is what to do about an ImagePolicy at the owned
// policy's name that is not autodeploy's.
func ForeignPolicyFix(service string, owned flux.Ref) string {
	return fmt.Sprintf("set promote.imagePolicy of %s to a name no other ImagePolicy has (and the setter marker of its image line to it), or delete ImagePolicy %s (kubectl delete imagepolicy %s -n %s) if nobody uses it",
		service, owned, owned.Name, owned.Namespace)
}

// PolicyTag is the filterTags.pattern that selects exactly tag.
func PolicyTag(tag string) string { return TagPattern(tag) }

// OwnedSpec is the spec of service's owned policy selecting tag over the
// root policy's ImageRepository: filterTags ^tag$, an alphabetical order
// (one tag passes: any order selects it; alphabetical needs no extract),
// and the root policy's digestReflectionPolicy (and its interval), so
// that the automation writes tag@digest exactly when the root's does, as
// the source's Deployment runs it.
func OwnedSpec(root *unstructured.Unstructured, owned flux.Ref, tag string) (map[string]any, error) {
	repo, found, _ := unstructured.NestedMap(root.Object, "spec", "imageRepositoryRef")
	if !found || repo["name"] == nil {
		return nil, fmt.Errorf("ImagePolicy %s/%s has no spec.imageRepositoryRef", root.GetNamespace(), root.GetName())
	}
	ns, _ := repo["namespace"].(string)
	if ns == "" {
		ns = root.GetNamespace()
	}
	ref := map[string]any{"name": repo["name"]}
	if ns != owned.Namespace {
		ref["namespace"] = ns
	}
	spec := map[string]any{
		"imageRepositoryRef": ref,
		"filterTags":         map[string]any{"pattern": PolicyTag(tag)},
		"policy":             map[string]any{"alphabetical": map[string]any{"order": "asc"}},
	}
	if v, ok, _ := unstructured.NestedString(root.Object, "spec", "digestReflectionPolicy"); ok && v != "" {
		spec["digestReflectionPolicy"] = v
		if iv, ok, _ := unstructured.NestedString(root.Object, "spec", "interval"); ok && iv != "" {
			spec["interval"] = iv
		}
	}
	return spec, nil
}

// Pointed is what PointPolicy did.
type Pointed struct {
	Created bool // the policy did not exist
	Changed bool // its spec was written (created, or another tag)
}

// PointPolicy is the promotion lever: it makes ImagePolicy owned (service's,
// by its record) select exactly img's tag over the ImageRepository of the
// root policy, creating it when absent, and asks for its reconcile in the
// same write (reconcile.fluxcd.io/requestedAt: Flux >= 2.7 answers it; a
// new generation is reconciled unasked by every version). The write is
// conditional on the resourceVersion read: an edit in between is read
// again, never overwritten. An existing policy without the record is
// someone else's: ErrForeignPolicy, nothing written.
func PointPolicy(ctx context.Context, dc dynamic.Interface, api flux.API, owned, root flux.Ref, service, img, token string) (Pointed, error) {
	var out Pointed
	ref, err := image.Parse(img)
	if err != nil {
		return out, err
	}
	if ref.Tag == "" {
		return out, fmt.Errorf("%s has no tag for ImagePolicy %s to select (a digest alone cannot be written by the automation)", img, owned)
	}
	res := dc.Resource(api.Policies())
	ru, err := res.Namespace(root.Namespace).Get(ctx, root.Name, metav1.GetOptions{})
	if err != nil {
		return out, fmt.Errorf("read ImagePolicy %s (the root of %s's promotion): %w", root, service, err)
	}
	spec, err := OwnedSpec(ru, owned, ref.Tag)
	if err != nil {
		return out, err
	}
	pol := res.Namespace(owned.Namespace)
	// Both writes are conditional: a create that finds the policy created in
	// between judges it by its record, a patch that finds it changed reads
	// it again. Paced by client-go's default backoff, not five immediate
	// tries.
	retriable := func(err error) bool { return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) }
	err = retry.OnError(conflicts, retriable, func() error {
		u, err := pol.Get(ctx, owned.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			obj := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": flux.ImageGroup + "/" + api.Version, "kind": "ImagePolicy",
				"metadata": map[string]any{
					"name": owned.Name, "namespace": owned.Namespace,
					"annotations": map[string]any{AnnPromotionOf: service, flux.ReconcileAnnotation: token},
				},
				"spec": spec,
			}}
			obj.SetLabels(OwnedLabels())
			if _, err = pol.Create(ctx, obj, metav1.CreateOptions{FieldManager: rollout.FieldManager}); err != nil {
				return fmt.Errorf("create ImagePolicy %s for the promotion of %s: %w", owned, service, err)
			}
			out = Pointed{Created: true, Changed: true}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read ImagePolicy %s: %w", owned, err)
		}
		if !OwnedBy(u, service) {
			return fmt.Errorf("ImagePolicy %s %w (no label %s: %s with annotation %s: %s): %s",
				owned, ErrForeignPolicy, LabelManagedBy, ManagedByAutodeploy, AnnPromotionOf, service, ForeignPolicyFix(service, owned))
		}
		cur, _, _ := unstructured.NestedMap(u.Object, "spec")
		changed := !sameSpec(cur, spec)
		patch := map[string]any{"metadata": map[string]any{
			"resourceVersion": u.GetResourceVersion(),
			"annotations":     map[string]any{flux.ReconcileAnnotation: token},
		}}
		if changed {
			// The keys autodeploy sets, and null for what it does not
			// (a digestReflectionPolicy the root dropped): merge patch.
			s := map[string]any{}
			for _, k := range []string{"imageRepositoryRef", "filterTags", "policy", "digestReflectionPolicy", "interval"} {
				s[k] = spec[k] // nil: removed
			}
			patch["spec"] = s
		}
		b, _ := json.Marshal(patch)
		_, err = pol.Patch(ctx, owned.Name, types.MergePatchType, b, metav1.PatchOptions{FieldManager: rollout.FieldManager})
		if err != nil {
			return fmt.Errorf("point ImagePolicy %s at %s: %w", owned, ref.Tag, err)
		}
		out = Pointed{Changed: changed}
		return nil
	})
	if err != nil {
		return Pointed{}, err
	}
	return out, nil
}

// sameSpec compares the keys OwnedSpec sets (the API server may default
// others).
func sameSpec(cur, want map[string]any) bool {
	for _, k := range []string{"imageRepositoryRef", "filterTags", "policy", "digestReflectionPolicy", "interval"} {
		if !reflect.DeepEqual(cur[k], want[k]) {
			return false
		}
	}
	return true
}

// DeletePolicy removes service's owned policy (forget), by its record:
// one without it is someone else's and stays (ErrForeignPolicy). The
// delete is conditional on the resourceVersion read. deleted is false
// when there was none.
func DeletePolicy(ctx context.Context, dc dynamic.Interface, api flux.API, owned flux.Ref, service string, dryRun bool) (deleted bool, err error) {
	pol := dc.Resource(api.Policies()).Namespace(owned.Namespace)
	u, err := pol.Get(ctx, owned.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read ImagePolicy %s: %w", owned, err)
	case !OwnedBy(u, service):
		return false, fmt.Errorf("ImagePolicy %s %w (no record for %s): left as it is", owned, ErrForeignPolicy, service)
	case dryRun:
		return true, nil
	}
	rv := u.GetResourceVersion()
	err = pol.Delete(ctx, owned.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("delete ImagePolicy %s: %w", owned, err)
	}
	return true, nil
}
