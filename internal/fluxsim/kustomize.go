package fluxsim

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/ssa"
	"github.com/fluxcd/pkg/ssa/normalize"
	ssautil "github.com/fluxcd/pkg/ssa/utils"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// kustomizer applies manifests as kustomize-controller does: with
// fluxcd/pkg/ssa, the library it is built on.
type kustomizer struct {
	c   client.Client
	mgr *ssa.ResourceManager
}

func newKustomizer(cfg *rest.Config) (*kustomizer, error) {
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, err
	}
	// The poller serves ApplyAllStaged's wait for Namespaces and CRDs
	// before the objects that need them.
	poller := polling.NewStatusPoller(c, c.RESTMapper(), polling.Options{})
	return &kustomizer{c: c, mgr: ssa.NewResourceManager(c, poller, ssa.Owner{Field: KustomizeManager, Group: KustomizeGroup})}, nil
}

// applyOptions are kustomize-controller's for a Kustomization without
// spec.force (KustomizationReconciler.apply in
// internal/controller/kustomization_controller.go): objects annotated or
// labelled kustomize.toolkit.fluxcd.io/reconcile: disabled (or ssa:
// Ignore) in git or in the cluster are skipped; ssa: IfNotPresent ones are
// only created; and metadata left by kubectl or by the controller's
// pre-SSA versions is removed first.
func applyOptions() ssa.ApplyOptions {
	o := ssa.DefaultApplyOptions()
	o.ExclusionSelector = map[string]string{
		ReconcileAnnotationKey:  "disabled",
		KustomizeGroup + "/ssa": "Ignore",
	}
	o.IfNotPresentSelector = map[string]string{KustomizeGroup + "/ssa": "IfNotPresent"}
	o.ForceSelector = map[string]string{KustomizeGroup + "/force": "enabled"}
	o.Cleanup = ssa.ApplyCleanupOptions{
		Annotations: []string{corev1.LastAppliedConfigAnnotation, KustomizeGroup + "/checksum", "fluxcd.io/sync-checksum"},
		Labels:      []string{"fluxcd.io/sync-gc-mark"},
		FieldManagers: []ssa.FieldManager{
			{Name: "kubectl", OperationType: metav1.ManagedFieldsOperationApply},
			{Name: "kubectl", OperationType: metav1.ManagedFieldsOperationUpdate},
			{Name: "before-first-apply", OperationType: metav1.ManagedFieldsOperationUpdate},
			{Name: KustomizeManager, OperationType: metav1.ManagedFieldsOperationUpdate},
		},
		Exclusions: map[string]string{KustomizeGroup + "/ssa": "Merge"},
	}
	return o
}

// reconcileKustomization plays one kustomize-controller reconcile of the
// Kustomization at its source's current artifact revision. token is the
// reconcile request answered ("" for none).
func (g *GitOps) reconcileKustomization(ctx context.Context, token string) error {
	g.ksMu.Lock()
	defer g.ksMu.Unlock()
	ks, err := g.dc.Resource(KustomizationGVR).Namespace(g.o.Namespace).Get(ctx, KustomizationName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read Kustomization: %w", err)
	}
	gen := ks.GetGeneration()
	g.acted("kustomize", token, gen)
	conds, _, _ := unstructured.NestedSlice(ks.Object, "status", "conditions")
	ready := conditionStatus(conds, "Ready")
	if suspended(ks) {
		// Nothing is applied, but the deferred finalizeStatus still runs
		// (Reconcile in kustomization_controller.go): it records the
		// request, and the generation if Ready is True.
		status := map[string]any{}
		if handled, _, _ := unstructured.NestedString(ks.Object, "status", "lastHandledReconcileAt"); token != "" && token != handled {
			status["lastHandledReconcileAt"] = token
		}
		if og, _, _ := unstructured.NestedInt64(ks.Object, "status", "observedGeneration"); ready == "True" && og != gen {
			status["observedGeneration"] = gen
		}
		if len(status) == 0 {
			return nil
		}
		return g.patchStatus(ctx, KustomizationGVR, KustomizationName, KustomizeManager, status)
	}
	rev, err := g.Revision(ctx)
	if err != nil {
		return fmt.Errorf("read GitRepository: %w", err)
	}
	final := map[string]any{}
	if token != "" {
		final["lastHandledReconcileAt"] = token
	}
	fail := func(reason string, err error) error {
		final["conditions"] = setConditions(conds,
			condition("Ready", metav1.ConditionFalse, reason, err.Error(), gen),
			condition("Reconciling", metav1.ConditionTrue, "ProgressingWithRetry", "Reconciliation in progress", gen))
		if werr := g.patchStatus(ctx, KustomizationGVR, KustomizationName, KustomizeManager, final); werr != nil {
			return werr
		}
		return &StatusError{Object: "Kustomization " + g.o.Namespace + "/" + KustomizationName, Reason: reason, Err: err}
	}
	if rev == "" {
		return fail("ArtifactFailed", errors.New("Source artifact not found, retrying in 30s"))
	}
	// The controller reports progress before it builds and applies (three
	// patches in reconcile(); one here, with the last message), so a
	// reader sees lastAttemptedRevision move before lastAppliedRevision.
	timeout := "10m0s"
	conds = setConditions(conds,
		condition("Ready", metav1.ConditionUnknown, "Progressing", "Reconciliation in progress", gen),
		condition("Reconciling", metav1.ConditionTrue, "Progressing", fmt.Sprintf("Detecting drift for revision %s with a timeout of %s", rev, timeout), gen))
	if err := g.patchStatus(ctx, KustomizationGVR, KustomizationName, KustomizeManager, map[string]any{"lastAttemptedRevision": rev, "conditions": conds}); err != nil {
		return err
	}
	objects, err := g.build(rev)
	if err != nil {
		return fail("BuildFailed", err)
	}
	for _, o := range objects {
		namespaced, err := g.ks.c.IsObjectNamespaced(o)
		if err != nil {
			return fail("ReconciliationFailed", err)
		}
		switch {
		case !namespaced:
		case g.o.TargetNamespace != "":
			o.SetNamespace(g.o.TargetNamespace) // spec.targetNamespace
		case o.GetNamespace() == "":
			return fail("ReconciliationFailed", fmt.Errorf("%s/%s names no namespace and the Kustomization has no targetNamespace (fluxsim does not model that case)", o.GetKind(), o.GetName()))
		}
	}
	g.ks.mgr.SetOwnerLabels(objects, KustomizationName, g.o.Namespace)
	if err := normalize.UnstructuredList(objects); err != nil {
		return fail("ReconciliationFailed", err)
	}
	cs, err := g.ks.mgr.ApplyAllStaged(ctx, objects, applyOptions())
	if cs != nil {
		n := 0
		for _, e := range cs.Entries {
			if e.Action == ssa.CreatedAction || e.Action == ssa.ConfiguredAction {
				n++
			}
		}
		g.mu.Lock()
		g.applies += n
		g.mu.Unlock()
	}
	if err != nil {
		return fail("ReconciliationFailed", err)
	}
	inv := make([]any, 0, len(cs.Entries))
	applied := map[string]bool{}
	for _, e := range cs.Entries {
		inv = append(inv, map[string]any{"id": e.ObjMetadata.String(), "v": e.GroupVersion})
		applied[e.ObjMetadata.String()] = true
	}
	if err := g.prune(ctx, ks, applied); err != nil {
		return fail("PruneFailed", err)
	}
	final["lastAppliedRevision"] = rev
	final["inventory"] = map[string]any{"entries": inv}
	final["observedGeneration"] = gen
	final["conditions"] = deleteCondition(setConditions(conds,
		condition("Ready", metav1.ConditionTrue, "ReconciliationSucceeded", "Applied revision: "+rev, gen)), "Reconciling")
	return g.patchStatus(ctx, KustomizationGVR, KustomizationName, KustomizeManager, final)
}

// build plays kustomize build of spec.path without a kustomization.yaml:
// kustomize-controller then generates one listing every manifest under
// the path, recursively; documents that are not Kubernetes objects are
// left out (ssa/utils.ReadObjects).
func (g *GitOps) build(rev string) ([]*unstructured.Unstructured, error) {
	hash, err := artifactHash(rev)
	if err != nil {
		return nil, err
	}
	files, err := g.repo.tree(hash)
	if err != nil {
		return nil, err
	}
	dir := cleanRepoPath(g.o.Path)
	var objects []*unstructured.Unstructured
	found := false
	for _, p := range slices.Sorted(maps.Keys(files)) {
		if !under(dir, p) {
			continue
		}
		found = true
		switch path.Ext(p) {
		case ".yaml", ".yml":
		default:
			continue
		}
		if b := path.Base(p); b == "kustomization.yaml" || b == "kustomization.yml" {
			return nil, fmt.Errorf("fluxsim does not play kustomize overlays (%s): list plain manifests", p)
		}
		objs, err := ssautil.ReadObjects(strings.NewReader(files[p]))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		objects = append(objects, objs...)
	}
	if !found {
		return nil, fmt.Errorf("kustomization path not found: %s", g.o.Path)
	}
	return objects, nil
}

// prune deletes what the last inventory holds and this apply did not, as
// kustomize-controller does with spec.prune (deleteObjects): only objects
// still labelled as this Kustomization's, and never ones annotated
// kustomize.toolkit.fluxcd.io/prune: disabled.
func (g *GitOps) prune(ctx context.Context, ks *unstructured.Unstructured, applied map[string]bool) error {
	if p, _, _ := unstructured.NestedBool(ks.Object, "spec", "prune"); !p {
		return nil
	}
	old, _, _ := unstructured.NestedSlice(ks.Object, "status", "inventory", "entries")
	var stale []*unstructured.Unstructured
	for _, e := range old {
		m, _ := e.(map[string]any)
		id, _ := m["id"].(string)
		v, _ := m["v"].(string)
		if applied[id] {
			continue
		}
		meta, err := object.ParseObjMetadata(id)
		if err != nil {
			return err
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(meta.GroupKind.WithVersion(v))
		u.SetName(meta.Name)
		u.SetNamespace(meta.Namespace)
		stale = append(stale, u)
	}
	if len(stale) == 0 {
		return nil
	}
	_, err := g.ks.mgr.DeleteAll(ctx, stale, ssa.DeleteOptions{
		PropagationPolicy: metav1.DeletePropagationBackground,
		Inclusions:        g.ks.mgr.GetOwnerLabels(KustomizationName, g.o.Namespace),
		Exclusions: map[string]string{
			KustomizeGroup + "/prune": "disabled",
			ReconcileAnnotationKey:    "disabled",
			KustomizeGroup + "/ssa":   "Ignore",
		},
	})
	return err
}

// conditionStatus returns the status of the condition of type typ, "" if
// there is none.
func conditionStatus(conds []any, typ string) string {
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == typ {
			s, _ := m["status"].(string)
			return s
		}
	}
	return ""
}
