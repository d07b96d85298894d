// Package fluxsim plays Flux's controllers against a real API server, for
// the integration tests and the demo: the module proxy does not serve the
// controllers, and no registry is needed to exercise autodeploy.
//
// # image-reflector-controller (Start, Reflector)
//
// It writes ImageRepository and ImagePolicy status in the exact shape of
// the chosen Flux version, and answers reconcile requests with
// status.lastHandledReconcileAt as the controller does
// (fluxcd.io/flux/components/image/imagerepositories/#triggering-a-reconcile).
// In the real order (image-reflector-controller's imagerepository_controller.go
// and imagepolicy_controller.go), for a reconcile request or a new
// generation of a repository:
//
//  1. the repository's progress is written: Reconciling True
//     "reconciliation in progress", nothing else;
//  2. Flux < 2.7 only (Flux26, V1beta1): its policies are written at once,
//     still with the old selection (marked Reconciling): the v1beta2
//     policy reconciler re-evaluates a policy on every write of its
//     repository, before the scan's tags are in (issue 17 item 11,
//     measured with v0.35.2: a run accepted that write and planned the
//     old tag). Flux >= 2.7 re-evaluates only when the scan's revision
//     changed (imageRepositoryPredicate);
//  3. the scan is written, with lastHandledReconcileAt: tagCount,
//     latestTags (the 10 greatest tags in descending string order,
//     v1beta2 and v1), revision (a checksum, Flux >= 2.7), Ready True;
//  4. each policy a moment later with the new selection (PolicyLag;
//     observed 18 ms with Flux 2.6).
//
// A repository's spec.exclusionList drops matching tags from the scan
// (#exclusion-list), and a spec change is reconciled without a request (a
// new generation), so a policy falls back to the newest tag not excluded.
// The "registry" is the list of images the test pushed. A policy applies
// its spec.filterTags.pattern (a Go regexp, as the controller compiles it:
// fluxcd.io/flux/components/image/imagepolicies/#filter-tags) to the
// scanned tags before its order, and selects the newest pushed of those
// that pass, which the tests push in the order an alphabetical policy
// ranks them (the order itself is not evaluated). A policy is
// re-evaluated on its repository's scan, on a new generation of its own
// spec (every version: controller-runtime's GenerationChangedPredicate),
// and on a reconcile request (Flux >= 2.7, #triggering-a-reconcile). A
// policy the test did not Track (one autodeploy creates for a promotion)
// is followed from its first event, over the repository its
// spec.imageRepositoryRef names, once that repository has images. Not
// modelled: digests. The "registry" has tags only, so a policy's
// spec.digestReflectionPolicy is not played (the real controller then
// writes latestRef.digest). Digest pinning is unit-tested (deploy's Plan
// rows, TestAwaitAutomationComparesDigests), not on the cluster.
//
// # GitOps: source-, kustomize- and image-automation-controller (StartGitOps)
//
// StartGitOps plays the three controllers that carry an image from a
// policy to git and from git to the cluster, for one GitRepository
// ("flux-system", branch main), one Kustomization ("apps", prune) and one
// ImageUpdateAutomation ("flux-system", Setters), all in one namespace. The
// repository is a bare one on disk, served over git's smart HTTP protocol
// on loopback (githttp.go: the GitRepository CRD accepts only http(s) and
// ssh URLs). It uses the libraries the controllers are built on:
// github.com/fluxcd/pkg/ssa for the apply and github.com/go-git/go-git/v5
// for git. What is modelled, and where Flux documents it:
//
// source-controller (fluxcd.io/flux/components/source/gitrepositories/):
//   - a reconcile resolves the head of spec.ref.branch and, for a new
//     commit, stores an artifact: status.artifact.revision
//     "main@sha1:<hash>", digest, path, url, size, lastUpdateTime
//     (#artifact), with Ready and ArtifactInStorage True "stored artifact
//     for revision '...'";
//   - it reconciles at spec.interval or on a reconcile request
//     (reconcile.fluxcd.io/requestedAt, echoed in
//     status.lastHandledReconcileAt, #triggering-a-reconcile): a push is
//     not seen before either (Fetch plays the interval);
//   - spec.suspend: nothing is fetched (#suspend).
//
// kustomize-controller (fluxcd.io/flux/components/kustomize/kustomizations/):
//   - it watches its source and reconciles when the artifact revision
//     changes, at spec.interval (ReconcileKustomization), on a reconcile
//     request, and on a new generation (e.g. resume);
//   - spec.path without a kustomization.yaml: every manifest under it,
//     recursively (#path); spec.targetNamespace (#target-namespace) is set
//     to the namespace, so manifests may omit theirs, or left out
//     (GitOptions.ManifestNamespaces) and each object goes to the namespace
//     its manifest names (one directory per environment);
//   - the apply is ssa.ResourceManager.ApplyAllStaged with the options of
//     KustomizationReconciler.apply (kustomize-controller
//     internal/controller/kustomization_controller.go): field manager
//     kustomize-controller, server-side apply with force (conflicts taken
//     over), labels kustomize.toolkit.fluxcd.io/name and /namespace on
//     every object, and drift detection: a server-side dry-run apply is
//     compared with the live object and only objects that differ are
//     written (the spec's example: it "runs a server-side apply dry-run
//     to detect and correct drift inside the cluster"). So when git matches the cluster nothing
//     is written, whoever owns the fields and whatever annotations others
//     added; when git is behind, git's values come back and
//     kustomize-controller owns those fields again;
//   - an object annotated or labelled kustomize.toolkit.fluxcd.io/reconcile:
//     disabled in the cluster (or in git) is skipped, as are ssa: Ignore
//     ones; ssa: IfNotPresent ones are only created (#controlling-the-apply-
//     behavior-of-resources);
//   - spec.prune: objects of the previous status.inventory missing from
//     the new apply are deleted, unless annotated prune: disabled (#prune);
//   - status: lastAttemptedRevision first (with Ready Unknown and
//     Reconciling "Detecting drift for revision ..."), then after the apply
//     lastAppliedRevision, inventory, observedGeneration,
//     lastHandledReconcileAt and Ready True "Applied revision: <rev>"; on
//     a failure Ready False with the error, lastAppliedRevision unchanged;
//   - spec.suspend (#suspend): nothing is applied; a reconcile request is
//     still recorded in lastHandledReconcileAt (the controller's deferred
//     finalizeStatus).
//
// image-automation-controller
// (fluxcd.io/flux/components/image/imageupdateautomations/ and
// fluxcd.io/flux/guides/image-update/):
//   - it watches the ImagePolicies of its namespace and runs when a
//     policy's latest image changes, and on a reconcile request or a new
//     generation; spec.interval is RunAutomation;
//   - a run lists the namespace's policies that spec.policySelector
//     matches (all without one; #policy-selector) and that have selected an image,
//     checks out main, rewrites each setter under spec.update.path
//     (`# {"$imagepolicy": "<ns>:<name>"}` with name:tag, the ":tag" and
//     ":name" variants with the tag or the name; #update, "Marking images
//     for update"), and commits as fluxcdbot with the default message
//     "Update from image update automation" and pushes to main only when a
//     file changed;
//   - status: lastAutomationRunTime, observedPolicies (replaced: a policy
//     no longer selected drops out), observedSourceRevision,
//     lastHandledReconcileAt; after a push
//     lastPushCommit and lastPushTime; Ready True "repository up-to-date",
//     or False GitOperationFailed "failed to update source: <push error>"
//     when the push is refused (RefusePush);
//   - spec.suspend: nothing is written, to git or to status (#suspend).
//
// Timing and order. Nothing runs on a clock: an interval elapses when a
// test calls Fetch, ReconcileKustomization or RunAutomation, so a test
// never races a timer. Watch-driven work (a policy change, a reconcile
// request, a resume) runs at once, in a few milliseconds (issue 12 saw
// the real automation commit within about a second), except the
// automation's run on a policy change when GitOptions.AutomationDelay is
// set: then it pushes that long after the change, as the real controller's
// latency orders its push after a rollout that completes at once (a
// Deployment of 0 replicas: issue 17, item 6). StartGitOps does
// what the controllers do on creation, in this order: artifact of the
// first commit, apply, one automation run. Fetch stores the new artifact
// and then applies it before returning (the real kustomize-controller
// follows within moments, through its watch).
//
// Not modelled (deviations from the real controllers):
//   - no kustomize build: a kustomization.yaml under the path is refused;
//     no patches, images:, postBuild substitution, decryption, health
//     checks (spec.wait), dependsOn, spec.force, status.history;
//   - the setters are rewritten line by line (markers on `key: value`
//     lines of .yaml/.yml files); the controller rewrites the parsed YAML
//     with kyaml, which may also reformat a file; ":digest" markers and
//     messageTemplate are not played;
//   - the artifact's digest is a SHA-256 of the commit's files, not of a
//     tarball, and its URL is not served;
//   - one write to the repository at a time, so a push is never refused
//     as non-fast-forward; a refused push is not retried with backoff:
//     the next trigger pushes;
//   - one status patch where the controllers make two or three progress
//     patches; no events, no Stalled condition.
package fluxsim

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/autodeploy-dev/autodeploy/internal/flux"
)

// ReconcileAnnotation is the annotation `flux reconcile` sets.
const ReconcileAnnotation = flux.ReconcileAnnotation

// Group is the API group of image-reflector-controller.
const Group = flux.ImageGroup

// Version is an ImagePolicy/ImageRepository API version as one Flux release
// serves and writes it.
type Version struct {
	APIVersion string // v1, v1beta2, v1beta1
	// LatestRef: status.latestRef {name, tag}.
	LatestRef bool
	// LatestImage: status.latestImage (v1beta1; deprecated in 2.6's v1beta2).
	LatestImage bool
	// PolicyReconcile: ImagePolicy answers reconcile requests (Flux >= 2.7).
	PolicyReconcile bool
}

// The versions of the supported Flux generations.
var (
	V1      = Version{APIVersion: "v1", LatestRef: true, PolicyReconcile: true}
	V1beta2 = Version{APIVersion: "v1beta2", LatestRef: true, PolicyReconcile: true} // as Flux 2.7 serves it
	Flux26  = Version{APIVersion: "v1beta2", LatestRef: true, LatestImage: true}
	V1beta1 = Version{APIVersion: "v1beta1", LatestImage: true}
)

// GVR returns the resource at v.
func (v Version) GVR(resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: Group, Version: v.APIVersion, Resource: resource}
}

// CreateRepository creates an ImageRepository scanning image.
func CreateRepository(ctx context.Context, dc dynamic.Interface, v Version, ns, name, image string) error {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": Group + "/" + v.APIVersion, "kind": "ImageRepository",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     map[string]any{"image": image, "interval": "5m"},
	}}
	if _, err := dc.Resource(v.GVR("imagerepositories")).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create ImageRepository %s/%s: %w", ns, name, err)
	}
	return nil
}

// PolicyPattern is the filterTags.pattern of the policies CreatePolicy
// creates: the seed's sha-<hex> tags, and the tags the tests pick KWOK pod
// patterns with (fail-<hex>, late-crash-<hex>, sha-<hex>-hotfix...), which
// the seed's ^sha-[a-f0-9]+$ would filter out now that the stand-in
// applies filterTags.
const PolicyPattern = "^[a-z]+(-[a-z0-9]+)+$"

// CreatePolicy creates an alphabetical ImagePolicy over the tags of repo
// that PolicyPattern passes, as the seed's policies are over sha-<hex>.
func CreatePolicy(ctx context.Context, dc dynamic.Interface, v Version, ns, name, repo string) error {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": Group + "/" + v.APIVersion, "kind": "ImagePolicy",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"imageRepositoryRef": map[string]any{"name": repo},
			"filterTags":         map[string]any{"pattern": PolicyPattern},
			"policy":             map[string]any{"alphabetical": map[string]any{"order": "asc"}},
		},
	}}
	if _, err := dc.Resource(v.GVR("imagepolicies")).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create ImagePolicy %s/%s: %w", ns, name, err)
	}
	return nil
}

// SetPolicy writes an ImagePolicy's status as the controller does after
// selecting image. An empty image is a policy not Ready, with no image yet.
// handled, if not empty, is written as lastHandledReconcileAt where the
// version has it.
func SetPolicy(ctx context.Context, dc dynamic.Interface, v Version, ns, name, image, handled string) error {
	status := map[string]any{"observedGeneration": int64(1)}
	cond := readyCondition(true, "Succeeded", "Latest image tag for "+image+" resolved")
	if image == "" {
		cond = readyCondition(false, "DependencyNotReady", "no image selected yet")
	} else {
		i := strings.LastIndex(image, ":")
		if v.LatestRef && i > 0 {
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
	return writeStatus(ctx, dc, v.GVR("imagepolicies"), ns, name, status)
}

// PolicyLag is how long after its repository's scan a policy is
// re-evaluated (see Reflector.handle).
const PolicyLag = 50 * time.Millisecond

// latestTagsCount is how many tags lastScanResult.latestTags lists
// (image-reflector-controller's imagerepository_controller.go).
const latestTagsCount = 10

// SetRepository writes an ImageRepository's status after a scan that found
// tags (after the exclusionList). The scan result changes with the tags
// found: tagCount, latestTags (v1beta2 and v1: the controller's
// sortTagsAndGetLatestTags, the 10 greatest in descending string order,
// whatever the policies' order), and (Flux >= 2.7) revision, a checksum of
// the tag list, which the policy reconciler watches.
func SetRepository(ctx context.Context, dc dynamic.Interface, v Version, ns, name, canonical, handled string, tags []string) error {
	scan := map[string]any{"tagCount": int64(len(tags)), "scanTime": time.Now().UTC().Format(time.RFC3339)}
	if v.LatestRef {
		latest := slices.Clone(tags)
		slices.SortStableFunc(latest, func(a, b string) int { return -strings.Compare(a, b) })
		if len(latest) > latestTagsCount {
			latest = latest[:latestTagsCount]
		}
		if len(latest) > 0 {
			scan["latestTags"] = latest
		}
	}
	if v.PolicyReconcile {
		scan["revision"] = fmt.Sprintf("sha256:%064x", len(tags))
	}
	status := map[string]any{
		"observedGeneration": int64(1),
		"canonicalImageName": canonical,
		"conditions":         []any{readyCondition(true, "Succeeded", fmt.Sprintf("successful scan: found %d tags", len(tags)))},
		"lastScanResult":     scan,
	}
	if handled != "" {
		status["lastHandledReconcileAt"] = handled
	}
	return writeStatus(ctx, dc, v.GVR("imagerepositories"), ns, name, status)
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

// writeStatus records the generation it reconciled, as Flux's controllers
// do (status.observedGeneration and each condition's observedGeneration,
// fluxcd/pkg/runtime/patch): a status is about the spec it was computed
// from.
func writeStatus(ctx context.Context, dc dynamic.Interface, gvr schema.GroupVersionResource, ns, name string, status map[string]any) error {
	obj, err := dc.Resource(gvr).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read %s %s/%s: %w", gvr.Resource, ns, name, err)
	}
	gen := obj.GetGeneration()
	status["observedGeneration"] = gen
	if conds, ok := status["conditions"].([]any); ok {
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok {
				m["observedGeneration"] = gen
			}
		}
	}
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return err
	}
	if _, err := dc.Resource(gvr).Namespace(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("write status of %s %s/%s: %w", gvr.Resource, ns, name, err)
	}
	return nil
}

// Reflector answers reconcile requests in one namespace by "scanning" a
// fake registry (set with Track and Push) and writing status.
type Reflector struct {
	dc  dynamic.Interface
	v   Version
	ns  string
	err func(error)

	mu       sync.Mutex
	images   map[string][]string // ImageRepository -> images in the "registry", oldest first
	policies map[string]string   // ImagePolicy -> ImageRepository
	silent   map[string]bool     // objects that ignore reconcile requests
	requests map[string]int      // "resource/name" -> reconcile requests seen
}

// Start runs a Reflector until ctx ends. onErr receives write failures.
func Start(ctx context.Context, dc dynamic.Interface, v Version, ns string, onErr func(error)) (*Reflector, error) {
	r := &Reflector{dc: dc, v: v, ns: ns, err: onErr,
		images: map[string][]string{}, policies: map[string]string{}, silent: map[string]bool{}, requests: map[string]int{}}
	for _, res := range []string{"imagerepositories", "imagepolicies"} {
		w, err := dc.Resource(v.GVR(res)).Namespace(ns).Watch(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("watch %s: %w", res, err)
		}
		go func() {
			defer w.Stop()
			for ev := range w.ResultChan() {
				u, ok := ev.Object.(*unstructured.Unstructured)
				switch {
				case !ok:
				case ev.Type == watch.Added || ev.Type == watch.Modified:
					r.handle(ctx, res, u)
				case ev.Type == watch.Deleted && res == "imagepolicies":
					// Not re-evaluated at the next scan (autodeploy
					// forget deleted its own, or a test its policy).
					r.mu.Lock()
					delete(r.policies, u.GetName())
					r.mu.Unlock()
				}
			}
		}()
	}
	return r, nil
}

// Track declares policy over repo with image as the newest tag, and writes
// both statuses as after a first scan.
func (r *Reflector) Track(ctx context.Context, policy, repo, image string) error {
	r.mu.Lock()
	r.policies[policy] = repo
	r.images[repo] = append(r.images[repo], image)
	_, tags := r.selectImage(repo, nil, "")
	r.mu.Unlock()
	if err := SetRepository(ctx, r.dc, r.v, r.ns, repo, repoOf(image), "", tags); err != nil {
		return err
	}
	return SetPolicy(ctx, r.dc, r.v, r.ns, policy, image, "")
}

// Push makes image the newest tag of repo. Status changes only at the next
// reconcile, as with a real registry between two scans.
func (r *Reflector) Push(repo, image string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.images[repo] = append(r.images[repo], image)
}

// selectImage is a policy's choice among the images of repo: the newest
// pushed whose tag no exclusionList pattern matches and that the policy's
// filterTags pattern passes ("" passes every tag; the tests push tags in
// the order an alphabetical policy ranks them); kept are the tags the
// scan keeps, before any policy's filter. The controller drops excluded
// tags at the scan (fluxcd.io/flux/components/image/imagerepositories/#exclusion-list)
// and each policy filters the scan's tags (imagepolicies/#filter-tags).
// An invalid pattern passes nothing (the controller fails the policy).
func (r *Reflector) selectImage(repo string, exclusions []string, pattern string) (image string, kept []string) {
	var res []*regexp.Regexp
	for _, p := range exclusions {
		if re, err := regexp.Compile(p); err == nil {
			res = append(res, re)
		}
	}
	filter, err := regexp.Compile(pattern)
	for _, img := range r.images[repo] {
		tag := strings.TrimPrefix(img[len(repoOf(img)):], ":")
		if slices.ContainsFunc(res, func(re *regexp.Regexp) bool { return re.MatchString(tag) }) {
			continue
		}
		kept = append(kept, tag)
		if err == nil && filter.MatchString(tag) {
			image = img
		}
	}
	return image, kept
}

// follow registers a policy the test did not Track (one autodeploy
// created) over the repository its spec names, once the stand-in knows
// that repository; it returns the repository, "" when not followed.
func (r *Reflector) follow(obj *unstructured.Unstructured) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	name := obj.GetName()
	if repo, ok := r.policies[name]; ok {
		return repo
	}
	repo, _, _ := unstructured.NestedString(obj.Object, "spec", "imageRepositoryRef", "name")
	if ns, _, _ := unstructured.NestedString(obj.Object, "spec", "imageRepositoryRef", "namespace"); (ns != "" && ns != r.ns) || len(r.images[repo]) == 0 {
		return ""
	}
	r.policies[name] = repo
	return repo
}

// policyPattern reads the filterTags.pattern of policy name ("" when it
// has none or cannot be read).
func (r *Reflector) policyPattern(ctx context.Context, name string) string {
	obj, err := r.dc.Resource(r.v.GVR("imagepolicies")).Namespace(r.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	p, _, _ := unstructured.NestedString(obj.Object, "spec", "filterTags", "pattern")
	return p
}

// Silence makes the named repository or policy ignore reconcile requests,
// like a controller that is down.
func (r *Reflector) Silence(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.silent[name] = true
}

// Requests returns how many distinct reconcile requests resource/name got.
func (r *Reflector) Requests(resource, name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests[resource+"/"+name]
}

func (r *Reflector) handle(ctx context.Context, res string, obj *unstructured.Unstructured) {
	token := obj.GetAnnotations()[ReconcileAnnotation]
	handled, _, _ := unstructured.NestedString(obj.Object, "status", "lastHandledReconcileAt")
	// A spec change (a new exclusionList) is reconciled without a request,
	// as controller-runtime's GenerationChangedPredicate does; the answer
	// then keeps the last handled token.
	observed, _, _ := unstructured.NestedInt64(obj.Object, "status", "observedGeneration")
	specChanged := obj.GetGeneration() != observed
	requested := token != "" && token != handled
	if res == "imagepolicies" {
		// A policy's new spec (a promotion's new filterTags) is
		// re-evaluated by every version; its reconcile request only from
		// Flux 2.7 (v1). One the stand-in does not follow is left alone.
		requested = requested && r.v.PolicyReconcile
		if r.follow(obj) == "" {
			return
		}
	}
	if !requested && !specChanged {
		return
	}
	if !requested {
		token = handled
	}
	name := obj.GetName()
	r.mu.Lock()
	key := fmt.Sprintf("%s/%s@%s#%d", res, name, token, obj.GetGeneration())
	first := r.requests[key] == 0
	r.requests[key]++
	// A request is counted once per token: a new generation while a
	// request is pending (an exclusion on a silent repository) is not a
	// new request.
	tokenKey := fmt.Sprintf("%s/%s@%s", res, name, token)
	if requested && r.requests[tokenKey] == 0 {
		r.requests[res+"/"+name]++
	}
	if requested {
		r.requests[tokenKey]++
	}
	silent := r.silent[name]
	repo := r.policies[name]
	if res == "imagerepositories" {
		repo = name
	}
	pols := maps.Clone(r.policies)
	r.mu.Unlock()
	if silent || !first {
		return
	}
	exclusions, err := r.exclusions(ctx, repo)
	if err != nil {
		if ctx.Err() == nil && r.err != nil {
			r.err(err)
		}
		return
	}
	pattern := ""
	if res == "imagepolicies" {
		pattern, _, _ = unstructured.NestedString(obj.Object, "spec", "filterTags", "pattern")
	}
	r.mu.Lock()
	image, tags := r.selectImage(repo, exclusions, pattern)
	r.mu.Unlock()
	switch res {
	case "imagerepositories":
		// The real order. The ImageRepository reconciler first persists
		// its progress (Reconciling "reconciliation in progress": a
		// reconcile request or a new generation is written before the
		// scan, imagerepository_controller.go "Persist reconciling if
		// generation differs or reconciliation is requested"), then
		// scans, then writes the scan (lastScanResult) together with
		// lastHandledReconcileAt in its final patch.
		err = r.progress(ctx, r.v.GVR("imagerepositories"), name)
		if err == nil && !r.v.PolicyReconcile {
			// Flux < 2.7: the ImagePolicy reconciler watches
			// ImageRepositories without a predicate (imagepolicy_controller.go
			// of the v1beta2 API: Watches(&ImageRepository{},
			// EnqueueRequestsFromMapFunc(imagePoliciesForRepository))), so
			// every write of the repository re-evaluates its policies, the
			// progress write too, before the scan's tags are in: a policy
			// write that keeps the old selection (issue 17 item 11,
			// measured with image-reflector-controller v0.35.2). Which of
			// the policy's fields that write changes was not recorded;
			// the stand-in marks it Reconciling, the controllers'
			// progressive status.
			for pol, repo := range pols {
				if repo == name {
					if err = r.progress(ctx, r.v.GVR("imagepolicies"), pol); err != nil {
						break
					}
				}
			}
		}
		if err == nil {
			err = SetRepository(ctx, r.dc, r.v, r.ns, name, repoOf(image), token, tags)
		}
		if err == nil {
			// Then each policy is re-evaluated on the scan's write, in
			// its own reconcile: observed a few milliseconds later (18 ms
			// with Flux 2.6). Flux >= 2.7's policies react only to this
			// write (imageRepositoryPredicate: the scan's revision
			// changed). PolicyLag plays the gap; the policy's own
			// lastHandledReconcileAt is left as it was.
			time.AfterFunc(PolicyLag, func() {
				for pol, repo := range pols {
					if repo != name {
						continue
					}
					pattern := r.policyPattern(ctx, pol)
					r.mu.Lock()
					img, _ := r.selectImage(repo, exclusions, pattern)
					r.mu.Unlock()
					// A policy deleted since it was tracked is no longer
					// in the controller's cache, which the repository's
					// watch enqueues its policies from: nothing to
					// reconcile, and no error.
					if err := SetPolicy(ctx, r.dc, r.v, r.ns, pol, img, r.policyHandled(ctx, pol)); err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil && r.err != nil {
						r.err(err)
					}
				}
			})
		}
	case "imagepolicies":
		// For a new generation alone, token is the last one handled.
		err = SetPolicy(ctx, r.dc, r.v, r.ns, name, image, token)
	}
	if err != nil && ctx.Err() == nil && r.err != nil {
		r.err(err)
	}
}

// progress writes the Reconciling condition a controller persists while it
// reconciles (fluxcd/pkg/runtime/reconcile.ProgressiveStatus without
// reset: Ready is kept), and nothing else: neither observedGeneration nor
// lastHandledReconcileAt, which only the final patch writes.
func (r *Reflector) progress(ctx context.Context, gvr schema.GroupVersionResource, name string) error {
	obj, err := r.dc.Resource(gvr).Namespace(r.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read %s %s/%s: %w", gvr.Resource, r.ns, name, err)
	}
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	conds = setConditions(conds, condition("Reconciling", metav1.ConditionTrue, "Progressing", "reconciliation in progress", obj.GetGeneration()))
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": conds}})
	if err != nil {
		return err
	}
	if _, err := r.dc.Resource(gvr).Namespace(r.ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("write status of %s %s/%s: %w", gvr.Resource, r.ns, name, err)
	}
	return nil
}

// exclusions reads the exclusionList of ImageRepository name.
func (r *Reflector) exclusions(ctx context.Context, name string) ([]string, error) {
	obj, err := r.dc.Resource(r.v.GVR("imagerepositories")).Namespace(r.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read ImageRepository %s/%s: %w", r.ns, name, err)
	}
	list, _, _ := unstructured.NestedStringSlice(obj.Object, "spec", "exclusionList")
	return list, nil
}

func (r *Reflector) policyHandled(ctx context.Context, name string) string {
	obj, err := r.dc.Resource(r.v.GVR("imagepolicies")).Namespace(r.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	h, _, _ := unstructured.NestedString(obj.Object, "status", "lastHandledReconcileAt")
	return h
}

func repoOf(image string) string {
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[:i]
	}
	return image
}
