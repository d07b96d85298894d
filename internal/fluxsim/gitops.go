package fluxsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/autodeploy-dev/autodeploy/internal/flux"
)

// GitOptions configures StartGitOps.
type GitOptions struct {
	// Namespace holds the GitRepository, the Kustomization and the
	// ImageUpdateAutomation (it must exist).
	Namespace string
	// TargetNamespace is the Kustomization's spec.targetNamespace, so
	// manifests may leave their namespace out; default Namespace (the
	// seed keeps its Flux objects in flux-system and its apps in apps).
	TargetNamespace string
	// ManifestNamespaces leaves spec.targetNamespace out: each object is
	// applied in the namespace its manifest names, as a repository with
	// one directory per environment (staging/, production/) has it.
	// spec.targetNamespace is optional and, when set, sets the namespace
	// of all objects (https://fluxcd.io/flux/components/kustomize/kustomizations/#target-namespace);
	// kustomize leaves a namespace it is not told to set alone. Not
	// modelled: a namespaced object whose manifest names no namespace;
	// the stand-in refuses it (ReconciliationFailed) rather than guess.
	ManifestNamespaces bool
	// Dir is a scratch directory for the bare repository (t.TempDir()).
	Dir string
	// Files is the first commit: repository path -> content, e.g.
	// "apps/api/deployment.yaml".
	Files map[string]string
	// Path is the Kustomization's spec.path and the automation's
	// spec.update.path, e.g. "./apps".
	Path string
	// ImageVersion is the image API generation: ImagePolicies are read and
	// the ImageUpdateAutomation is written at its APIVersion. Default V1.
	ImageVersion Version
	// OnError receives failures of the stand-ins' own machinery (an API
	// write refused, a broken repository) in work the watches started.
	// What the real controllers would report in status (a refused push, a
	// failed apply) is written to status instead.
	OnError func(error)
	// AutomationDelay is how long image-automation-controller takes from a
	// policy's new image to its push (its queue, the clone, the commit):
	// observed with the real controller, about a second. 0 runs it at once.
	// Tests set it to order the push after something else, such as a
	// rollout that completes at once.
	AutomationDelay time.Duration
}

// Names of the objects StartGitOps creates in GitOptions.Namespace, as
// `flux bootstrap` names the first two.
const (
	GitRepositoryName = "flux-system"
	KustomizationName = "apps"
	AutomationName    = "flux-system"
)

// Branch is the branch the GitRepository follows and the automation
// pushes to.
const Branch = "main"

// What the controllers write, as Flux names it. The names autodeploy
// itself reads are defined once, in internal/flux.
const (
	KustomizeManager       = flux.KustomizeManager
	KustomizeGroup         = flux.KustomizeGroup
	NameLabel              = flux.KustomizationNameLabel
	NamespaceLabel         = flux.KustomizationNamespaceLabel
	ReconcileAnnotationKey = flux.KustomizeReconcileAnnotation
	// AutomationAuthor and AutomationEmail sign the automation's commits.
	AutomationAuthor = "fluxcdbot"
	AutomationEmail  = "fluxcdbot@users.noreply.github.com"
	// AutomationMessage is image-automation-controller's default commit
	// message (defaultMessageTemplate in internal/source/source.go).
	AutomationMessage = "Update from image update automation"
)

// Resources of the source and kustomize APIs (v1 in every supported Flux
// generation, see testdata/crds/README.md).
var (
	GitRepositoryGVR = flux.GitRepositoryGVR
	KustomizationGVR = flux.KustomizationGVR
)

// GitOps plays source-controller, kustomize-controller and
// image-automation-controller for one GitRepository, one Kustomization
// and one ImageUpdateAutomation (see the package comment).
type GitOps struct {
	dc   dynamic.Interface
	o    GitOptions
	repo *repo
	ks   *kustomizer

	// One mutex per controller: each real controller reconciles an object
	// at most once at a time, and the three run independently.
	srcMu, ksMu, autoMu sync.Mutex

	mu      sync.Mutex
	refuse  error
	applies int
	handled map[string]string // kind -> last reconcile request handled
	seenGen map[string]int64  // kind -> last generation acted on

	life    sync.Mutex
	stopped bool
	busy    int           // work in progress
	idle    chan struct{} // closed when busy drops to 0; nil while idle
	wg      sync.WaitGroup
	done    chan struct{}
}

// StartGitOps creates the bare repository with the first commit (Files),
// the GitRepository (interval 1m, branch main), the Kustomization
// (interval 10m, prune, Path) and the ImageUpdateAutomation (interval 1m,
// Setters over Path, pushing to main) in o.Namespace; then, as the
// controllers do on creation, stores the source artifact for the first
// commit, applies it, and runs the automation once; and keeps playing the
// three controllers until ctx ends (see Done).
func StartGitOps(ctx context.Context, cfg *rest.Config, o GitOptions) (*GitOps, error) {
	if o.Namespace == "" || o.Dir == "" || o.Path == "" || len(o.Files) == 0 {
		return nil, errors.New("fluxsim: GitOptions needs Namespace, Dir, Path and Files")
	}
	if o.ManifestNamespaces && o.TargetNamespace != "" {
		return nil, errors.New("fluxsim: GitOptions.ManifestNamespaces and TargetNamespace exclude each other")
	}
	if o.TargetNamespace == "" && !o.ManifestNamespaces {
		o.TargetNamespace = o.Namespace
	}
	if o.ImageVersion == (Version{}) {
		o.ImageVersion = V1
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ks, err := newKustomizer(cfg)
	if err != nil {
		return nil, err
	}
	r, err := initRepo(ctx, o.Dir, o.Files)
	if err != nil {
		return nil, err
	}
	g := &GitOps{dc: dc, o: o, repo: r, ks: ks, handled: map[string]string{}, seenGen: map[string]int64{}, done: make(chan struct{})}
	if err := g.createObjects(ctx); err != nil {
		return nil, err
	}
	if _, err := g.fetch(ctx, ""); err != nil {
		return nil, err
	}
	if err := g.reconcileKustomization(ctx, ""); err != nil {
		return nil, err
	}
	if err := g.runAutomation(ctx, ""); err != nil {
		return nil, err
	}
	if err := g.watch(ctx); err != nil {
		return nil, err
	}
	return g, nil
}

// Done is closed once ctx has ended and no work the watches started is
// still running: only then may o.Dir be removed.
func (g *GitOps) Done() <-chan struct{} { return g.done }

// Settle waits until no work the watches started is in progress. A
// reconcile request is answered before the work it started ends:
// source-controller writes lastHandledReconcileAt with the fetch, and
// kustomize-controller applies the new revision after that; a test that
// counts Applies after a run that asked for a fetch settles first, or it
// counts the run's own apply as a later one.
func (g *GitOps) Settle(ctx context.Context) error {
	g.life.Lock()
	idle := g.idle
	g.life.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Fetch plays a GitRepository interval elapsing: source-controller fetches
// the head of main and, when the revision is new, stores an artifact for
// it; kustomize-controller, which watches its source's artifact revision,
// then applies it (before Fetch returns). A suspended GitRepository
// fetches nothing.
func (g *GitOps) Fetch(ctx context.Context) error {
	changed, err := g.fetch(ctx, "")
	if err != nil || !changed {
		return err
	}
	return g.reconcileKustomization(ctx, "")
}

// ReconcileKustomization plays a Kustomization interval elapsing: an
// apply of the current artifact revision, which writes only what drifted.
// A failed build or apply is a *StatusError (and Ready False).
func (g *GitOps) ReconcileKustomization(ctx context.Context) error {
	return g.reconcileKustomization(ctx, "")
}

// RunAutomation plays an ImageUpdateAutomation interval elapsing (or the
// controller's retry after a failure): the policies' images are written to
// the setters, committed and pushed if anything changed. A refused push is
// a *StatusError.
func (g *GitOps) RunAutomation(ctx context.Context) error {
	return g.runAutomation(ctx, "")
}

// Commit plays a person pushing content at path to main; it returns the
// commit hash. Nothing is fetched: source-controller sees the commit at
// its next interval (Fetch) or reconcile request.
func (g *GitOps) Commit(ctx context.Context, path, content, msg string) (string, error) {
	h, _, err := g.repo.commit(ctx, map[string]string{path: content}, msg, person(), nil)
	return h, err
}

// File returns the content of path at the head of main.
func (g *GitOps) File(path string) (string, error) { return g.repo.file(path) }

// Head returns the commit hash at the head of main.
func (g *GitOps) Head() (string, error) { return g.repo.head() }

// RefusePush makes the automation's pushes fail with err, as a protected
// branch refuses them; nil lets them through again. The automation does
// not retry by itself: the next policy change, reconcile request or
// RunAutomation pushes.
func (g *GitOps) RefusePush(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refuse = err
}

// Applies returns how many objects kustomize-controller has written
// (created or configured: its dry-run found drift), the first apply
// StartGitOps makes included.
func (g *GitOps) Applies() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.applies
}

// Revision returns the artifact revision the GitRepository's status
// names, e.g. "main@sha1:<hash>" (what Kustomizations apply).
func (g *GitOps) Revision(ctx context.Context) (string, error) {
	obj, err := g.dc.Resource(GitRepositoryGVR).Namespace(g.o.Namespace).Get(ctx, GitRepositoryName, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	rev, _, _ := unstructured.NestedString(obj.Object, "status", "artifact", "revision")
	return rev, nil
}

// RevisionOf is the artifact revision source-controller writes for a
// commit of main.
func RevisionOf(hash string) string { return Branch + "@sha1:" + hash }

func (g *GitOps) automationGVR() schema.GroupVersionResource {
	return g.o.ImageVersion.GVR("imageupdateautomations")
}

func (g *GitOps) createObjects(ctx context.Context) error {
	ns := g.o.Namespace
	srcRef := map[string]any{"kind": "GitRepository", "name": GitRepositoryName}
	ksSpec := map[string]any{"interval": "10m0s", "path": g.o.Path, "prune": true, "sourceRef": srcRef}
	if g.o.TargetNamespace != "" {
		ksSpec["targetNamespace"] = g.o.TargetNamespace
	}
	objs := []struct {
		gvr schema.GroupVersionResource
		obj map[string]any
	}{
		{GitRepositoryGVR, map[string]any{
			"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
			"metadata": map[string]any{"name": GitRepositoryName, "namespace": ns},
			"spec": map[string]any{
				"interval": "1m0s", "timeout": "60s", "url": g.repo.url,
				"ref": map[string]any{"branch": Branch},
			},
		}},
		{KustomizationGVR, map[string]any{
			"apiVersion": KustomizeGroup + "/v1", "kind": "Kustomization",
			"metadata": map[string]any{"name": KustomizationName, "namespace": ns},
			"spec":     ksSpec,
		}},
		{g.automationGVR(), map[string]any{
			"apiVersion": Group + "/" + g.o.ImageVersion.APIVersion, "kind": "ImageUpdateAutomation",
			"metadata": map[string]any{"name": AutomationName, "namespace": ns},
			"spec": map[string]any{
				"interval":  "1m0s",
				"sourceRef": srcRef,
				"git": map[string]any{
					"checkout": map[string]any{"ref": map[string]any{"branch": Branch}},
					"commit":   map[string]any{"author": map[string]any{"name": AutomationAuthor, "email": AutomationEmail}},
					"push":     map[string]any{"branch": Branch},
				},
				"update": map[string]any{"path": g.o.Path, "strategy": "Setters"},
			},
		}},
	}
	for _, o := range objs {
		u := &unstructured.Unstructured{Object: o.obj}
		if _, err := g.dc.Resource(o.gvr).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create %s %s/%s: %w", u.GetKind(), ns, u.GetName(), err)
		}
	}
	return nil
}

// request reports whether obj carries work for its controller: a reconcile
// request not handled yet, or a generation not acted on yet (a spec
// change such as resume, handled at once as controller-runtime's
// GenerationChangedPredicate lets it through). It returns the request's
// token ("" for a generation change).
func (g *GitOps) request(kind string, obj *unstructured.Unstructured) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	token := obj.GetAnnotations()[flux.ReconcileAnnotation]
	handled, _, _ := unstructured.NestedString(obj.Object, "status", "lastHandledReconcileAt")
	if token != "" && token != handled && token != g.handled[kind] {
		return token, true
	}
	if gen := obj.GetGeneration(); gen > g.seenGen[kind] {
		return "", true
	}
	return "", false
}

// acted records that kind's controller handled token and generation gen.
func (g *GitOps) acted(kind, token string, gen int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if token != "" {
		g.handled[kind] = token
	}
	if gen > g.seenGen[kind] {
		g.seenGen[kind] = gen
	}
}

// watch plays the controllers' watches with informers, which re-list and
// re-watch by themselves when a watch ends.
func (g *GitOps) watch(ctx context.Context) error {
	f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(g.dc, 0, g.o.Namespace, nil)
	own := func(kind, name string, run func(context.Context, string) error) cache.ResourceEventHandler {
		handle := func(obj any) {
			u, ok := obj.(*unstructured.Unstructured)
			if !ok || u.GetName() != name {
				return
			}
			if token, ok := g.request(kind, u); ok {
				g.work(ctx, func() error { return run(ctx, token) })
			}
		}
		return cache.ResourceEventHandlerFuncs{AddFunc: handle, UpdateFunc: func(_, obj any) { handle(obj) }}
	}
	handlers := []struct {
		gvr schema.GroupVersionResource
		h   cache.ResourceEventHandler
	}{
		{GitRepositoryGVR, own("source", GitRepositoryName, g.fetchAndApply)},
		{KustomizationGVR, own("kustomize", KustomizationName, g.reconcileKustomization)},
		{g.automationGVR(), own("automation", AutomationName, g.runAutomation)},
		// image-automation-controller watches the ImagePolicies of its
		// namespace and runs every automation there when a policy's latest
		// image changes (automationsForImagePolicy with
		// latestImageChangePredicate in its controller).
		// The policies that exist when the watch starts were seen by the
		// run StartGitOps made: a second run for each would be noise (and
		// could commit over a test's own commit at an arbitrary moment).
		{g.o.ImageVersion.GVR("imagepolicies"), cache.ResourceEventHandlerDetailedFuncs{
			AddFunc: func(_ any, initial bool) {
				if !initial {
					g.work(ctx, func() error { return g.runAutomation(ctx, "") })
				}
			},
			UpdateFunc: func(oldObj, newObj any) {
				o, ok1 := oldObj.(*unstructured.Unstructured)
				n, ok2 := newObj.(*unstructured.Unstructured)
				if ok1 && ok2 && flux.ParsePolicy(o).Latest != flux.ParsePolicy(n).Latest {
					g.work(ctx, func() error { return g.delayedAutomation(ctx) })
				}
			},
		}},
	}
	for _, h := range handlers {
		if _, err := f.ForResource(h.gvr).Informer().AddEventHandler(h.h); err != nil {
			return err
		}
	}
	f.Start(ctx.Done())
	for gvr, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("fluxsim: watch %s did not sync", gvr.Resource)
		}
	}
	go func() {
		<-ctx.Done()
		g.life.Lock()
		g.stopped = true
		g.life.Unlock()
		f.Shutdown()
		g.wg.Wait()
		close(g.done)
	}()
	return nil
}

// delayedAutomation runs the automation after GitOptions.AutomationDelay,
// the controller's own latency, in the watch's goroutine (as the
// controller's worker is busy meanwhile).
func (g *GitOps) delayedAutomation(ctx context.Context) error {
	if d := g.o.AutomationDelay; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return g.runAutomation(ctx, "")
}

// StatusError is a failure a controller reports in its object's status
// (Ready False with Reason and Err's message), as a failed apply or a
// refused push. Fetch, ReconcileKustomization and RunAutomation return it;
// in work the watches started it is the object's state, not OnError's.
type StatusError struct {
	Object, Reason string
	Err            error
}

func (e *StatusError) Error() string { return e.Object + ": " + e.Reason + ": " + e.Err.Error() }

func (e *StatusError) Unwrap() error { return e.Err }

// work runs fn for a watch event unless ctx has ended, and reports its
// error unless the controller recorded it in status.
func (g *GitOps) work(ctx context.Context, fn func() error) {
	g.life.Lock()
	if g.stopped {
		g.life.Unlock()
		return
	}
	g.wg.Add(1)
	if g.busy == 0 {
		g.idle = make(chan struct{})
	}
	g.busy++
	g.life.Unlock()
	defer func() {
		g.life.Lock()
		if g.busy--; g.busy == 0 {
			close(g.idle)
			g.idle = nil
		}
		g.life.Unlock()
		g.wg.Done()
	}()
	var se *StatusError
	if err := fn(); err != nil && !errors.As(err, &se) && ctx.Err() == nil && g.o.OnError != nil {
		g.o.OnError(err)
	}
}

// fetchAndApply answers a GitRepository reconcile request: a fetch, then
// the Kustomization if the revision changed (as Fetch).
func (g *GitOps) fetchAndApply(ctx context.Context, token string) error {
	changed, err := g.fetch(ctx, token)
	if err != nil || !changed {
		return err
	}
	return g.reconcileKustomization(ctx, "")
}

// condition is a Kubernetes condition as Flux writes it: each carries the
// generation it is about (fluxcd/pkg/runtime/conditions).
func condition(typ string, ok metav1.ConditionStatus, reason, msg string, gen int64) map[string]any {
	return map[string]any{
		"type": typ, "status": string(ok), "reason": reason, "message": msg,
		"observedGeneration": gen, "lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
	}
}

// setConditions returns conds with each of set replacing the condition of
// its type; a condition whose status does not change keeps its
// lastTransitionTime, as metav1 conditions do.
func setConditions(conds []any, set ...map[string]any) []any {
	out := make([]any, 0, len(conds)+len(set))
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		replaced := false
		for _, s := range set {
			if s["type"] == m["type"] {
				if s["status"] == m["status"] && m["lastTransitionTime"] != nil {
					s["lastTransitionTime"] = m["lastTransitionTime"]
				}
				replaced = true
			}
		}
		if !replaced {
			out = append(out, m)
		}
	}
	for _, s := range set {
		out = append(out, s)
	}
	return out
}

// deleteCondition returns conds without the condition of type typ.
func deleteCondition(conds []any, typ string) []any {
	out := conds[:0:0]
	for _, c := range conds {
		if m, ok := c.(map[string]any); !ok || m["type"] != typ {
			out = append(out, c)
		}
	}
	return out
}

// patchStatus merges status into the object's status subresource, as the
// controllers' patch helpers do, under the controller's field manager.
func (g *GitOps) patchStatus(ctx context.Context, gvr schema.GroupVersionResource, name, manager string, status map[string]any) error {
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return err
	}
	_, err = g.dc.Resource(gvr).Namespace(g.o.Namespace).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: manager}, "status")
	if err != nil {
		return fmt.Errorf("write status of %s %s/%s: %w", gvr.Resource, g.o.Namespace, name, err)
	}
	return nil
}

// DeploymentManifest is a Deployment as the seed keeps it in git: the
// service's one container, whose image line carries the setter marker of
// ImagePolicy policyNamespace:name. No namespace: the Kustomization's
// targetNamespace sets it.
func DeploymentManifest(name, image, policyNamespace string, replicas int) string {
	return deploymentManifest("", name, image, policyNamespace+":"+name, replicas)
}

// EnvironmentManifest is a Deployment of a repository with one directory
// per environment (GitOptions.ManifestNamespaces): it names its namespace,
// and its setter marker names ImagePolicy policy ("namespace:name"), which
// for a promoted service is the ImagePolicy autodeploy owns.
func EnvironmentManifest(namespace, name, image, policy string, replicas int) string {
	return deploymentManifest(namespace, name, image, policy, replicas)
}

func deploymentManifest(namespace, name, image, policy string, replicas int) string {
	ns := ""
	if namespace != "" {
		ns = "\n  namespace: " + namespace
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s%[5]s
spec:
  replicas: %[4]d
  selector:
    matchLabels: {app: %[1]s}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      containers:
      - name: %[1]s
        image: %[2]s # {"$imagepolicy": "%[3]s"}
`, name, image, policy, replicas, ns)
}
