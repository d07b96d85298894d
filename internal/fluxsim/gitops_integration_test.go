//go:build integration

package fluxsim_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

const (
	imageA = "ghcr.io/team-mercurious/api:sha-aaaaaaa"
	imageB = "ghcr.io/team-mercurious/api:sha-bbbbbbb"
	imageC = "ghcr.io/team-mercurious/api:sha-ccccccc"
)

// deployment is apps/api/deployment.yaml as the seed writes it: the image
// line carries the policy's setter marker. replicas: 0 keeps pods out of
// it: what is tested here is who writes the Deployment.
func deployment(ns, image string) string { return deploymentOf("api", ns, image) }

func deploymentOf(name, ns, image string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  replicas: 0
  selector:
    matchLabels:
      app: %[1]s
  template:
    metadata:
      labels:
        app: %[1]s
    spec:
      containers:
        - name: %[1]s
          image: %[3]s # {"$imagepolicy": "%[2]s:%[1]s"}
`, name, ns, image)
}

const manifest = "apps/api/deployment.yaml"

// gitops starts the stand-ins over a repository whose manifest has image,
// with an ImagePolicy "api" that has selected image too.
func gitops(t *testing.T, image string) (*kubetest.Env, *fluxsim.GitOps) {
	t.Helper()
	e := kubetest.New(t)
	e.CreateImageRepository(fluxsim.V1, e.Namespace, "api", "ghcr.io/team-mercurious/api")
	e.CreateImagePolicy(fluxsim.V1, e.Namespace, "api", "api")
	e.SetPolicyImage(fluxsim.V1, e.Namespace, "api", image)
	g := e.StartGitOps(fluxsim.GitOptions{
		Files:        map[string]string{manifest: deployment(e.Namespace, image)},
		Path:         "./apps",
		ImageVersion: fluxsim.V1,
	})
	return e, g
}

func get(t *testing.T, e *kubetest.Env, gvr schema.GroupVersionResource, name string) *unstructured.Unstructured {
	t.Helper()
	u, err := e.Dynamic.Resource(gvr).Namespace(e.Namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func str(u *unstructured.Unstructured, path ...string) string {
	s, _, _ := unstructured.NestedString(u.Object, path...)
	return s
}

var automationGVR = fluxsim.V1.GVR("imageupdateautomations")

// imageOwners lists the managers (name/operation) that own the image of
// container name in d's managedFields.
// objectWrites fingerprints the writes to d itself (spec and metadata):
// its generation and the managedFields entries outside the status
// subresource. Not the resourceVersion: the Deployment controller's status
// updates move it at any time.
func objectWrites(d *appsv1.Deployment) string {
	out := fmt.Sprint("generation ", d.Generation)
	for _, mf := range d.ManagedFields {
		if mf.Subresource == "" {
			out += fmt.Sprintf("; %s/%s at %s", mf.Manager, mf.Operation, mf.Time)
		}
	}
	return out
}

func imageOwners(t *testing.T, d *appsv1.Deployment, name string) []string {
	t.Helper()
	var owners []string
	for _, mf := range d.ManagedFields {
		var f map[string]any
		if err := json.Unmarshal(mf.FieldsV1.Raw, &f); err != nil {
			t.Fatal(err)
		}
		var node any = f
		for _, k := range []string{"f:spec", "f:template", "f:spec", "f:containers", fmt.Sprintf(`k:{"name":%q}`, name), "f:image"} {
			m, _ := node.(map[string]any)
			node = m[k]
		}
		if node != nil {
			owners = append(owners, mf.Manager+"/"+string(mf.Operation))
		}
	}
	slices.Sort(owners)
	return owners
}

// setImage is what autodeploy (or kubectl set image) does: a JSON patch
// of the container's image, with an annotation, under its own field
// manager.
func setImage(t *testing.T, e *kubetest.Env, image string) {
	t.Helper()
	// Two patches: a JSON patch adding to /metadata/annotations fails
	// while the Deployment has none yet (the controller's revision
	// annotation comes a moment after the create).
	patch := fmt.Sprintf(`[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":%q}]`, image)
	_, err := e.Kube.AppsV1().Deployments(e.Namespace).Patch(context.Background(), "api", types.JSONPatchType, []byte(patch), metav1.PatchOptions{FieldManager: "autodeploy"})
	if err != nil {
		t.Fatal(err)
	}
	ann := fmt.Sprintf(`{"metadata":{"annotations":{"autodeploy.dev/image":%q}}}`, image)
	if _, err := e.Kube.AppsV1().Deployments(e.Namespace).Patch(context.Background(), "api", types.MergePatchType, []byte(ann), metav1.PatchOptions{FieldManager: "autodeploy"}); err != nil {
		t.Fatal(err)
	}
}

func wantEqual[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// waitFile waits until the head of main has want at path.
func waitFile(t *testing.T, g *fluxsim.GitOps, path, want string) {
	t.Helper()
	kubetest.Eventually(t, 10*time.Second, "git "+path+" to have "+want, func(context.Context) (bool, error) {
		c, err := g.File(path)
		return strings.Contains(c, want), err
	})
}

func TestGitOpsFirstApply(t *testing.T) {
	e, g := gitops(t, imageA)
	ctx := context.Background()
	head, err := g.Head()
	if err != nil {
		t.Fatal(err)
	}
	rev := fluxsim.RevisionOf(head)

	repo := get(t, e, fluxsim.GitRepositoryGVR, fluxsim.GitRepositoryName)
	wantEqual(t, "GitRepository artifact revision", str(repo, "status", "artifact", "revision"), rev)
	if ok, msg := flux.Ready(repo); !ok {
		t.Errorf("GitRepository not Ready: %s", msg)
	}
	ks := get(t, e, fluxsim.KustomizationGVR, fluxsim.KustomizationName)
	wantEqual(t, "lastAppliedRevision", str(ks, "status", "lastAppliedRevision"), rev)
	wantEqual(t, "lastAttemptedRevision", str(ks, "status", "lastAttemptedRevision"), rev)
	if ok, msg := flux.Ready(ks); !ok || msg != "Applied revision: "+rev {
		t.Errorf("Kustomization Ready = %v %q, want true \"Applied revision: %s\"", ok, msg, rev)
	}
	inv, _, _ := unstructured.NestedSlice(ks.Object, "status", "inventory", "entries")
	wantInv := map[string]any{"id": e.Namespace + "_api_apps_Deployment", "v": "v1"}
	if len(inv) != 1 || fmt.Sprint(inv[0]) != fmt.Sprint(wantInv) {
		t.Errorf("inventory = %v, want [%v]", inv, wantInv)
	}

	d := e.GetDeployment("api")
	wantEqual(t, "image", kubetest.Image(d), imageA)
	wantEqual(t, "label "+fluxsim.NameLabel, d.Labels[fluxsim.NameLabel], fluxsim.KustomizationName)
	wantEqual(t, "label "+fluxsim.NamespaceLabel, d.Labels[fluxsim.NamespaceLabel], e.Namespace)
	wantEqual(t, "image owners", fmt.Sprint(imageOwners(t, d, "api")), "[kustomize-controller/Apply]")
	wantEqual(t, "Applies()", g.Applies(), 1)

	// Git matches the policy: the automation's first run commits nothing.
	auto := get(t, e, automationGVR, fluxsim.AutomationName)
	wantEqual(t, "lastPushCommit", str(auto, "status", "lastPushCommit"), "")
	if ok, msg := flux.Ready(auto); !ok {
		t.Errorf("automation not Ready: %s", msg)
	}
	// A Kustomization interval with nothing changed writes nothing.
	if err := g.ReconcileKustomization(ctx); err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "Applies() after an idle interval", g.Applies(), 1)
	wantEqual(t, "writes after an idle interval", objectWrites(e.GetDeployment("api")), objectWrites(d))
}

func TestGitOpsPolicyChangeCommitsFetchApplies(t *testing.T) {
	e, g := gitops(t, imageA)
	ctx := context.Background()
	before, _ := g.Head()
	oldRev, _ := g.Revision(ctx)

	e.SetPolicyImage(fluxsim.V1, e.Namespace, "api", imageB)
	waitFile(t, g, manifest, imageB+` # {"$imagepolicy": "`+e.Namespace+`:api"}`)
	head, _ := g.Head()
	if head == before {
		t.Fatal("no new commit")
	}
	kubetest.Eventually(t, 5*time.Second, "lastPushCommit", func(context.Context) (bool, error) {
		return str(get(t, e, automationGVR, fluxsim.AutomationName), "status", "lastPushCommit") == head, nil
	})
	auto := get(t, e, automationGVR, fluxsim.AutomationName)
	if str(auto, "status", "lastPushTime") == "" || str(auto, "status", "lastAutomationRunTime") == "" {
		t.Errorf("lastPushTime/lastAutomationRunTime not set: %v", auto.Object["status"])
	}
	wantEqual(t, "observedSourceRevision", str(auto, "status", "observedSourceRevision"), fluxsim.RevisionOf(head))
	wantEqual(t, "observed policy tag", str(auto, "status", "observedPolicies", "api", "tag"), "sha-bbbbbbb")

	// source-controller has not seen the push: nothing moved in the cluster.
	rev, _ := g.Revision(ctx)
	wantEqual(t, "artifact revision before Fetch", rev, oldRev)
	wantEqual(t, "image before Fetch", kubetest.Image(e.GetDeployment("api")), imageA)

	if err := g.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	rev, _ = g.Revision(ctx)
	wantEqual(t, "artifact revision after Fetch", rev, fluxsim.RevisionOf(head))
	ks := get(t, e, fluxsim.KustomizationGVR, fluxsim.KustomizationName)
	wantEqual(t, "lastAppliedRevision", str(ks, "status", "lastAppliedRevision"), rev)
	wantEqual(t, "image after Fetch", kubetest.Image(e.GetDeployment("api")), imageB)
	wantEqual(t, "Applies()", g.Applies(), 2)
}

// Issue 12, case 1: autodeploy deployed the policy's image first; once git
// has it too, kustomize-controller's dry-run finds no drift and writes
// nothing: no extra rollout, autodeploy's annotation and ownership kept.
func TestGitOpsNoDriftWritesNothing(t *testing.T) {
	e, g := gitops(t, imageA)
	ctx := context.Background()
	setImage(t, e, imageB)
	e.SetPolicyImage(fluxsim.V1, e.Namespace, "api", imageB)
	waitFile(t, g, manifest, imageB)
	before := e.GetDeployment("api")
	wantEqual(t, "image owners after autodeploy", fmt.Sprint(imageOwners(t, before, "api")), "[autodeploy/Update]")

	if err := g.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	head, _ := g.Head()
	ks := get(t, e, fluxsim.KustomizationGVR, fluxsim.KustomizationName)
	wantEqual(t, "lastAppliedRevision", str(ks, "status", "lastAppliedRevision"), fluxsim.RevisionOf(head))
	after := e.GetDeployment("api")
	wantEqual(t, "Applies()", g.Applies(), 1)
	wantEqual(t, "writes", objectWrites(after), objectWrites(before))
	wantEqual(t, "annotation", after.Annotations["autodeploy.dev/image"], imageB)
	wantEqual(t, "image owners", fmt.Sprint(imageOwners(t, after, "api")), "[autodeploy/Update]")
}

// Issue 12, case 2: git behind the cluster; the forced apply puts git's
// image back and kustomize-controller owns the field again.
func TestGitOpsDriftPutsGitImageBack(t *testing.T) {
	e, g := gitops(t, imageA)
	setImage(t, e, imageC)
	if err := g.ReconcileKustomization(context.Background()); err != nil {
		t.Fatal(err)
	}
	d := e.GetDeployment("api")
	wantEqual(t, "image", kubetest.Image(d), imageA)
	wantEqual(t, "image owners", fmt.Sprint(imageOwners(t, d, "api")), "[kustomize-controller/Apply]")
	wantEqual(t, "Applies()", g.Applies(), 2)
	// Fields kustomize-controller never applied stay.
	wantEqual(t, "annotation", d.Annotations["autodeploy.dev/image"], imageC)
}

// Issue 12, case 5: the live annotation makes kustomize-controller skip
// that object, and only that one.
func TestGitOpsReconcileDisabledSkipsObject(t *testing.T) {
	e, g := gitops(t, imageA)
	ctx := context.Background()
	patch := `{"metadata":{"annotations":{"kustomize.toolkit.fluxcd.io/reconcile":"disabled"}}}`
	if _, err := e.Kube.AppsV1().Deployments(e.Namespace).Patch(ctx, "api", types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "autodeploy"}); err != nil {
		t.Fatal(err)
	}
	setImage(t, e, imageC)
	if _, err := g.Commit(ctx, "apps/web/deployment.yaml", deploymentOf("web", e.Namespace, imageA), "Add web"); err != nil {
		t.Fatal(err)
	}
	if err := g.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "skipped image", kubetest.Image(e.GetDeployment("api")), imageC)
	wantEqual(t, "other object applied", kubetest.Image(e.GetDeployment("web")), imageA)
	wantEqual(t, "Applies()", g.Applies(), 2)
	ks := get(t, e, fluxsim.KustomizationGVR, fluxsim.KustomizationName)
	if ok, msg := flux.Ready(ks); !ok {
		t.Errorf("Kustomization not Ready: %s", msg)
	}
	inv, _, _ := unstructured.NestedSlice(ks.Object, "status", "inventory", "entries")
	wantEqual(t, "inventory entries (the skipped one kept)", len(inv), 2)
}

func TestGitOpsSuspend(t *testing.T) {
	e, g := gitops(t, imageA)
	ctx := context.Background()
	suspend := func(gvr schema.GroupVersionResource, name string, on bool) {
		t.Helper()
		patch := fmt.Sprintf(`{"spec":{"suspend":%t}}`, on)
		if _, err := e.Dynamic.Resource(gvr).Namespace(e.Namespace).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// A suspended automation writes nothing, to git or to its status.
	suspend(automationGVR, fluxsim.AutomationName, true)
	before, _ := g.Head()
	runTime := str(get(t, e, automationGVR, fluxsim.AutomationName), "status", "lastAutomationRunTime")
	e.SetPolicyImage(fluxsim.V1, e.Namespace, "api", imageB)
	if err := g.RunAutomation(ctx); err != nil {
		t.Fatal(err)
	}
	head, _ := g.Head()
	wantEqual(t, "head while the automation is suspended", head, before)
	wantEqual(t, "lastAutomationRunTime while suspended", str(get(t, e, automationGVR, fluxsim.AutomationName), "status", "lastAutomationRunTime"), runTime)
	// Resuming is a new generation: the automation runs at once.
	suspend(automationGVR, fluxsim.AutomationName, false)
	waitFile(t, g, manifest, imageB)

	// A suspended Kustomization applies nothing, even a new revision.
	suspend(fluxsim.KustomizationGVR, fluxsim.KustomizationName, true)
	if err := g.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.ReconcileKustomization(ctx); err != nil {
		t.Fatal(err)
	}
	head, _ = g.Head()
	ks := get(t, e, fluxsim.KustomizationGVR, fluxsim.KustomizationName)
	if str(ks, "status", "lastAppliedRevision") == fluxsim.RevisionOf(head) {
		t.Error("a suspended Kustomization applied the new revision")
	}
	wantEqual(t, "image while suspended", kubetest.Image(e.GetDeployment("api")), imageA)
	suspend(fluxsim.KustomizationGVR, fluxsim.KustomizationName, false)
	kubetest.Eventually(t, 10*time.Second, "the resumed Kustomization to apply", func(context.Context) (bool, error) {
		ks := get(t, e, fluxsim.KustomizationGVR, fluxsim.KustomizationName)
		return str(ks, "status", "lastAppliedRevision") == fluxsim.RevisionOf(head), nil
	})
	wantEqual(t, "image after resume", kubetest.Image(e.GetDeployment("api")), imageB)
}

func TestGitOpsRefusedPush(t *testing.T) {
	e, g := gitops(t, imageA)
	ctx := context.Background()
	before, _ := g.Head()
	g.RefusePush(errors.New("protected branch hook declined"))
	e.SetPolicyImage(fluxsim.V1, e.Namespace, "api", imageB)
	kubetest.Eventually(t, 10*time.Second, "the automation to fail", func(context.Context) (bool, error) {
		ok, msg := flux.Ready(get(t, e, automationGVR, fluxsim.AutomationName))
		return !ok && msg != "no Ready condition yet", nil
	})
	auto := get(t, e, automationGVR, fluxsim.AutomationName)
	_, msg := flux.Ready(auto)
	wantEqual(t, "Ready message", msg, "failed to update source: protected branch hook declined")
	wantEqual(t, "lastPushCommit", str(auto, "status", "lastPushCommit"), "")
	head, _ := g.Head()
	wantEqual(t, "head", head, before)

	var se *fluxsim.StatusError
	if err := g.RunAutomation(ctx); !errors.As(err, &se) || se.Reason != "GitOperationFailed" {
		t.Errorf("RunAutomation with the push refused = %v, want a GitOperationFailed StatusError", err)
	}
	g.RefusePush(nil)
	if err := g.RunAutomation(ctx); err != nil {
		t.Fatal(err)
	}
	head, _ = g.Head()
	auto = get(t, e, automationGVR, fluxsim.AutomationName)
	wantEqual(t, "lastPushCommit after the retry", str(auto, "status", "lastPushCommit"), head)
	if ok, msg := flux.Ready(auto); !ok {
		t.Errorf("automation not Ready after the retry: %s", msg)
	}
}

// Reconcile requests (`flux reconcile source git`, `flux reconcile
// kustomization`, `flux reconcile image update`) are answered with
// status.lastHandledReconcileAt; a person's commit reaches the cluster
// through the GitRepository's; a manifest emptied in git is pruned.
func TestGitOpsReconcileRequests(t *testing.T) {
	e, g := gitops(t, imageA)
	ctx := context.Background()
	request := func(gvr schema.GroupVersionResource, name, token string) {
		t.Helper()
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, flux.ReconcileAnnotation, token)
		if _, err := e.Dynamic.Resource(gvr).Namespace(e.Namespace).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		kubetest.Eventually(t, 10*time.Second, gvr.Resource+" to handle "+token, func(context.Context) (bool, error) {
			return str(get(t, e, gvr, name), "status", "lastHandledReconcileAt") == token, nil
		})
	}
	hash, err := g.Commit(ctx, manifest, deployment(e.Namespace, imageC), "Pin api to C")
	if err != nil {
		t.Fatal(err)
	}
	request(fluxsim.GitRepositoryGVR, fluxsim.GitRepositoryName, "t1")
	kubetest.Eventually(t, 10*time.Second, "the Kustomization to apply the commit", func(context.Context) (bool, error) {
		return str(get(t, e, fluxsim.KustomizationGVR, fluxsim.KustomizationName), "status", "lastAppliedRevision") == fluxsim.RevisionOf(hash), nil
	})
	wantEqual(t, "image", kubetest.Image(e.GetDeployment("api")), imageC)
	request(fluxsim.KustomizationGVR, fluxsim.KustomizationName, "t2")
	// The policy still selects A: the automation's run writes it back.
	request(automationGVR, fluxsim.AutomationName, "t3")
	waitFile(t, g, manifest, imageA)

	if _, err := g.Commit(ctx, manifest, "", "Remove api"); err != nil {
		t.Fatal(err)
	}
	if err := g.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = e.Kube.AppsV1().Deployments(e.Namespace).Get(ctx, "api", metav1.GetOptions{})
	if err == nil {
		// Background propagation: the object may linger with a deletionTimestamp.
		d := e.GetDeployment("api")
		if d.DeletionTimestamp == nil {
			t.Error("the Deployment removed from git was not pruned")
		}
	}
}

// A manifest the API server rejects: Ready False with the error,
// lastAttemptedRevision moves, lastAppliedRevision stays.
func TestGitOpsFailedApply(t *testing.T) {
	e, g := gitops(t, imageA)
	ctx := context.Background()
	applied := str(get(t, e, fluxsim.KustomizationGVR, fluxsim.KustomizationName), "status", "lastAppliedRevision")
	bad := strings.Replace(deployment(e.Namespace, imageB), "replicas: 0", "replicas: -1", 1)
	hash, err := g.Commit(ctx, manifest, bad, "Break api")
	if err != nil {
		t.Fatal(err)
	}
	var se *fluxsim.StatusError
	if err := g.Fetch(ctx); !errors.As(err, &se) || se.Reason != "ReconciliationFailed" {
		t.Fatalf("Fetch = %v, want a ReconciliationFailed StatusError", err)
	}
	ks := get(t, e, fluxsim.KustomizationGVR, fluxsim.KustomizationName)
	wantEqual(t, "lastAttemptedRevision", str(ks, "status", "lastAttemptedRevision"), fluxsim.RevisionOf(hash))
	wantEqual(t, "lastAppliedRevision", str(ks, "status", "lastAppliedRevision"), applied)
	if ok, msg := flux.Ready(ks); ok || !strings.Contains(msg, "replicas") {
		t.Errorf("Ready = %v %q, want false with the API server's message", ok, msg)
	}
	wantEqual(t, "image", kubetest.Image(e.GetDeployment("api")), imageA)
}

// Flux 2.6 serves ImagePolicy and ImageUpdateAutomation at v1beta2: the
// automation reads the policy and writes its status at that version.
func TestGitOpsFlux26(t *testing.T) {
	e := kubetest.DedicatedControlPlane(t, "2.6")
	v := fluxsim.Flux26
	e.CreateImageRepository(v, e.Namespace, "api", "ghcr.io/team-mercurious/api")
	e.CreateImagePolicy(v, e.Namespace, "api", "api")
	e.SetPolicyImage(v, e.Namespace, "api", imageA)
	g := e.StartGitOps(fluxsim.GitOptions{
		Files:        map[string]string{manifest: deployment(e.Namespace, imageA)},
		Path:         "./apps",
		ImageVersion: v,
	})
	e.SetPolicyImage(v, e.Namespace, "api", imageB)
	waitFile(t, g, manifest, imageB)
	head, _ := g.Head()
	kubetest.Eventually(t, 5*time.Second, "lastPushCommit", func(context.Context) (bool, error) {
		return str(get(t, e, v.GVR("imageupdateautomations"), fluxsim.AutomationName), "status", "lastPushCommit") == head, nil
	})
	if err := g.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "image", kubetest.Image(e.GetDeployment("api")), imageB)
}

// spec.policySelector: the automation writes only the policies whose
// labels it matches (getPolicies lists through it), and a selector that
// does not parse fails the reconcile with Ready False and no commit.
func TestGitOpsPolicySelector(t *testing.T) {
	e, g := gitops(t, imageA)
	ctx := context.Background()
	selector := func(sel string) {
		t.Helper()
		patch := []byte(`[{"op":"add","path":"/spec/policySelector","value":` + sel + `}]`) // replaces: a merge patch would merge
		if _, err := e.Dynamic.Resource(automationGVR).Namespace(e.Namespace).Patch(ctx, fluxsim.AutomationName, types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	selector(`{"matchLabels":{"env":"production"}}`)
	before, _ := g.Head()
	e.SetPolicyImage(fluxsim.V1, e.Namespace, "api", imageB)
	if err := g.RunAutomation(ctx); err != nil {
		t.Fatal(err)
	}
	head, _ := g.Head()
	wantEqual(t, "head when the selector leaves the policy out", head, before)
	if obs := get(t, e, automationGVR, fluxsim.AutomationName).Object["status"].(map[string]any)["observedPolicies"]; len(obs.(map[string]any)) != 0 {
		t.Errorf("observedPolicies %v, want none", obs)
	}

	selector(`{"matchExpressions":[{"key":"env","operator":"Sideways"}]}`)
	var se *fluxsim.StatusError
	if err := g.RunAutomation(ctx); !errors.As(err, &se) {
		t.Fatalf("RunAutomation with an invalid selector: %v", err)
	}
	if st, _ := json.Marshal(get(t, e, automationGVR, fluxsim.AutomationName).Object["status"]); !strings.Contains(string(st), `"message":"failed to get policies: \"Sideways\" is not a valid label selector operator"`) || !strings.Contains(string(st), `"reason":"InvalidPolicySelector","status":"False","type":"Ready"`) {
		t.Errorf("automation with an invalid selector: status %s", st)
	}

	// Labelled as the selector asks, the policy is written.
	selector(`{"matchLabels":{"env":"production"}}`)
	patch := []byte(`{"metadata":{"labels":{"env":"production"}}}`)
	if _, err := e.Dynamic.Resource(fluxsim.V1.GVR("imagepolicies")).Namespace(e.Namespace).Patch(ctx, "api", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := g.RunAutomation(ctx); err != nil {
		t.Fatal(err)
	}
	waitFile(t, g, manifest, imageB)
}
