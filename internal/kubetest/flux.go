package kubetest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

// ReconcileAnnotation is the annotation `flux reconcile` sets.
const ReconcileAnnotation = "reconcile.fluxcd.io/requestedAt"

// ImageGroup is the API group of Flux's image-reflector-controller.
const ImageGroup = "image.toolkit.fluxcd.io"

// FluxVersion is an ImagePolicy/ImageRepository API version as a given Flux
// release serves and writes it.
type FluxVersion struct {
	APIVersion string // v1, v1beta2, v1beta1
	// LatestRef: status.latestRef {name, tag}; otherwise status.latestImage.
	LatestRef bool
	// LatestImage: also the deprecated status.latestImage (Flux 2.6 v1beta2).
	LatestImage bool
	// PolicyReconcile: ImagePolicy answers the reconcile annotation with
	// status.lastHandledReconcileAt (Flux >= 2.7).
	PolicyReconcile bool
}

var (
	FluxV1      = FluxVersion{APIVersion: "v1", LatestRef: true, PolicyReconcile: true}
	Flux27Beta2 = FluxVersion{APIVersion: "v1beta2", LatestRef: true, PolicyReconcile: true}
	Flux26Beta2 = FluxVersion{APIVersion: "v1beta2", LatestRef: true, LatestImage: true}
	Flux26Beta1 = FluxVersion{APIVersion: "v1beta1", LatestImage: true}
)

func (v FluxVersion) gvr(resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: ImageGroup, Version: v.APIVersion, Resource: resource}
}

// CreateImageRepository creates an ImageRepository scanning image.
func (e *Env) CreateImageRepository(v FluxVersion, ns, name, image string) {
	e.T.Helper()
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": ImageGroup + "/" + v.APIVersion, "kind": "ImageRepository",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     map[string]any{"image": image, "interval": "5m"},
	}}
	if _, err := e.Dynamic.Resource(v.gvr("imagerepositories")).Namespace(ns).Create(context.Background(), obj, metav1.CreateOptions{}); err != nil {
		e.T.Fatalf("create ImageRepository %s/%s: %v", ns, name, err)
	}
}

// CreateImagePolicy creates an alphabetical ImagePolicy over repo, as the
// seed's policies are.
func (e *Env) CreateImagePolicy(v FluxVersion, ns, name, repo string) {
	e.T.Helper()
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": ImageGroup + "/" + v.APIVersion, "kind": "ImagePolicy",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"imageRepositoryRef": map[string]any{"name": repo},
			"filterTags":         map[string]any{"pattern": "^.*$"},
			"policy":             map[string]any{"alphabetical": map[string]any{"order": "asc"}},
		},
	}}
	if _, err := e.Dynamic.Resource(v.gvr("imagepolicies")).Namespace(ns).Create(context.Background(), obj, metav1.CreateOptions{}); err != nil {
		e.T.Fatalf("create ImagePolicy %s/%s: %v", ns, name, err)
	}
}

// SetPolicyImage writes an ImagePolicy's status as image-reflector-controller
// does after selecting image, in the shape of v. An empty image writes a
// policy that is not Ready and has no image yet.
func (e *Env) SetPolicyImage(v FluxVersion, ns, name, image string) {
	e.T.Helper()
	if err := setPolicyStatus(context.Background(), e, v, ns, name, image, ""); err != nil {
		e.T.Fatal(err)
	}
}

func setPolicyStatus(ctx context.Context, e *Env, v FluxVersion, ns, name, image, handled string) error {
	status := map[string]any{"observedGeneration": int64(1)}
	cond := readyCondition(true, "Succeeded", "Latest image tag for "+image+" resolved")
	if image == "" {
		cond = readyCondition(false, "DependencyNotReady", "no image selected yet")
	} else {
		i := strings.LastIndex(image, ":")
		if v.LatestRef {
			status["latestRef"] = map[string]any{"name": image[:i], "tag": image[i+1:]}
		}
		if v.LatestImage {
			status["latestImage"] = image
		}
	}
	status["conditions"] = []any{cond}
	if handled != "" && v.PolicyReconcile {
		status["lastHandledReconcileAt"] = handled
	}
	return writeStatus(ctx, e, v.gvr("imagepolicies"), ns, name, status)
}

func setRepositoryStatus(ctx context.Context, e *Env, v FluxVersion, ns, name, image, handled string, ready bool) error {
	status := map[string]any{
		"observedGeneration": int64(1),
		"canonicalImageName": image,
		"conditions":         []any{readyCondition(ready, map[bool]string{true: "Succeeded", false: "ReadOperationFailed"}[ready], "scan")},
		"lastScanResult": map[string]any{
			"tagCount": int64(3), "scanTime": time.Now().UTC().Format(time.RFC3339),
		},
	}
	if handled != "" {
		status["lastHandledReconcileAt"] = handled
	}
	return writeStatus(ctx, e, v.gvr("imagerepositories"), ns, name, status)
}

func readyCondition(ok bool, reason, msg string) map[string]any {
	s := "False"
	if ok {
		s = "True"
	}
	return map[string]any{
		"type": "Ready", "status": s, "reason": reason, "message": msg,
		"lastTransitionTime": time.Now().UTC().Format(time.RFC3339), "observedGeneration": int64(1),
	}
}

func writeStatus(ctx context.Context, e *Env, gvr schema.GroupVersionResource, ns, name string, status map[string]any) error {
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return err
	}
	_, err = e.Dynamic.Resource(gvr).Namespace(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return fmt.Errorf("write status of %s %s/%s: %w", gvr.Resource, ns, name, err)
	}
	return nil
}

// Reflector plays Flux's image-reflector-controller in one namespace: it
// answers reconcile requests on ImageRepositories and ImagePolicies by
// "scanning" the fake registry set with Push and writing status, including
// lastHandledReconcileAt, exactly as the controller of version v would.
type Reflector struct {
	e  *Env
	v  FluxVersion
	ns string

	mu       sync.Mutex
	latest   map[string]string // ImageRepository name -> newest image in the "registry"
	policies map[string]string // ImagePolicy name -> ImageRepository name
	// Silent repositories ignore reconcile requests, like a controller that
	// is down or a registry that times out.
	silent map[string]bool
	// Requests counts reconcile requests seen, by "kind/name".
	Requests map[string]int
}

// StartReflector starts a Reflector for ns until the test ends.
func (e *Env) StartReflector(v FluxVersion, ns string) *Reflector {
	r := &Reflector{e: e, v: v, ns: ns, latest: map[string]string{}, policies: map[string]string{}, silent: map[string]bool{}, Requests: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	e.T.Cleanup(func() { cancel(); wg.Wait() })
	for _, res := range []string{"imagerepositories", "imagepolicies"} {
		w, err := e.Dynamic.Resource(v.gvr(res)).Namespace(ns).Watch(ctx, metav1.ListOptions{})
		if err != nil {
			e.T.Fatalf("watch %s: %v", res, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case ev, ok := <-w.ResultChan():
					if !ok {
						return
					}
					if ev.Type == watch.Added || ev.Type == watch.Modified {
						r.handle(ctx, res, ev.Object.(*unstructured.Unstructured))
					}
				}
			}
		}()
	}
	return r
}

// Track declares a policy over a repository, pushes image as the newest
// tag and writes both statuses, as after a first scan.
func (r *Reflector) Track(policy, repo, image string) {
	r.mu.Lock()
	r.policies[policy] = repo
	r.latest[repo] = image
	r.mu.Unlock()
	ctx := context.Background()
	if err := setRepositoryStatus(ctx, r.e, r.v, r.ns, repo, image, "", true); err != nil {
		r.e.T.Fatal(err)
	}
	if err := setPolicyStatus(ctx, r.e, r.v, r.ns, policy, image, ""); err != nil {
		r.e.T.Fatal(err)
	}
}

// Push makes image the newest in repo's registry. Status changes only at
// the next reconcile, as with a real registry between two scans.
func (r *Reflector) Push(repo, image string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.latest[repo] = image
}

// Silence makes repo ignore reconcile requests.
func (r *Reflector) Silence(repo string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.silent[repo] = true
}

// RequestCount returns how many reconcile requests kind/name got.
func (r *Reflector) RequestCount(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Requests[key]
}

func (r *Reflector) handle(ctx context.Context, res string, obj *unstructured.Unstructured) {
	token := obj.GetAnnotations()[ReconcileAnnotation]
	handled, _, _ := unstructured.NestedString(obj.Object, "status", "lastHandledReconcileAt")
	if token == "" || token == handled {
		return
	}
	name := obj.GetName()
	r.mu.Lock()
	key := res + "/" + name
	r.Requests[key]++
	silent := r.silent[name]
	var err error
	switch res {
	case "imagerepositories":
		image := r.latest[name]
		r.mu.Unlock()
		if silent {
			return
		}
		err = setRepositoryStatus(ctx, r.e, r.v, r.ns, name, strings.SplitN(image, ":", 2)[0], token, true)
		// The controller re-evaluates the policies of a scanned repository.
		for pol, repo := range r.snapshotPolicies() {
			if repo == name && err == nil {
				err = setPolicyStatus(ctx, r.e, r.v, r.ns, pol, image, r.policyHandled(ctx, pol))
			}
		}
	case "imagepolicies":
		repo := r.policies[name]
		image := r.latest[repo]
		r.mu.Unlock()
		if silent || !r.v.PolicyReconcile {
			return
		}
		err = setPolicyStatus(ctx, r.e, r.v, r.ns, name, image, token)
	default:
		r.mu.Unlock()
	}
	if err != nil && ctx.Err() == nil {
		r.e.T.Errorf("reflector: %v", err)
	}
}

func (r *Reflector) snapshotPolicies() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]string, len(r.policies))
	for k, v := range r.policies {
		out[k] = v
	}
	return out
}

// policyHandled keeps a policy's lastHandledReconcileAt as it was: a scan of
// the repository is not an answer to the policy's own request.
func (r *Reflector) policyHandled(ctx context.Context, name string) string {
	obj, err := r.e.Dynamic.Resource(r.v.gvr("imagepolicies")).Namespace(r.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	h, _, _ := unstructured.NestedString(obj.Object, "status", "lastHandledReconcileAt")
	return h
}
