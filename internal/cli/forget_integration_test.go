//go:build integration

package cli

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/autodeploy-dev/autodeploy/internal/flux"
	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/gitops"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
	"github.com/autodeploy-dev/autodeploy/internal/lock"
)

// `autodeploy forget <service>` removes every record autodeploy keeps for a
// service name (issue 17): the marks on its Deployment and on every
// ReplicaSet a kubectl rollout undo would revive them from, autodeploy's
// reconcile lever with its record, and the exclusions recorded under that
// name in the ImageRepositories of the configured policies; nothing of
// anyone else's.
func TestForget(t *testing.T) {
	ctx := context.Background()
	repoOf := func(e *kubetest.Env, name string) *unstructured.Unstructured {
		u, err := e.Dynamic.Resource(fluxsim.V1.GVR("imagerepositories")).Namespace(e.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	exclusionList := func(e *kubetest.Env, name string) []string {
		l, _, _ := unstructured.NestedStringSlice(repoOf(e, name).Object, "spec", "exclusionList")
		return l
	}
	exclude := func(t *testing.T, e *kubetest.Env, repo string, ex ...gitops.Exclusion) {
		t.Helper()
		for _, x := range ex {
			if _, err := gitops.Exclude(ctx, e.Dynamic, flux.API{Version: "v1"}, flux.Ref{Namespace: e.Namespace, Name: repo}, x); err != nil {
				t.Fatal(err)
			}
		}
	}
	// records names every annotation of autodeploy's (and the reconcile
	// lever) left on api's Deployment and ReplicaSets.
	records := func(t *testing.T, e *kubetest.Env) []string {
		t.Helper()
		var left []string
		add := func(obj string, ann map[string]string) {
			for k := range ann {
				if strings.HasPrefix(k, "autodeploy.dev/") || k == flux.KustomizeReconcileAnnotation {
					left = append(left, obj+" "+k)
				}
			}
		}
		add("Deployment", e.GetDeployment("api").Annotations)
		rss, err := e.Kube.AppsV1().ReplicaSets(e.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, rs := range rss.Items {
			add("ReplicaSet "+rs.Name, rs.Annotations)
		}
		slices.Sort(left)
		return left
	}
	forget := func(t *testing.T, cfg string, e *kubetest.Env, args ...string) (ExitCode, string, string) {
		t.Helper()
		return execute(t, nil, append(append([]string{"forget"}, args...), "--config", cfg, "--kubeconfig", e.Kubeconfig)...)
	}

	t.Run("a rolled-back service under GitOps", func(t *testing.T) {
		e, _, cfg, dir := twoDeploys(t)
		patch := []byte(`{"metadata":{"labels":{"kustomize.toolkit.fluxcd.io/name":"apps","kustomize.toolkit.fluxcd.io/namespace":"` + e.Namespace + `"},"annotations":{"example.com/owner":"team-a"}}}`)
		if _, err := e.Kube.AppsV1().Deployments(e.Namespace).Patch(ctx, "api", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		if code, stdout, stderr := execute(t, nil, "rollback", "api", "--config", cfg, "--kubeconfig", e.Kubeconfig); code != ExitOK || !strings.Contains(stdout, "skips this Deployment") {
			t.Fatalf("rollback: exit %d\n%s\n%s", code, stdout, stderr)
		}
		settled(t, e)
		// An earlier failure of api's, and another service's exclusion in
		// the same repository.
		exclude(t, e, "api", gitops.Exclusion{Tag: "sha-0", Service: "api", Reason: "earlier"}, gitops.Exclusion{Tag: "sha-9", Service: "web", Reason: "theirs"})
		before := records(t, e)
		for _, want := range []string{"Deployment autodeploy.dev/hold", "Deployment autodeploy.dev/failed-image", "Deployment " + gitops.AnnReconcileDisabled, "Deployment " + flux.KustomizeReconcileAnnotation} {
			if !slices.Contains(before, want) {
				t.Fatalf("after the rollback %q is missing: the setup is not what this test is about: %v", want, before)
			}
		}
		if l := exclusionList(e, "api"); !slices.Contains(l, "^sha-3$") || !slices.Contains(l, "^sha-0$") {
			t.Fatalf("exclusionList = %q before forget", l)
		}

		// --dry-run lists what would go and changes nothing.
		code, stdout, stderr := forget(t, cfg, e, "api", "--dry-run")
		if code != ExitOK {
			t.Fatalf("forget --dry-run: exit %d\n%s\n%s", code, stdout, stderr)
		}
		for _, want := range []string{"deployment.apps/api", "autodeploy.dev/hold", flux.KustomizeReconcileAnnotation, "replicaset.apps/api-", "^sha-3$", "^sha-0$", "(dry run)"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("forget --dry-run does not list %q:\n%s", want, stdout)
			}
		}
		if strings.Contains(stdout, "^sha-9$") {
			t.Errorf("forget --dry-run lists web's exclusion:\n%s", stdout)
		}
		if after := records(t, e); !slices.Equal(after, before) {
			t.Fatalf("--dry-run changed the records:\nbefore %v\nafter  %v", before, after)
		}
		if l := exclusionList(e, "api"); !slices.Contains(l, "^sha-3$") || !slices.Contains(l, "^sha-0$") {
			t.Fatalf("--dry-run changed the exclusionList: %q", l)
		}

		code, stdout, stderr = forget(t, cfg, e, "api")
		if code != ExitOK {
			t.Fatalf("forget: exit %d\n%s\n%s", code, stdout, stderr)
		}
		if strings.Contains(stdout, "(dry run)") || !strings.Contains(stdout, "deployment.apps/api") || !strings.Contains(stdout, "^sha-3$") {
			t.Errorf("forget output:\n%s", stdout)
		}
		if left := records(t, e); len(left) > 0 {
			t.Fatalf("forget left %v", left)
		}
		d := e.GetDeployment("api")
		if d.Annotations["example.com/owner"] != "team-a" {
			t.Errorf("forget removed someone else's annotation: %v", d.Annotations)
		}
		// Flux's default (^.*\.sig$) is nobody's record either.
		if l := exclusionList(e, "api"); slices.Contains(l, "^sha-3$") || slices.Contains(l, "^sha-0$") || !slices.Contains(l, "^sha-9$") || !slices.Contains(l, `^.*\.sig$`) {
			t.Fatalf("exclusionList = %q after forget: want api's gone, web's and Flux's default kept", l)
		}
		if recs := gitops.ParseExclusions(repoOf(e, "api")); len(recs) != 1 || recs[0].Service != "web" {
			t.Fatalf("exclusion records after forget = %+v: want web's only", recs)
		}
		if log := readFile(t, filepath.Join(dir, "autodeploy.log")); !strings.Contains(log, "cmd=forget") || !strings.Contains(log, "svc=api") {
			t.Errorf("the log does not say what forget did:\n%s", log)
		}
		// Nothing left: says so, exit 0.
		if code, stdout, stderr := forget(t, cfg, e, "api"); code != ExitOK || !strings.Contains(stdout, "nothing") {
			t.Fatalf("forget again: exit %d\n%s\n%s", code, stdout, stderr)
		}
	})

	t.Run("a renamed service", func(t *testing.T) {
		e := kubetest.New(t)
		refl := e.StartReflector(fluxsim.V1, e.Namespace)
		cfg, _ := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"}, "")
		// api was called old-api when its rollbacks excluded sha-5.
		exclude(t, e, "api", gitops.Exclusion{Tag: "sha-5", Service: "old-api", Reason: "before the rename"}, gitops.Exclusion{Tag: "sha-6", Service: "api", Reason: "api's own"})
		code, stdout, stderr := forget(t, cfg, e, "old-api")
		if code != ExitOK {
			t.Fatalf("forget old-api: exit %d\n%s\n%s", code, stdout, stderr)
		}
		if !strings.Contains(stdout+stderr, "not a configured service") || !strings.Contains(stdout, "^sha-5$") {
			t.Errorf("forget old-api output:\n%s\n%s", stdout, stderr)
		}
		if l := exclusionList(e, "api"); slices.Contains(l, "^sha-5$") || !slices.Contains(l, "^sha-6$") {
			t.Fatalf("exclusionList = %q after forget old-api: want api's own only", l)
		}
	})

	t.Run("a hold of autodeploy 1.x resumes its Kustomization", func(t *testing.T) {
		e := kubetest.New(t)
		refl := e.StartReflector(fluxsim.V1, e.Namespace)
		cfg, _ := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"}, "")
		ks := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
			"metadata": map[string]any{"name": "apps", "namespace": e.Namespace},
			"spec": map[string]any{"interval": "10m", "path": "./apps", "prune": true, "suspend": true,
				"sourceRef": map[string]any{"kind": "GitRepository", "name": "flux-system"}},
		}}
		kss := e.Dynamic.Resource(flux.KustomizationGVR).Namespace(e.Namespace)
		if _, err := kss.Create(ctx, ks, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		patch := []byte(`{"metadata":{"annotations":{"autodeploy.dev/hold":"{\"by\":\"bob@ops\",\"reason\":\"1.x rollback\",\"kustomization\":\"` + e.Namespace + `/apps\"}"}}}`)
		if _, err := e.Kube.AppsV1().Deployments(e.Namespace).Patch(ctx, "api", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		suspended := func() bool {
			k, err := kss.Get(ctx, "apps", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			s, _, _ := unstructured.NestedBool(k.Object, "spec", "suspend")
			return s
		}
		if code, stdout, stderr := forget(t, cfg, e, "api", "--dry-run"); code != ExitOK || !strings.Contains(stdout, "kustomization.kustomize.toolkit.fluxcd.io/apps") || !suspended() {
			t.Fatalf("forget --dry-run: exit %d, suspended %v\n%s\n%s", code, suspended(), stdout, stderr)
		}
		if code, stdout, stderr := forget(t, cfg, e, "api"); code != ExitOK || !strings.Contains(stdout, "kustomization.kustomize.toolkit.fluxcd.io/apps") {
			t.Fatalf("forget: exit %d\n%s\n%s", code, stdout, stderr)
		}
		if suspended() {
			t.Fatal("the Kustomization the hold suspended is still suspended")
		}
		if _, held := e.GetDeployment("api").Annotations["autodeploy.dev/hold"]; held {
			t.Fatal("the hold is left")
		}
	})

	t.Run("someone else's lever stays and the lock is taken", func(t *testing.T) {
		e := kubetest.New(t)
		refl := e.StartReflector(fluxsim.V1, e.Namespace)
		cfg, dir := clusterConfig(t, e, refl, map[string]string{"api": reg + "api:sha-1"}, "")
		patch := []byte(`{"metadata":{"annotations":{"kustomize.toolkit.fluxcd.io/reconcile":"disabled","autodeploy.dev/hold":"{\"by\":\"bob@ops\",\"reason\":\"maintenance\"}"}}}`)
		if _, err := e.Kube.AppsV1().Deployments(e.Namespace).Patch(ctx, "api", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		lk, err := lock.TryAcquire(filepath.Join(dir, "lock"), "autodeploy run test", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if code, _, stderr := forget(t, cfg, e, "api", "--lock-timeout", "300ms"); code != ExitLocked || !strings.Contains(stderr, "waiting up to 300ms") {
			t.Fatalf("forget during a run: exit %d: %s", code, stderr)
		}
		if _, held := e.GetDeployment("api").Annotations["autodeploy.dev/hold"]; !held {
			t.Fatal("forget changed the Deployment without the lock")
		}
		lk.Release()
		code, stdout, stderr := forget(t, cfg, e, "api")
		if code != ExitOK || !strings.Contains(stderr, "kubectl annotate deployment/api -n "+e.Namespace+" "+flux.KustomizeReconcileAnnotation+"-") {
			t.Fatalf("forget: exit %d\n%s\n%s", code, stdout, stderr)
		}
		d := e.GetDeployment("api")
		if d.Annotations[flux.KustomizeReconcileAnnotation] != flux.ReconcileDisabled {
			t.Fatalf("forget removed a lever with no record of autodeploy's: %v", d.Annotations)
		}
		if _, held := d.Annotations["autodeploy.dev/hold"]; held {
			t.Fatalf("the hold is left: %v", d.Annotations)
		}
		// A configured service whose Deployment is gone: only exclusions
		// are looked for, and that is not an error.
		if err := e.Kube.AppsV1().Deployments(e.Namespace).Delete(ctx, "api", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr = forget(t, cfg, e, "api")
		if code != ExitOK || !strings.Contains(stdout+stderr, "not found") {
			t.Fatalf("forget without a Deployment: exit %d\n%s\n%s", code, stdout, stderr)
		}
	})
}
