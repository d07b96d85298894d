//go:build integration

package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/autodeploy-dev/autodeploy/internal/doctor"
	"github.com/autodeploy-dev/autodeploy/internal/fluxsim"
	"github.com/autodeploy-dev/autodeploy/internal/kubetest"
	"github.com/autodeploy-dev/autodeploy/internal/rollout"
)

// What cron and an operator see when Flux reverted autodeploy's deploy
// (git behind: the automation suspended): `run` exits 7 with one stderr
// line naming kustomize-controller and the Kustomization, without deploying
// again; `status` exits 8 with the problem, and shows who writes the
// service from git.
func TestRunAndStatusWhenFluxReverts(t *testing.T) {
	e := kubetest.New(t)
	refl := e.StartReflector(fluxsim.V1, e.Namespace)
	img := reg + "api:sha-1"
	e.CreateImageRepository(fluxsim.V1, e.Namespace, "api", reg+"api")
	e.CreateImagePolicy(fluxsim.V1, e.Namespace, "api", "api")
	if err := refl.Track(context.Background(), "api", "api", img); err != nil {
		t.Fatal(err)
	}
	manifest := fluxsim.DeploymentManifest("api", img, e.Namespace, 1)
	g := e.StartGitOps(fluxsim.GitOptions{Files: map[string]string{"apps/api.yaml": manifest}, Path: "./apps"})
	settledName(t, e, "api")
	cfg, _ := writeConfig(t, fmt.Sprintf("flux: {namespace: %s, reconcileTimeout: 20s}\ndefaults: {namespace: %s, rolloutTimeout: 60s}\n", e.Namespace, e.Namespace))
	patch := []byte(`{"spec":{"suspend":true}}`)
	if _, err := e.Dynamic.Resource(fluxsim.V1.GVR("imageupdateautomations")).Namespace(e.Namespace).Patch(context.Background(), fluxsim.AutomationName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	refl.Push("api", reg+"api:sha-2")
	if code, _, stderr := execute(t, nil, "run", "--config", cfg, "--kubeconfig", e.Kubeconfig); code != ExitOK {
		t.Fatalf("first run: exit %d %s", code, stderr)
	}
	if err := g.ReconcileKustomization(context.Background()); err != nil {
		t.Fatal(err)
	}
	settledName(t, e, "api")
	code, stdout, stderr := execute(t, nil, "run", "--config", cfg, "--kubeconfig", e.Kubeconfig)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if code != ExitServiceProblem || stdout != "" || len(lines) != 1 ||
		!strings.Contains(lines[0], "reverted by kustomize-controller from Kustomization "+e.Namespace+"/apps: git has "+img) || !strings.Contains(lines[0], "fix:") {
		t.Fatalf("run after the revert: exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	if d := e.GetDeployment("api"); kubetest.Image(d) != img || rollout.ImageOwner(d, "api") != "kustomize-controller" {
		t.Fatalf("the run fought Flux: %s owned by %s", kubetest.Image(d), rollout.ImageOwner(d, "api"))
	}
	code, stdout, _ = execute(t, nil, "status", "api", "--config", cfg, "--kubeconfig", e.Kubeconfig)
	text := strings.Join(strings.Fields(stdout), " ")
	for _, want := range []string{"reverted by kustomize-controller", "is suspended: git does not follow ImagePolicy", "git Kustomization " + e.Namespace + "/apps (Ready, applied main@sha1:"} {
		if !strings.Contains(text, want) {
			t.Errorf("status lacks %q:\n%s", want, stdout)
		}
	}
	if code != ExitDegraded {
		t.Errorf("status exit %d, want %d", code, ExitDegraded)
	}
}

// doctor and status of a promotion under GitOps (issue 19), on the
// cluster: staging and production applied from git in two namespaces,
// production's image line naming the ImagePolicy autodeploy owns. Before
// the first promotion both say the policy is created then; after it, both
// name autodeploy's policy, what it selects and what git has; a policy of
// that name without autodeploy's record (someone applied it from git)
// fails doctor and is refused by status with exit 8.
func TestDoctorAndStatusOfAGitOpsPromotion(t *testing.T) {
	e := kubetest.New(t)
	ns, prodNS := e.Namespace, kubetest.NewNamespace(t, "production")
	const owned = "autodeploy-production"
	img1, img2 := reg+"api:sha-1111111", reg+"api:sha-2222222"
	refl := e.StartReflector(fluxsim.V1, ns)
	e.CreateImageRepository(fluxsim.V1, ns, "staging", reg+"api")
	e.CreateImagePolicy(fluxsim.V1, ns, "staging", "staging")
	if err := refl.Track(t.Context(), "staging", "staging", img1); err != nil {
		t.Fatal(err)
	}
	e.StartGitOps(fluxsim.GitOptions{Path: "./apps", ManifestNamespaces: true, Files: map[string]string{
		"apps/staging.yaml":    fluxsim.EnvironmentManifest(ns, "api", img1, ns+":staging", 1),
		"apps/production.yaml": fluxsim.EnvironmentManifest(prodNS, "api", img1, ns+":"+owned, 1),
	}})
	for _, n := range []string{ns, prodNS} {
		if _, err := rollout.Wait(t.Context(), e.Kube, n, "api", rollout.WaitOptions{}); err != nil {
			t.Fatalf("first apply of %s/api: %v", n, err)
		}
	}
	cfg, _ := writeConfig(t, fmt.Sprintf("flux: {namespace: %s, reconcileTimeout: 20s}\ndefaults: {namespace: %s, rolloutTimeout: 60s}\nservices:\n"+
		"  - {name: staging, deployment: api}\n  - {name: production, namespace: %s, deployment: api, promote: {from: staging}}\n", ns, ns, prodNS))
	policyCheck := func(want, status string) {
		t.Helper()
		_, out, _ := execute(t, nil, "doctor", "-o", "json", "--config", cfg, "--kubeconfig", e.Kubeconfig)
		var rep doctor.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, c := range rep.Checks {
			if c.Name == "service production" && strings.Contains(c.Detail, "ImagePolicy "+ns+"/"+owned) && strings.Contains(c.Detail, want) {
				if c.Status != status {
					t.Errorf("doctor: %+v, want %s", c, status)
				}
				return
			}
		}
		t.Errorf("doctor has no check of production saying %q:\n%s", want, out)
	}
	statusSays := func(wantCode ExitCode, want ...string) {
		t.Helper()
		code, stdout, stderr := execute(t, nil, "status", "production", "--config", cfg, "--kubeconfig", e.Kubeconfig)
		text := strings.Join(strings.Fields(stdout), " ")
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("status lacks %q:\n%s%s", w, stdout, stderr)
			}
		}
		if code != wantCode {
			t.Errorf("status exit %d, want %d:\n%s%s", code, wantCode, stdout, stderr)
		}
	}
	policyCheck("does not exist yet: created at the first promotion", doctor.OK)
	statusSays(ExitOK, "ImagePolicy "+ns+"/"+owned+" (autodeploy's): created at the first promotion")

	refl.Push("staging", img2)
	for range 2 { // staging deploys, then production is promoted
		if code, _, stderr := execute(t, nil, "run", "--config", cfg, "--kubeconfig", e.Kubeconfig); code != ExitOK {
			t.Fatalf("run: exit %d %s", code, stderr)
		}
	}
	if d, err := e.Kube.AppsV1().Deployments(prodNS).Get(t.Context(), "api", metav1.GetOptions{}); err != nil || kubetest.Image(d) != img2 {
		t.Fatalf("production after the promotion: %v %v", d, err)
	}
	kubetest.Eventually(t, 20*time.Second, "the automation writes the owned policy's tag", func(ctx context.Context) (bool, error) {
		au, err := e.Dynamic.Resource(fluxsim.V1.GVR("imageupdateautomations")).Namespace(ns).Get(ctx, fluxsim.AutomationName, metav1.GetOptions{})
		tag, _, _ := unstructured.NestedString(au.Object, "status", "observedPolicies", owned, "tag")
		return tag == "sha-2222222", err
	})
	// The run's last mark bumped the Deployment's generation: status
	// rightly says "progressing" until the controller observed it.
	kubetest.Eventually(t, 30*time.Second, "production observed", func(ctx context.Context) (bool, error) {
		d, err := e.Kube.AppsV1().Deployments(prodNS).Get(ctx, "api", metav1.GetOptions{})
		return err == nil && d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == 1 && d.Status.AvailableReplicas == 1, err
	})
	policyCheck("is autodeploy's and selects "+img2, doctor.OK)
	statusSays(ExitOK, "ImagePolicy "+ns+"/"+owned+" (autodeploy's) selects "+img2+" (Ready); git has sha-2222222")

	// An automation whose policySelector leaves autodeploy's policy out
	// does not write it: git would not follow the next promotion.
	selector := func(sel string) {
		t.Helper()
		patch := []byte(`{"spec":{"policySelector":` + sel + `}}`)
		if _, err := e.Dynamic.Resource(fluxsim.V1.GVR("imageupdateautomations")).Namespace(ns).Patch(t.Context(), fluxsim.AutomationName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	selector(`{"matchExpressions":[{"key":"app.kubernetes.io/managed-by","operator":"NotIn","values":["autodeploy"]}]}`)
	leftOut := "spec.policySelector app.kubernetes.io/managed-by notin (autodeploy) does not select ImagePolicy " + ns + "/" + owned + " (labels app.kubernetes.io/managed-by=autodeploy)"
	policyCheck(leftOut, doctor.Fail)
	statusSays(ExitDegraded, leftOut)
	selector("null")

	// Someone else's policy of that name: strip autodeploy's record.
	patch := []byte(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":null},"annotations":{"autodeploy.dev/promotion-of":null}}}`)
	if _, err := e.Dynamic.Resource(fluxsim.V1.GVR("imagepolicies")).Namespace(ns).Patch(t.Context(), owned, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	policyCheck("not autodeploy's", doctor.Fail)
	statusSays(ExitDegraded, "ImagePolicy "+ns+"/"+owned+" is not autodeploy's: promotions under GitOps are refused")
}
