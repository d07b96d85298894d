// Package flux reads Flux's image automation objects (ImagePolicy,
// ImageRepository) and asks Flux to rescan now, as `flux reconcile` does.
// It goes through the dynamic client so that one binary understands every
// served API version (v1beta1 .. v1) without importing Flux's Go modules.
package flux

import (
	"context"
	"errors"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
)

// ImageGroup is the API group of image-reflector-controller.
const ImageGroup = "image.toolkit.fluxcd.io"

// ReconcileAnnotation is the annotation `flux reconcile` sets to ask a
// controller to reconcile now; controllers echo its value in
// status.lastHandledReconcileAt once handled.
const ReconcileAnnotation = "reconcile.fluxcd.io/requestedAt"

// knownVersions in order of preference.
var knownVersions = []string{"v1", "v1beta2", "v1beta1"}

// ErrNotInstalled means the cluster does not serve Flux's image API.
var ErrNotInstalled = errors.New("the cluster does not serve " + ImageGroup + ": Flux's image automation controllers are not installed (flux install --components-extra=image-reflector-controller,image-automation-controller)")

// API is the image API version autodeploy talks to on this cluster.
type API struct {
	Version string   // preferred served version, e.g. v1
	Served  []string // every served version
}

// PolicyReconcile reports whether ImagePolicies answer reconcile requests
// with status.lastHandledReconcileAt: from Flux 2.7, which serves v1.
func (a API) PolicyReconcile() bool { return a.Version == "v1" }

// Policies is the ImagePolicy resource at a's version.
func (a API) Policies() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: ImageGroup, Version: a.Version, Resource: "imagepolicies"}
}

// Repositories is the ImageRepository resource at a's version.
func (a API) Repositories() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: ImageGroup, Version: a.Version, Resource: "imagerepositories"}
}

// Detect finds the served image API versions with one discovery request.
// The discovery client takes no context, so the request runs aside and a
// signal (ctx) ends the wait at once instead of after the request timeout.
func Detect(ctx context.Context, d discovery.DiscoveryInterface) (API, error) {
	type answer struct {
		groups *metav1.APIGroupList
		err    error
	}
	ch := make(chan answer, 1)
	go func() {
		g, err := d.ServerGroups()
		ch <- answer{g, err}
	}()
	var groups *metav1.APIGroupList
	select {
	case <-ctx.Done():
		return API{}, ctx.Err()
	case a := <-ch:
		if apierrors.IsForbidden(a.err) {
			return API{}, &DiscoveryRefusedError{Err: a.err}
		}
		if a.err != nil {
			return API{}, a.err
		}
		groups = a.groups
	}
	for _, g := range groups.Groups {
		if g.Name != ImageGroup {
			continue
		}
		var api API
		for _, v := range g.Versions {
			api.Served = append(api.Served, v.Version)
		}
		for _, v := range knownVersions {
			if slices.Contains(api.Served, v) {
				api.Version = v
				return api, nil
			}
		}
		return API{}, fmt.Errorf("%s serves %v, none of which autodeploy understands (%v)", ImageGroup, api.Served, knownVersions)
	}
	return API{}, ErrNotInstalled
}

// DiscoveryRefusedError is a discovery request the API server refused
// (403). client-go's discovery drops the answer's body, so the error it
// returns says only "unknown" (issue 18, item 5): this one says what was
// refused and what grants it. It unwraps to the 403, so that callers see
// RBAC (apierrors.IsForbidden).
type DiscoveryRefusedError struct{ Err error }

func (e *DiscoveryRefusedError) Error() string {
	return "the API server refused discovery of its API groups (GET /api and /apis: 403 Forbidden), which autodeploy needs to find Flux's image API: grant get on those paths (the system:discovery ClusterRole, bound to system:authenticated by default)"
}

func (e *DiscoveryRefusedError) Unwrap() error { return e.Err }

// Policy is what autodeploy needs from an ImagePolicy.
type Policy struct {
	Namespace, Name string
	// Latest is the selected image as a full reference, "" when none yet.
	Latest string
	// Ready is the Ready condition; Message its message.
	Ready   bool
	Message string
	// Repository is the ImageRepository the policy selects from.
	RepoNamespace, RepoName string
	Suspended               bool
	LastHandled             string
	// ResourceVersion tells a later write from this one.
	ResourceVersion string
	// Order is how the policy ranks tags.
	Order Order
}

// Key is namespace/name.
func (p Policy) Key() string { return p.Namespace + "/" + p.Name }

// ParsePolicy reads an ImagePolicy of any served version. status.latestRef
// (v1, v1beta2) is preferred over the deprecated status.latestImage, which
// is all v1beta1 has.
func ParsePolicy(u *unstructured.Unstructured) Policy {
	p := Policy{Namespace: u.GetNamespace(), Name: u.GetName(), ResourceVersion: u.GetResourceVersion()}
	name, _, _ := unstructured.NestedString(u.Object, "status", "latestRef", "name")
	tag, _, _ := unstructured.NestedString(u.Object, "status", "latestRef", "tag")
	digest, _, _ := unstructured.NestedString(u.Object, "status", "latestRef", "digest")
	switch {
	case name != "" && (tag != "" || digest != ""):
		p.Latest = name
		if tag != "" {
			p.Latest += ":" + tag
		}
		if digest != "" {
			p.Latest += "@" + digest
		}
	default:
		p.Latest, _, _ = unstructured.NestedString(u.Object, "status", "latestImage")
	}
	p.Ready, p.Message = readyCondition(u)
	p.RepoName, _, _ = unstructured.NestedString(u.Object, "spec", "imageRepositoryRef", "name")
	p.RepoNamespace, _, _ = unstructured.NestedString(u.Object, "spec", "imageRepositoryRef", "namespace")
	if p.RepoNamespace == "" {
		p.RepoNamespace = p.Namespace
	}
	p.Suspended, _, _ = unstructured.NestedBool(u.Object, "spec", "suspend")
	p.LastHandled, _, _ = unstructured.NestedString(u.Object, "status", "lastHandledReconcileAt")
	p.Order = ParseOrder(u)
	return p
}

// Ready is readyCondition for other packages (status, doctor): one
// judgement of a Flux object's readiness.
func Ready(u *unstructured.Unstructured) (bool, string) { return readyCondition(u) }

// readyCondition returns the Ready condition's status and message; an
// object without one (never reconciled) is not ready. As in Flux's own
// status checks (fluxcd/pkg runtime/conditions and kstatus), a Ready
// condition counts only for the current generation: after a spec change,
// until the controller has reconciled it (status.observedGeneration and the
// condition's observedGeneration equal metadata.generation), the old
// verdict says nothing about the new spec.
func readyCondition(u *unstructured.Unstructured) (bool, string) {
	gen := u.GetGeneration()
	if og, found, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration"); found && gen > 0 && og != gen {
		return false, fmt.Sprintf("Flux has not reconciled generation %d yet (it observed %d)", gen, og)
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok || m["type"] != "Ready" {
			continue
		}
		msg, _ := m["message"].(string)
		if cog, ok := m["observedGeneration"].(int64); ok && gen > 0 && cog != gen {
			return false, fmt.Sprintf("Ready condition is for generation %d, not %d: %s", cog, gen, msg)
		}
		return m["status"] == "True", msg
	}
	return false, "no Ready condition yet"
}
